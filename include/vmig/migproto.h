/* SPDX-License-Identifier: MIT */
/*
 * migproto.h - the host-to-host migration stream between two agents.
 *
 * docs/migration-protocol.md is the normative description; this header is
 * its C binding.  Each direction of a connection starts with an 8-byte
 * preamble whose last byte is the framing version, then carries frames:
 * a 24-byte little-endian header {magic, type, flags, length, seq, xxh3}
 * and a payload of at most the per-type limit.  The main direction
 * (source -> destination) carries HELLO, SETUP, RAM, device data, vCPU
 * state and SWITCHOVER; the return direction (destination -> source, on
 * the same TCP connection) carries the HELLO reply, acks, errors and the
 * destination's CONFIRM.
 *
 * The codec functions are pure (no I/O); struct vmig_mp_conn adds blocking
 * I/O over a channel (<vmig/chan.h>: a plaintext socket or a TLS session)
 * with bounded waits, a cancel flag and byte counters.
 *
 * The binding is in four parts, each usable alone: <vmig/migproto_frame.h>
 * (preamble, frame types, limits, flags, the frame header),
 * <vmig/migproto_hello.h> (HELLO and its reply), <vmig/migproto_msg.h>
 * (every other frame) and <vmig/migproto_conn.h> (the connection).
 */
#ifndef VMIG_MIGPROTO_H
#define VMIG_MIGPROTO_H

#include <vmig/migproto_conn.h>
#include <vmig/migproto_frame.h>
#include <vmig/migproto_hello.h>
#include <vmig/migproto_msg.h>

#endif /* VMIG_MIGPROTO_H */
