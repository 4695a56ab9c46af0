/* SPDX-License-Identifier: MIT */
/*
 * engine_chan.h - parallel channels (QEMU's multifd): several connections
 * per migration, so the stop-copy data of each device and guest RAM move
 * at once instead of one after another.
 *
 * The main connection is the one handed to vmig_engine_migrate_chan() /
 * vmig_engine_incoming_chan(): it carries HELLO, SETUP, the devices'
 * VMM-owned config, the vCPU state and every synchronisation point, as
 * without channels.  When both sides set params.channels above 1 and the
 * destination grants the feature in HELLO_REPLY, the source asks the VMM
 * for the extra connections (@open below), each authenticated as the
 * main one is (the VMM connects and does its TLS handshake with the same
 * credentials), and introduces each to the destination with the
 * migration id the destination chose.  The destination's VMM hands every
 * connection it accepts while a migration is under way to
 * vmig_engine_accept_chan(), which joins it to that migration or refuses
 * it (a wrong id, index or count, a duplicate, another source) with a
 * clear ERROR, changing nothing.  Wire format:
 * docs/migration-protocol.md section 10.
 *
 * At stop-copy each device's remaining state goes on an extra channel of
 * its own (a device at a time per channel, several devices at once), and
 * guest RAM that still has to move (all of it without precopy) is spread
 * in 4 MiB pieces over every channel, the main one included.  Precopy
 * iterations stay on the main connection.  A failure on any channel
 * fails the whole migration: the source rolls back and keeps running,
 * the destination discards everything.
 *
 * Threads: the engine runs one thread per extra channel and joins them
 * before vmig_engine_migrate_chan() / vmig_engine_incoming_chan()
 * returns; device backends' read (source) and write (destination) ops,
 * and the VM hook ram_hole, are then called from those threads, one
 * thread per device at a time.  The VM hook ram_write, when given, is
 * serialised.
 */
#ifndef VMIG_ENGINE_CHAN_H
#define VMIG_ENGINE_CHAN_H

#include <vmig/chan.h>
#include <vmig/engine.h>
#include <vmig/export.h>

/**
 * struct vmig_engine_chan_ops - how the VMM makes extra connections.
 * @open:    source: connect to the destination the main connection went
 *           to and make it a channel exactly as the main one (TLS
 *           handshake with the same credentials, or plaintext); @index
 *           is 1 .. channels-1; honour @cancel (non-zero: give up).
 *           Return 0 with *@out, or a negative errno (the migration then
 *           fails before anything changed).  Required on a source.
 * @release: the engine is done with @ch (from @open, or one handed to
 *           vmig_engine_accept_chan() that joined): free it and close
 *           its socket.  Required.
 */
struct vmig_engine_chan_ops {
    int (*open)(void *opaque, unsigned int index, const int *cancel,
                struct vmig_chan **out);
    void (*release)(void *opaque, struct vmig_chan *ch);
};

/**
 * vmig_engine_set_chan_ops() - Let the engine use extra connections.
 * @e:      engine, not migrating.
 * @ops:    the VMM's ops (borrowed); NULL: one connection only.
 * @opaque: passed to them.
 *
 * Return: 0; -EINVAL (@ops without @release); -EBUSY (migrating).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_engine_set_chan_ops(struct vmig_engine *e,
                         const struct vmig_engine_chan_ops *ops, void *opaque);

/**
 * vmig_engine_accept_chan() - Destination: a connection accepted while a
 * migration may be under way.  Exchanges preambles and reads its first
 * frame: a valid CHANNEL_HELLO for the migration waiting for its channels
 * joins it (the engine owns @ch from then on and gives it back through
 * the @release op); anything else is refused with an ERROR frame naming
 * the cause, and nothing changes.
 * @e:           engine (any thread).
 * @ch:          the accepted connection, TLS-authenticated as the main
 *               one would be (or plaintext).
 * @busy_reason: the reason sent when the peer is not a channel but
 *               another source's HELLO (it is told -EBUSY); NULL: a
 *               generic one.
 * @timeout_ms:  bound on each wait for the peer.
 *
 * Return: 0 when the channel joined (@ch now belongs to the engine);
 * -EBUSY (another source was turned away); -ENOENT (no migration expects
 * channels, or an unknown migration id); -EINVAL (an index or count that
 * does not match); -EEXIST (that index already joined); -EPROTO (not a
 * CHANNEL_HELLO); or an error of the connection.  On any error @ch stays
 * the caller's.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_engine_accept_chan(struct vmig_engine *e, struct vmig_chan *ch,
                        const char *busy_reason, unsigned int timeout_ms);

#endif /* VMIG_ENGINE_CHAN_H */
