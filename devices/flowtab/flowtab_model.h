/* SPDX-License-Identifier: MIT */
/*
 * flowtab_model.h - a NIC-like flow/counter table device with large,
 * changing internal state, independent of any transport.
 *
 * The guest driver places packet descriptors in a ring in guest memory and
 * rings a doorbell; the device's worker (a thread, or ft_model_poll() in
 * the caller's thread) looks each packet's flow up in a hash table held in
 * the device state, updates its counters, writes a completion and the
 * statistics block back into guest memory by DMA, and forwards packets
 * flagged FT_DESC_FWD to a peer device (P2P) through a peer-write
 * callback.  Inbound P2P writes from a peer update the table too.
 *
 * Migration: the device's one state machine is a framework object
 * (<vmig/device.h>, flags STOP_COPY | P2P | PRE_COPY) the model owns,
 * ft_model_dev(); its callbacks are the raw flowtab stream
 * (ft_model_stream_ops()), or ones the owner supplies that wrap them (the
 * vfio-user server carries the stream in the device-state envelope).
 * Device-side semantics per state:
 *   RUNNING, PRE_COPY          everything runs;
 *   RUNNING_P2P, PRE_COPY_P2P  no P2P is initiated (the worker holds at the
 *                              first FWD descriptor, in ring order) but
 *                              guest DMA and inbound P2P go on;
 *   STOP, STOP_COPY, RESUMING  nothing changes: the worker is idle,
 *                              inbound P2P and register writes are refused
 *                              with -EBUSY.
 * The state is divided into chunks; a saving session streams the initial
 * data (every chunk once) and then only chunks written since they were
 * last sent.  See docs/flowtab.md for the stream layout.
 *
 * Locking: every function is thread-safe.  One lock order: the
 * framework's lock, then the model lock, then whatever the transport's
 * translate() takes (the vfio-user server's DMA read lock, held by a
 * translation window).  The model never takes its lock while it holds a
 * translation: before it drops its lock (around a peer write) it calls
 * the transport's release(), so a window never spans a re-lock.  The
 * peer-write callback is called with no lock held, so two devices may
 * forward into each other.
 */
#ifndef FLOWTAB_MODEL_H
#define FLOWTAB_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <vmig/ctx.h>
#include <vmig/device.h>
#include "flowtab_regs.h"
#include "flowtab_stream.h"

struct ft_model;

/* Bytes at the start of the state holding registers and counters. */
#define FT_CTRL_BYTES 4096u
/* Bytes of one flow-table entry. */
#define FT_FLOW_BYTES 64u

#define FT_DEFAULT_STATE_BYTES (16u << 20)
#define FT_DEFAULT_CHUNK_BYTES (64u << 10)
#define FT_MIN_CHUNK_BYTES 4096u
#define FT_MAX_CHUNK_BYTES (16u << 20)
#define FT_MAX_STATE_BYTES (16ull << 30)

/* Migration flags of the device. */
#define FT_MIG_FLAGS                                                           \
    (VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_P2P | VMIG_MIGRATION_PRE_COPY)

/**
 * struct ft_dma_ops - how the device reaches guest memory.
 * @translate: return a host pointer to [@iova, @iova + @len) of guest
 *             memory, valid until the next call (or release()), or NULL
 *             when the range is not mapped.  @write says the device will
 *             write (the place where a transport's DMA logging marks pages
 *             dirty).  Called with the model lock held.
 * @release:   optional: the pointer the last translate() returned is no
 *             longer used; a transport that locks while a translation is
 *             live (the vfio-user server's DMA window) unlocks here.  The
 *             model calls it before it drops its own lock, so it never
 *             re-takes its lock while a translation is live.
 */
struct ft_dma_ops {
    void *(*translate)(void *opaque, uint64_t iova, size_t len, bool write);
    void (*release)(void *opaque);
};

/**
 * struct ft_peer_ops - outbound P2P: a posted write into the peer device's
 * inbound window (BAR2).
 * @write: write @len bytes at @offset of the peer's window.  Posted: the
 *         sender does not learn whether the peer accepted it (as for PCIe
 *         posted writes); the return value is only logged.
 */
struct ft_peer_ops {
    int (*write)(void *opaque, uint64_t offset, const void *buf, size_t len);
};

/**
 * struct ft_config - device parameters.
 * @state_bytes: size of the device state (control block + flow table);
 *               rounded up to a multiple of @chunk_bytes.  0: default.
 * @chunk_bytes: dirty-tracking and stream granularity; power of two in
 *               FT_MIN_CHUNK_BYTES..FT_MAX_CHUNK_BYTES.  0: default.
 * @device_id:   this device's id, sent as the origin of forwarded records.
 * @no_thread:   no worker thread; the owner calls ft_model_poll().
 * @batch:       descriptors per worker batch (statistics are written after
 *               each batch); 0: 32.
 * @mig_flags:   migration features to offer, a subset of FT_MIG_FLAGS that
 *               includes STOP_COPY; 0: FT_MIG_FLAGS.  Without P2P the
 *               device has no RUNNING_P2P and goes from RUNNING straight
 *               to STOP (the uAPI's rule for devices without P2P); without
 *               PRE_COPY it has no precopy.
 * @mig_ops:     the framework callbacks of ft_model_dev(), when the owner
 *               wraps the raw stream (ft_model_stream_ops()); NULL: the
 *               raw stream itself, with the model as opaque.
 * @mig_opaque:  passed to @mig_ops.
 */
struct ft_config {
    uint64_t state_bytes;
    uint32_t chunk_bytes;
    uint32_t device_id;
    bool no_thread;
    unsigned int batch;
    uint32_t mig_flags;
    const struct vmig_dev_ops *mig_ops;
    void *mig_opaque;
};

/**
 * struct ft_diag - counters outside the migrated state (diagnostics).
 * @p2p_refused: inbound P2P writes refused (device stopped, bad record).
 * @reg_refused: register writes refused (device stopped, read-only).
 * @chunks_sent: CHUNK records emitted by saving sessions.
 * @bytes_sent:  bytes of saving data produced overall.
 */
struct ft_diag {
    uint64_t p2p_refused;
    uint64_t reg_refused;
    uint64_t chunks_sent;
    uint64_t bytes_sent;
};

/**
 * ft_model_new() - Create a device in RUNNING with power-on state.
 * @ctx:        logging context (borrowed, must outlive the device).
 * @cfg:        parameters (copied); NULL for defaults.
 * @dma:        guest-memory access (borrowed).
 * @dma_opaque: passed to @dma.
 * @out:        receives the device; untouched on failure.
 *
 * Return: 0, -EINVAL (bad parameters), -E2BIG (state too large), -ENOMEM,
 * or the error of starting the worker thread.
 */
int ft_model_new(vmig_ctx_t *ctx, const struct ft_config *cfg,
                 const struct ft_dma_ops *dma, void *dma_opaque,
                 struct ft_model **out);

/**
 * ft_model_free() - Stop the worker and destroy the device.  NULL is fine.
 * @d: device.
 */
void ft_model_free(struct ft_model *d);

/**
 * ft_model_set_peer() - Connect outbound P2P.
 * @d:      device.
 * @ops:    the peer's window writer (borrowed), or NULL to disconnect
 *          (FWD descriptors are then completed without forwarding).
 * @opaque: passed to @ops.
 */
void ft_model_set_peer(struct ft_model *d, const struct ft_peer_ops *ops,
                       void *opaque);

/**
 * ft_model_dev() - The device's framework object (owned by the device):
 * its state, sessions and reset (vmig_dev_set_state(), vmig_dev_read(),
 * vmig_dev_write(), vmig_dev_reset(), ...).
 * @d: device.
 *
 * Return: the object.
 */
struct vmig_dev *ft_model_dev(struct ft_model *d);

/**
 * ft_model_reg_read() - Read a BAR0 register.
 * @d:   device.
 * @off: FT_REG_* offset.
 * @val: receives the value.
 *
 * Return: 0, or -EINVAL for an unknown offset.
 */
int ft_model_reg_read(struct ft_model *d, uint32_t off, uint32_t *val);

/**
 * ft_model_reg_write() - Write a BAR0 register.
 * @d:   device.
 * @off: FT_REG_* offset.
 * @val: value.
 *
 * Return: 0; -EINVAL for an unknown or read-only offset or a value the
 * register refuses; -EBUSY while the device is stopped (STOP, STOP_COPY,
 * RESUMING, ERROR) or for a ring setting changed while enabled.
 */
int ft_model_reg_write(struct ft_model *d, uint32_t off, uint32_t val);

/**
 * ft_model_p2p_write() - Inbound P2P: a peer writes into the window.
 * @d:   device.
 * @off: offset in the window (must be 0).
 * @buf: one struct ft_p2p_rec.
 * @len: FT_P2P_WINDOW_SIZE.
 *
 * Accepted in RUNNING, RUNNING_P2P, PRE_COPY and PRE_COPY_P2P.  A
 * record accepted while ring processing is enabled also writes the
 * statistics block (p2p_rx), so the guest sees it at once.
 *
 * Return: 0; -EBUSY when the device is stopped; -EINVAL for a bad offset
 * or length; -ENOSPC when the table is full.
 */
int ft_model_p2p_write(struct ft_model *d, uint64_t off, const void *buf,
                       size_t len);

/**
 * ft_model_poll() - Process up to @max descriptors in the caller's thread
 * (only for devices created with @no_thread).
 * @d:   device.
 * @max: limit.
 *
 * Return: the number of descriptors processed (0 when there is nothing to
 * do or the device may not run), or -EINVAL for a threaded device.
 */
long ft_model_poll(struct ft_model *d, unsigned int max);

/**
 * ft_model_wait_idle() - Wait until the worker has nothing it may do:
 * ring empty, device disabled or stopped, or holding at a FWD descriptor.
 * @d:          device.
 * @timeout_ms: bound.
 *
 * Return: 0, or -ETIMEDOUT.
 */
int ft_model_wait_idle(struct ft_model *d, unsigned int timeout_ms);

/**
 * ft_model_state_bytes() - Size of the device state.
 * @d: device.
 *
 * Return: bytes.
 */
uint64_t ft_model_state_bytes(const struct ft_model *d);

/**
 * ft_model_chunk_bytes() - Chunk size.
 * @d: device.
 *
 * Return: bytes.
 */
uint32_t ft_model_chunk_bytes(const struct ft_model *d);

/**
 * ft_model_digest() - XXH3-128 of the whole device state.
 * @d:    device.
 * @high: receives the high 64 bits.
 * @low:  receives the low 64 bits.
 */
void ft_model_digest(struct ft_model *d, uint64_t *high, uint64_t *low);

/**
 * struct ft_counters - migrated counters, read from the state.
 * @packets: packets processed from the ring.
 * @bytes:   their bytes.
 * @flows:   flows in the table.
 * @p2p_tx:  records forwarded to the peer.
 * @p2p_rx:  records accepted from a peer.
 * @errors:  descriptors completed with an error status.
 * @head:    ring consumer index.
 * @tail:    ring producer index (doorbell).
 */
struct ft_counters {
    uint64_t packets;
    uint64_t bytes;
    uint64_t flows;
    uint64_t p2p_tx;
    uint64_t p2p_rx;
    uint64_t errors;
    uint32_t head;
    uint32_t tail;
};

/**
 * ft_model_counters() - Read the migrated counters.
 * @d:   device.
 * @out: receives them.
 */
void ft_model_counters(struct ft_model *d, struct ft_counters *out);

/**
 * ft_model_peer_sum() - Sum of the packet counters of every flow in the
 * peer key space (records received by P2P), by walking the table.
 * @d: device.
 *
 * Return: the sum.
 */
uint64_t ft_model_peer_sum(struct ft_model *d);

/**
 * ft_model_diag() - Read the diagnostic (non-migrated) counters.
 * @d:   device.
 * @out: receives them.
 */
void ft_model_diag(struct ft_model *d, struct ft_diag *out);

/**
 * ft_model_stream_ops() - The raw flowtab stream as framework callbacks
 * (struct vmig_dev_ops; the opaque is the struct ft_model), for owners
 * that wrap them in their own @mig_ops (the envelope, flowtab_env.c).
 *
 * step: open or end a session's data and change the run mode (quiescing
 * waits for in-flight P2P writes); RESUMING -> STOP validates the whole
 * loaded stream and only then replaces the device state.  save: records
 * (docs/flowtab.md), cut across reads as needed, then END in STOP_COPY;
 * -ENOMSG in the precopy states when nothing is pending.  load: parsed
 * and checked record by record into a staging copy; after the first error
 * (-EBADMSG for damage, -EOPNOTSUPP for a version or geometry this device
 * cannot load) every later write fails the same way.  precopy_info and
 * data_size count stream bytes.  reset: power-on state, running.
 *
 * Return: a static table.
 */
const struct vmig_dev_ops *ft_model_stream_ops(void);

#endif /* FLOWTAB_MODEL_H */
