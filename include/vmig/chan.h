/* SPDX-License-Identifier: MIT */
/*
 * chan.h - one migration channel: a connected stream socket, in plaintext
 * or inside an authenticated TLS 1.3 session (<vmig/tls.h>).
 *
 * The engine reads and writes the migration stream through a channel, so
 * it never knows whether the bytes are encrypted.  A VMM connects (or
 * accepts) the socket itself, turns it into a channel - vmig_chan_plain()
 * for plaintext, vmig_tls_handshake() for TLS, which returns only once
 * both peers are authenticated - and hands the channel to
 * vmig_engine_migrate_chan() / vmig_engine_incoming_chan() /
 * vmig_engine_check_chan().  The fd-taking engine calls are the same with
 * a plaintext channel made for the call.
 *
 * A VMM with several channels per migration makes one channel per
 * connection (each TLS channel does its own handshake with the shared
 * credentials).  A channel is used by one thread at a time; different
 * channels may be used by different threads at once.
 */
#ifndef VMIG_CHAN_H
#define VMIG_CHAN_H

#include <stdbool.h>
#include <vmig/ctx.h>
#include <vmig/export.h>

struct vmig_chan;

/**
 * struct vmig_chan_info - what a channel is, for logs and query-migrate.
 * @tls:      the channel is a TLS session.
 * @psk:      authenticated by a pre-shared key (else certificates).
 * @ktls_tx:  the kernel encrypts what we send (kernel TLS offload).
 * @ktls_rx:  the kernel decrypts what we receive.
 * @version:  "TLSv1.3", or "" for plaintext.
 * @cipher:   the cipher suite ("TLS_AES_128_GCM_SHA256"), or "".
 * @peer:     the authenticated peer: its certificate's subject DN
 *            (RFC 4514, "CN=...,O=...") or its PSK identity; "" for
 *            plaintext (the peer is not authenticated).
 */
struct vmig_chan_info {
    bool tls;
    bool psk;
    bool ktls_tx;
    bool ktls_rx;
    char version[16];
    char cipher[64];
    char peer[256];
};

/**
 * vmig_chan_plain() - Make a plaintext channel of a connected socket.
 * @ctx: logging context (borrowed; must outlive the channel).
 * @fd:  a connected stream socket; borrowed, never closed by the channel.
 * @out: receives the channel; untouched on failure.
 *
 * Return: 0, -EINVAL (@fd < 0 or @out NULL), -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_chan_plain(vmig_ctx_t *ctx, int fd,
                                                struct vmig_chan **out);

/**
 * vmig_chan_free() - Free a channel: its TLS session if any, then the
 * object.  The socket stays open and gets back the file status flags it
 * had (a TLS channel makes it non-blocking).  NULL is accepted.
 * @ch: channel.
 */
VMIG_EXPORT void vmig_chan_free(struct vmig_chan *ch);

/**
 * vmig_chan_fd() - The channel's socket.
 * @ch: channel.
 *
 * Return: the fd given at creation.
 */
VMIG_EXPORT int vmig_chan_fd(const struct vmig_chan *ch);

/**
 * vmig_chan_info() - Describe a channel.
 * @ch:  channel.
 * @out: receives the description.
 */
VMIG_EXPORT void vmig_chan_info(const struct vmig_chan *ch,
                                struct vmig_chan_info *out);

#endif /* VMIG_CHAN_H */
