/* SPDX-License-Identifier: MIT */
/*
 * vfu_server.h - the vfio-user device-server framework.
 *
 * A device author describes regions and IRQs, supplies callbacks, and gets
 * a vfio-user server: the framework owns the socket (created 0600), the
 * VERSION negotiation, the DMA map table (fd passing + mmap, or DMA_READ/
 * DMA_WRITE messages when the client gave no fd), IRQ eventfds, the VFIO
 * migration state machine (<vmig/mig.h>) and the data session semantics:
 *   - in STOP_COPY the end of data is permanent (reads return 0 forever);
 *   - in PRE_COPY "no more for now" is distinct (the callback returns
 *     -ENOMSG; on the wire a short MIG_DATA_READ reply);
 *   - after a device reset the session's reader/writer gets ENODEV, never
 *     a silent end of data (seed 003).
 * Commands the current migration state forbids are refused with EBUSY
 * (region access in STOP_COPY, RESUMING and ERROR; data reads outside the
 * saving states; data writes outside RESUMING).
 *
 * Threads: the event loop (vmig_vfu_server_run() or _dispatch()) runs in
 * one thread and calls every callback from it, except the reset callback,
 * which vmig_vfu_server_device_reset() runs on its caller's thread
 * (serialised with state changes by the migration object's lock, not
 * with the other callbacks).  vmig_vfu_irq_trigger(),
 * vmig_vfu_dma_read()/_write(), vmig_vfu_server_device_reset() and
 * vmig_vfu_server_stop() may be called from any thread.  Message-based DMA
 * from a device thread needs the loop thread to be free to read the reply,
 * so a callback must not wait for a device thread that is doing DMA.
 *
 * Example (see docs/vfio-user.md for a complete one):
 *
 *     static const struct vmig_vfu_dev_ops ops = {
 *         .region_access = my_bar0, .mig_step = my_step,
 *         .mig_read = my_save, .mig_write = my_load,
 *     };
 *     vmig_vfu_server_new(ctx, &ops, dev, VMIG_MIGRATION_STOP_COPY, &s);
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
#include <vmig/export.h>
#include <vmig/fsm.h>
#include <vmig/proto.h>

struct vmig_vfu_server;

#define VMIG_VFU_MAX_REGIONS 16
#define VMIG_VFU_MAX_IRQS 8
#define VMIG_VFU_MAX_DMA_MAPS 1024

/**
 * struct vmig_vfu_dev_ops - device callbacks; all run in the loop thread.
 * @region_access: read or write @len bytes at @offset of region @region
 *                 (bounds and access flags already checked).  0 or -errno.
 *                 Optional for regions backed by an fd (pread/pwrite is
 *                 used then).
 * @reset:         device reset (DEVICE_RESET, or
 *                 vmig_vfu_server_device_reset()): back to power-on state,
 *                 dropping session data.  Optional.
 * @mig_step:      perform one migration arc, as struct vmig_mig_ops.step.
 *                 Required when the device has migration flags.
 * @mig_read:      produce saving data: > 0 bytes written to @buf (at most
 *                 @len); 0 = end of data (only in STOP_COPY; permanent);
 *                 -ENOMSG = nothing more for now (PRE_COPY); -errno.
 * @mig_write:     consume all @len bytes of resuming data; 0 or -errno.
 * @mig_data_size: estimated STOP_COPY bytes (VFIO's MIG_DATA_SIZE).
 *                 Optional.
 * @precopy_info:  PRE_COPY sizing (VFIO_MIG_GET_PRECOPY_INFO numbers):
 *                 bytes of initial data still to read, and of dirty data.
 *                 Optional; offered to clients as the x-vmig extension.
 * @log_start:     start DMA dirty logging; optional.  Without log
 *                 callbacks the framework logs the writes the device makes
 *                 through vmig_vfu_dma_write() itself.
 * @log_stop:      stop DMA dirty logging.
 * @log_report:    fill @bitmap (zeroed, one bit per @page_size of
 *                 [@iova, @iova + @length)) and clear what it reported.
 */
struct vmig_vfu_dev_ops {
    int (*region_access)(void *opaque, unsigned int region, uint64_t offset,
                         void *buf, uint32_t len, bool is_write);
    void (*reset)(void *opaque);
    int (*mig_step)(void *opaque, enum vmig_state from, enum vmig_state to,
                    bool *broken);
    long (*mig_read)(void *opaque, void *buf, size_t len);
    int (*mig_write)(void *opaque, const void *buf, size_t len);
    int (*mig_data_size)(void *opaque, uint64_t *stop_copy_bytes);
    int (*precopy_info)(void *opaque, uint64_t *initial_bytes,
                        uint64_t *dirty_bytes);
    int (*log_start)(void *opaque, uint64_t page_size,
                     const struct vmig_vfu_log_range *ranges,
                     unsigned int nranges);
    int (*log_stop)(void *opaque);
    int (*log_report)(void *opaque, uint64_t iova, uint64_t length,
                      uint64_t page_size, uint64_t *bitmap);
};

/**
 * vmig_vfu_server_new() - Create a device server.
 * @ctx:       logging context (borrowed; must outlive the server).
 * @ops:       callbacks (borrowed).
 * @opaque:    passed to every callback.
 * @mig_flags: VMIG_MIGRATION_* the device supports, or 0 for a device
 *             without migration.
 * @out:       receives the server; untouched on failure.
 *
 * Return: 0, -EINVAL (bad flags, migration without mig_step/mig_read/
 * mig_write), -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_server_new(vmig_ctx_t *ctx, const struct vmig_vfu_dev_ops *ops,
                    void *opaque, uint64_t mig_flags,
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
 * guest FLR): calls the reset callback, returns to RUNNING and ends any
 * data session so its reader/writer gets ENODEV.  Any thread.
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
