/* SPDX-License-Identifier: MIT */
/*
 * vfu_server.h - the vfio-user device server.
 *
 * A device author describes regions and IRQs, supplies a region callback
 * and, for a migratable device, its migration framework object
 * (<vmig/device.h>), and gets a vfio-user server: it owns the socket
 * (created 0600), the VERSION negotiation, the DMA map table (fd passing +
 * mmap, or DMA_READ/DMA_WRITE messages when the client gave no fd), IRQ
 * eventfds and DMA dirty logging, and puts the device's state machine and
 * data session on the wire (MIG_DEVICE_STATE, MIG_DATA_READ/WRITE, the
 * bulk channel extension).  The session rules are the framework's:
 * STOP_COPY's end of data is permanent, PRE_COPY's "no more for now" is a
 * short MIG_DATA_READ reply, and after a device reset the session's
 * reader or writer gets ENODEV, never a silent end of data.  Commands the
 * current migration state forbids are refused with EBUSY (region access
 * in STOP_COPY, RESUMING and ERROR; data reads outside the saving states;
 * data writes outside RESUMING).
 *
 * Threads: the event loop (vmig_vfu_server_run() or _dispatch()) runs in
 * one thread and calls region_access and every migration callback from
 * it; a reset may come from any thread (vmig_vfu_server_device_reset(),
 * vmig_dev_reset()) and is serialised with the other migration callbacks
 * by the framework's lock.  vmig_vfu_irq_trigger(),
 * vmig_vfu_dma_read()/_write()/_get()/_put(),
 * vmig_vfu_server_device_reset() and vmig_vfu_server_stop() may be called
 * from any thread.  Message-based DMA from a device thread needs the loop
 * thread to be free to read the reply, so a callback must not wait for a
 * device thread that is doing DMA.
 *
 * Example (see docs/vfio-user.md for a complete one):
 *
 *     static const struct vmig_dev_ops mig = {
 *         .step = my_step, .save = my_save, .load = my_load,
 *     };
 *     static const struct vmig_vfu_dev_ops ops = {.region_access = my_bar0};
 *     vmig_dev_new(ctx, VMIG_MIGRATION_STOP_COPY, &mig, dev, &d);
 *     vmig_vfu_server_new(ctx, &ops, dev, d, &s);
 *     vmig_vfu_server_add_region(s, 0, 4096, VMIG_VFU_REGION_READ |
 *                                VMIG_VFU_REGION_WRITE, -1, 0);
 *     vmig_vfu_server_add_irq(s, 0, 1);
 *     vmig_vfu_server_listen(s, "/run/dev0.sock");
 *     vmig_vfu_server_run(s);
 */
#ifndef VMIG_VFU_SERVER_H
#define VMIG_VFU_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmig/ctx.h>
#include <vmig/device.h>
#include <vmig/export.h>
#include <vmig/fsm.h>
#include <vmig/proto.h>

struct vmig_vfu_server;

#define VMIG_VFU_MAX_REGIONS 16
#define VMIG_VFU_MAX_IRQS 8
#define VMIG_VFU_MAX_DMA_MAPS 1024

/**
 * struct vmig_vfu_dev_ops - device callbacks; they run in the loop thread.
 * @region_access: read or write @len bytes at @offset of region @region
 *                 (bounds and access flags already checked).  0 or -errno.
 *                 Optional for regions backed by an fd (pread/pwrite is
 *                 used then).
 */
struct vmig_vfu_dev_ops {
    int (*region_access)(void *opaque, unsigned int region, uint64_t offset,
                         void *buf, uint32_t len, bool is_write);
};

/**
 * vmig_vfu_server_new() - Create a device server.
 * @ctx:    logging context (borrowed; must outlive the server).
 * @ops:    callbacks (borrowed).
 * @opaque: passed to @ops.
 * @dev:    the device's migration framework object (borrowed; must
 *          outlive the server), or NULL for a device without migration
 *          (always RUNNING; DEVICE_RESET does nothing).  Its DMA logging
 *          callbacks, when it has them, serve DMA_LOGGING_*; otherwise
 *          the server logs the writes the device makes through
 *          vmig_vfu_dma_write() and written vmig_vfu_dma_get() windows.
 * @out:    receives the server; untouched on failure.
 *
 * Return: 0, -EINVAL, -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_server_new(vmig_ctx_t *ctx, const struct vmig_vfu_dev_ops *ops,
                    void *opaque, struct vmig_dev *dev,
                    struct vmig_vfu_server **out);

/**
 * vmig_vfu_server_free() - Close everything and free.  NULL is accepted.
 * @s: server; its loop must not be running.
 */
VMIG_EXPORT void vmig_vfu_server_free(struct vmig_vfu_server *s);

/**
 * vmig_vfu_server_add_region() - Describe region @index (e.g. a BAR).
 * @s:        server, before it is listening.
 * @index:    region index (< VMIG_VFU_MAX_REGIONS).
 * @size:     region size in bytes.
 * @flags:    VMIG_VFU_REGION_READ / _WRITE.
 * @fd:       -1, or an fd whose [@fd_offset, @fd_offset + @size) backs the
 *            region; the client may then mmap it.  Duplicated; the caller
 *            keeps its own.
 * @fd_offset: page-aligned offset in @fd.
 *
 * Return: 0, -EINVAL, -EEXIST (index already added), -EBADF.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_server_add_region(struct vmig_vfu_server *s, unsigned int index,
                           uint64_t size, uint32_t flags, int fd,
                           uint64_t fd_offset);

/**
 * vmig_vfu_server_set_sparse() - Only parts of fd-backed region @index may
 * be mmap'ed: announce them as the sparse-mmap capability (the rest is
 * accessed with REGION_READ/WRITE, served from the fd).
 * @s:     server, before it is listening.
 * @index: an fd-backed region.
 * @areas: offsets/sizes inside the region (copied).
 * @n:     number of areas (1..64).
 *
 * Return: 0, -EINVAL, -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_server_set_sparse(struct vmig_vfu_server *s, unsigned int index,
                           const struct vmig_vfu_sparse_area *areas,
                           unsigned int n);

/**
 * vmig_vfu_server_add_irq() - Declare IRQ index @index with @count vectors.
 * @s:     server, before it is listening.
 * @index: IRQ index (< VMIG_VFU_MAX_IRQS), e.g. VFIO_PCI_MSIX_IRQ_INDEX.
 * @count: vectors (1..VMIG_VFU_MAX_IRQ_COUNT).
 *
 * Return: 0, -EINVAL, -EEXIST, -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_server_add_irq(struct vmig_vfu_server *s, unsigned int index,
                        unsigned int count);

/**
 * vmig_vfu_server_listen() - Create the listening socket at @path (mode
 * 0600; a stale socket there is replaced, any other file is left alone).
 * @s:    server.
 * @path: filesystem path, shorter than sizeof(sun_path).
 *
 * Return: 0, -ENAMETOOLONG, -EBUSY (already listening), -EEXIST (@path
 * exists and is not a socket), or -errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_server_listen(struct vmig_vfu_server *s, const char *path);

/**
 * vmig_vfu_server_adopt() - Serve an already connected socket (the spec's
 * --fd=FDNUM convention); ownership of @fd passes to the server.
 * @s:  server without a current client.
 * @fd: connected AF_UNIX stream socket.
 *
 * Return: 0, -EBUSY (a client is connected), -EBADF.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_vfu_server_adopt(struct vmig_vfu_server *s,
                                                      int fd);

/**
 * vmig_vfu_server_dispatch() - Wait up to @timeout_ms, then accept a
 * client or handle one message.
 * @s:          server.
 * @timeout_ms: -1 waits forever.
 *
 * A client that breaks the protocol badly enough (framing lost, oversized
 * message, timeout mid-message, error flood) is disconnected; that is not
 * an error of this call.  The next client is accepted afterwards.
 *
 * Return: 0 (something was done, or the timeout passed), -ESHUTDOWN after
 * vmig_vfu_server_stop(), -ENOTCONN when there is neither a listening
 * socket nor a client, or -errno on a local failure.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_server_dispatch(struct vmig_vfu_server *s, int timeout_ms);

/**
 * vmig_vfu_server_fd() - A file descriptor that is readable whenever
 * vmig_vfu_server_dispatch() has work (a client to accept, a message, or
 * a stop request), for programs with their own poll/epoll loop.  It stays
 * the same for the server's lifetime.
 * @s: server.
 *
 * Return: an fd owned by the server (an epoll fd).
 */
VMIG_EXPORT int vmig_vfu_server_fd(struct vmig_vfu_server *s);

/**
 * vmig_vfu_server_run() - Dispatch until vmig_vfu_server_stop() or, when
 * the server was given a socket with vmig_vfu_server_adopt() and does not
 * listen, until that client disconnects.
 * @s: server.
 *
 * Return: 0, or -errno from vmig_vfu_server_dispatch().
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_vfu_server_run(struct vmig_vfu_server *s);

/**
 * vmig_vfu_server_stop() - Make the loop return -ESHUTDOWN.  Thread- and
 * async-signal-safe.
 * @s: server.
 */
VMIG_EXPORT void vmig_vfu_server_stop(struct vmig_vfu_server *s);

/**
 * vmig_vfu_server_state() - The device's migration state.
 * @s: server.
 *
 * Return: a state (RUNNING for a device without migration).
 */
VMIG_EXPORT enum vmig_state vmig_vfu_server_state(struct vmig_vfu_server *s);

/**
 * vmig_vfu_server_device_reset() - A reset the device itself saw (e.g. a
 * guest FLR): vmig_dev_reset(dev, VMIG_RESET_GUEST) on the server's
 * framework object, which calls the reset callback, returns to RUNNING
 * and ends any data session so its reader/writer gets ENODEV.  Any
 * thread except inside a migration callback of the same device.
 * @s: server.
 */
VMIG_EXPORT void vmig_vfu_server_device_reset(struct vmig_vfu_server *s);

/**
 * vmig_vfu_irq_trigger() - Signal vector @sub of IRQ @index.  Any thread.
 * @s:     server.
 * @index: IRQ index.
 * @sub:   vector.
 *
 * Return: 0 when signalled; -EAGAIN when masked (it fires on unmask) or
 * the client wired no eventfd; -EINVAL for a bad index/vector.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_vfu_irq_trigger(struct vmig_vfu_server *s,
                                                     unsigned int index,
                                                     unsigned int sub);

/**
 * vmig_vfu_dma_read() - Read guest memory at DMA address @iova.  Any
 * thread; the range may span adjacent maps.
 * @s:    server.
 * @iova: DMA address.
 * @buf:  destination.
 * @len:  bytes.
 *
 * Return: 0; -EFAULT when any byte is unmapped or not readable; -ENOTCONN
 * without a client; -errno from a message-based transfer.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_vfu_dma_read(struct vmig_vfu_server *s,
                                                  uint64_t iova, void *buf,
                                                  size_t len);

/**
 * vmig_vfu_dma_write() - Write guest memory; logged as dirty while DMA
 * logging runs.  Same rules as vmig_vfu_dma_read().
 * @s:    server.
 * @iova: DMA address.
 * @buf:  source.
 * @len:  bytes.
 *
 * Return: 0, -EFAULT, -ENOTCONN, or -errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_vfu_dma_write(struct vmig_vfu_server *s,
                                                   uint64_t iova,
                                                   const void *buf, size_t len);

/**
 * vmig_vfu_dma_get() - A direct pointer to guest memory, for zero-copy
 * DMA.  Any thread.
 * @s:    server.
 * @iova: DMA address.
 * @len:  bytes; the range must lie inside one fd-backed (mmap'ed) map.
 * @prot: VMIG_VFU_DMA_READ and/or VMIG_VFU_DMA_WRITE, as intended.
 * @ptr:  receives the pointer on success.
 *
 * Until the matching vmig_vfu_dma_put() the mapping cannot go away: a
 * DMA_UNMAP (or a disconnect) waits, as the spec requires for in-flight
 * DMA.  So keep the window short, and do not wait for the loop thread
 * (or call vmig_vfu_dma_read()/_write() on message-based maps) while
 * holding it.
 *
 * Return: 0; -EFAULT when the range is unmapped, spans maps or lacks
 * @prot; -EOPNOTSUPP for a map without an fd (use vmig_vfu_dma_read()/
 * _write() there).
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_vfu_dma_get(struct vmig_vfu_server *s,
                                                 uint64_t iova, size_t len,
                                                 uint32_t prot, void **ptr);

/**
 * vmig_vfu_dma_put() - End a vmig_vfu_dma_get() window.
 * @s:       server.
 * @iova:    the address given to vmig_vfu_dma_get().
 * @len:     the length given to it.
 * @written: true when the device wrote the memory: it is dirty-logged.
 */
VMIG_EXPORT void vmig_vfu_dma_put(struct vmig_vfu_server *s, uint64_t iova,
                                  size_t len, bool written);

#endif /* VMIG_VFU_SERVER_H */
