/* SPDX-License-Identifier: MIT */
/*
 * vfu_client.h - the vfio-user client (VMM side).
 *
 * Connects to a device server, negotiates VERSION (offering vmig's
 * extensions, which plain servers ignore), and wraps every command in a
 * synchronous call.  While a call waits for its reply, DMA_READ/DMA_WRITE
 * requests from the server are served from the memory given to
 * vmig_vfu_client_dma_map(), so a device doing message-based DMA while
 * handling our request cannot deadlock us.  When idle, poll
 * vmig_vfu_client_fd() and call vmig_vfu_client_service() to serve them.
 *
 * Threads: calls are serialised by an internal lock; one call at a time
 * is in flight.
 *
 * Migration data: vmig_vfu_client_mig_read() returns > 0 bytes, 0 at the
 * permanent end (STOP_COPY), -ENOMSG for "no more for now" (PRE_COPY) and
 * -ENODEV when a device reset ended the session - never a
 * silent end.  vmig_vfu_client_mig_save() reads a whole session, over
 * the bulk channel when the server offers it.
 */
#ifndef VMIG_VFU_CLIENT_H
#define VMIG_VFU_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <vmig/ctx.h>
#include <vmig/export.h>
#include <vmig/fsm.h>
#include <vmig/proto.h>

struct vmig_vfu_client;

/**
 * vmig_vfu_client_connect() - Connect to @path and negotiate.
 * @ctx:  logging context (borrowed; must outlive the client).
 * @path: the server's socket.
 * @ext:  VMIG_VFU_EXT_* extensions to offer (0 for a plain client).
 * @out:  receives the client; untouched on failure.
 *
 * Return: 0, -ENAMETOOLONG, -ECONNREFUSED/-ENOENT (no server),
 * -EOPNOTSUPP (version mismatch), -EPROTO, -ETIMEDOUT, -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_connect(vmig_ctx_t *ctx, const char *path, uint32_t ext,
                        struct vmig_vfu_client **out);

/**
 * vmig_vfu_client_adopt() - Like _connect() on an already connected
 * socket; ownership of @fd passes to the client (also on failure).
 * @ctx: logging context.
 * @fd:  connected AF_UNIX stream socket.
 * @ext: extensions to offer.
 * @out: receives the client.
 *
 * Return: as vmig_vfu_client_connect().
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_adopt(vmig_ctx_t *ctx, int fd, uint32_t ext,
                      struct vmig_vfu_client **out);

/**
 * vmig_vfu_client_set_name() - Name the device in the client's messages
 * (a refused reply, a refused reset, a server gone).  The default is the
 * socket path.
 * @c:    client.
 * @name: printable; copied (truncated to 63 bytes).
 */
VMIG_EXPORT void vmig_vfu_client_set_name(struct vmig_vfu_client *c,
                                          const char *name);

/**
 * vmig_vfu_client_free() - Disconnect and free.  NULL is accepted.
 * @c: client.
 */
VMIG_EXPORT void vmig_vfu_client_free(struct vmig_vfu_client *c);

/**
 * vmig_vfu_client_caps() - What the server announced in VERSION.
 * @c:   client.
 * @out: receives the server's capabilities; ext holds the extensions
 *       both sides agreed on.
 */
VMIG_EXPORT void vmig_vfu_client_caps(struct vmig_vfu_client *c,
                                      struct vmig_vfu_caps *out);

/**
 * vmig_vfu_client_fd() - The socket, to poll for server requests.
 * @c: client.
 *
 * Return: a file descriptor owned by the client.
 */
VMIG_EXPORT int vmig_vfu_client_fd(struct vmig_vfu_client *c);

/**
 * vmig_vfu_client_service() - Serve DMA requests the server sent while no
 * call was in flight.
 * @c:          client.
 * @timeout_ms: how long to wait for the first one (0: don't wait).
 *
 * Return: number of requests served, or -errno (-ENOTCONN when the server
 * went away).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_service(struct vmig_vfu_client *c, int timeout_ms);

/**
 * vmig_vfu_client_device_info() - DEVICE_GET_INFO.
 * @c:   client.
 * @out: receives the reply.
 *
 * Return: 0 or -errno (the server's errno for refused requests).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_device_info(struct vmig_vfu_client *c,
                            struct vmig_vfu_device_info *out);

/**
 * vmig_vfu_client_region_info() - DEVICE_GET_REGION_INFO.
 * @c:      client.
 * @index:  region.
 * @out:    receives the region info (capabilities are not returned).
 * @fd_out: receives the mmap fd (caller closes it) or -1; may be NULL.
 *
 * Return: 0 or -errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_region_info(struct vmig_vfu_client *c, unsigned int index,
                            struct vmig_vfu_region_info *out, int *fd_out);

/**
 * vmig_vfu_client_region_sparse() - The mmap-able parts of a region
 * (its sparse-mmap capability), asking again with room for the
 * capabilities when the first reply says they do not fit.
 * @c:     client.
 * @index: region.
 * @areas: receives up to @max areas (offsets relative to the region's
 *         mmap offset).
 * @max:   room in @areas.
 *
 * Return: the number of areas (0: no capability - the whole region is
 * mmap-able if it has the MMAP flag), -EPROTO, or -errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_region_sparse(struct vmig_vfu_client *c, unsigned int index,
                              struct vmig_vfu_sparse_area *areas,
                              unsigned int max);

/**
 * vmig_vfu_client_irq_info() - DEVICE_GET_IRQ_INFO.
 * @c:     client.
 * @index: IRQ index.
 * @out:   receives the reply.
 *
 * Return: 0 or -errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_irq_info(struct vmig_vfu_client *c, unsigned int index,
                         struct vmig_vfu_irq_info *out);

/**
 * vmig_vfu_client_set_irqs() - Wire (or, with @efds NULL, unwire)
 * eventfds as the TRIGGER action of vectors [@start, @start + @count).
 * @c:     client.
 * @index: IRQ index.
 * @start: first vector.
 * @count: vectors (<= VMIG_VFU_MAX_FDS when @efds is given).
 * @efds:  @count eventfds (borrowed; the server gets copies), or NULL.
 *
 * Return: 0 or -errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_set_irqs(struct vmig_vfu_client *c, unsigned int index,
                         unsigned int start, unsigned int count,
                         const int *efds);

/**
 * vmig_vfu_client_region_read() - Read @len bytes of a region (split into
 * transfers the server accepts).
 * @c:      client.
 * @region: region index.
 * @offset: offset in the region.
 * @buf:    destination.
 * @len:    bytes.
 *
 * Return: 0 or -errno (-EBUSY in STOP_COPY/RESUMING).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_region_read(struct vmig_vfu_client *c, unsigned int region,
                            uint64_t offset, void *buf, size_t len);

/**
 * vmig_vfu_client_region_write() - Write @len bytes of a region.
 * @c:      client.
 * @region: region index.
 * @offset: offset in the region.
 * @buf:    source.
 * @len:    bytes.
 *
 * Return: 0 or -errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_region_write(struct vmig_vfu_client *c, unsigned int region,
                             uint64_t offset, const void *buf, size_t len);

/**
 * vmig_vfu_client_dma_map() - Make guest memory available for device DMA.
 * @c:      client.
 * @iova:   DMA address.
 * @size:   bytes.
 * @prot:   VMIG_VFU_DMA_READ / _WRITE.
 * @fd:     memfd (or other file) backing the memory, passed to the server
 *          for mmap; -1 for message-based DMA.  Borrowed.
 * @fd_off: offset of @iova's first byte in @fd.
 * @vaddr:  the client's own mapping of the memory, used to serve the
 *          server's DMA_READ/DMA_WRITE messages; may be NULL with an fd.
 *
 * Return: 0 or -errno (-EEXIST on overlap).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_dma_map(struct vmig_vfu_client *c, uint64_t iova, uint64_t size,
                        uint32_t prot, int fd, uint64_t fd_off, void *vaddr);

/**
 * vmig_vfu_client_dma_unmap() - Remove a mapping (exact range).
 * @c:    client.
 * @iova: DMA address given to the map.
 * @size: size given to the map.
 *
 * Return: 0 or -errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_dma_unmap(struct vmig_vfu_client *c, uint64_t iova,
                          uint64_t size);

/**
 * vmig_vfu_client_reset() - DEVICE_RESET.
 * @c: client.
 *
 * Return: 0 or -errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_reset(struct vmig_vfu_client *c);

/**
 * vmig_vfu_client_mig_flags() - The device's migration flags.
 * @c:     client.
 * @flags: receives VMIG_MIGRATION_*.
 *
 * Return: 0, -EOPNOTSUPP (no migration), or -errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_mig_flags(struct vmig_vfu_client *c, uint64_t *flags);

/**
 * vmig_vfu_client_get_state() - The device's migration state.
 * @c:   client.
 * @out: receives the state.
 *
 * Return: 0 or -errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_get_state(struct vmig_vfu_client *c, enum vmig_state *out);

/**
 * vmig_vfu_client_set_state() - Move the device to @target; the server
 * walks combination transitions arc by arc.
 * @c:      client.
 * @target: state.
 *
 * On failure the device may be anywhere along the path; the client asks
 * the server and caches the answer (see vmig_vfu_client_get_state()).
 *
 * Return: 0 or -errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_set_state(struct vmig_vfu_client *c, enum vmig_state target);

/**
 * vmig_vfu_client_mig_read() - One MIG_DATA_READ of at most @len bytes.
 * @c:   client.
 * @buf: destination.
 * @len: bytes wanted (capped at the server's max transfer).
 *
 * Return: > 0 bytes; 0 at the permanent end (STOP_COPY); -ENOMSG when
 * PRE_COPY has nothing more for now; -ENODEV when a reset ended the
 * session; -EBUSY outside the saving states; -errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK long
vmig_vfu_client_mig_read(struct vmig_vfu_client *c, void *buf, size_t len);

/**
 * vmig_vfu_client_mig_write() - Send resuming data (RESUMING only).
 * @c:   client.
 * @buf: data.
 * @len: bytes (split into transfers the server accepts).
 *
 * Return: 0, -ENODEV (reset during the session), -EBUSY, -errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_mig_write(struct vmig_vfu_client *c, const void *buf,
                          size_t len);

/**
 * vmig_vfu_sink_fn - receives saving data from vmig_vfu_client_mig_save().
 * @opaque: as given.
 * @buf:    data, valid during the call.
 * @len:    bytes (> 0).
 *
 * Return: 0, or -errno to stop the save.
 */
typedef int vmig_vfu_sink_fn(void *opaque, const void *buf, size_t len);

/**
 * vmig_vfu_client_mig_save() - Read the saving session until its end
 * (STOP_COPY) or until "no more for now" (PRE_COPY).
 * @c:      client.
 * @sink:   called with each piece, in order.
 * @opaque: passed to @sink.
 * @bytes:  receives the number of bytes delivered (also on failure);
 *          may be NULL.
 *
 * Uses the bulk channel when negotiated, MIG_DATA_READ otherwise.
 *
 * Return: 0 at the end of data in STOP_COPY; -ENOMSG when PRE_COPY has no
 * more for now; -ENODEV after a device reset; -errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_mig_save(struct vmig_vfu_client *c, vmig_vfu_sink_fn *sink,
                         void *opaque, uint64_t *bytes);

/**
 * vmig_vfu_client_mig_save_max() - Like vmig_vfu_client_mig_save(), but
 * deliver at most @max bytes (a PRE_COPY burst the VMM sized with
 * PRECOPY_INFO).
 * @c:      client.
 * @max:    byte limit, > 0 (UINT64_MAX: none).
 * @sink:   called with each piece, in order.
 * @opaque: passed to @sink.
 * @bytes:  receives the number of bytes delivered; may be NULL.
 *
 * Return: as vmig_vfu_client_mig_save(), plus -EAGAIN when @max bytes
 * were delivered and the session may have more; -EINVAL for a zero
 * @max or no @sink.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_mig_save_max(struct vmig_vfu_client *c, uint64_t max,
                             vmig_vfu_sink_fn *sink, void *opaque,
                             uint64_t *bytes);

/**
 * vmig_vfu_client_mig_pull() - Read at most @len bytes of the saving
 * session into @buf: one bounded bulk read when the bulk channel is
 * negotiated (the frames land in @buf, no copy in between), MIG_DATA_READs
 * of at most the server's transfer size otherwise.  What a VMM streaming
 * device state calls once per chunk: it never holds more than @len bytes.
 * @c:   client.
 * @buf: destination.
 * @len: bytes wanted, > 0.
 * @got: receives the bytes delivered (also on failure; then stale).
 *
 * Return: 0 at the permanent end (STOP_COPY), -EAGAIN when @len bytes were
 * delivered and the session may have more, -ENOMSG when PRE_COPY has no
 * more for now, -ENODEV after a device reset, -EPROTO when the server sent
 * more than asked, -EINVAL, -errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_mig_pull(struct vmig_vfu_client *c, void *buf, size_t len,
                         size_t *got);

/**
 * vmig_vfu_client_data_size() - VFIO's MIG_DATA_SIZE: estimated bytes
 * STOP_COPY will produce.
 * @c:     client.
 * @bytes: receives the estimate.
 *
 * The vfio-user specification lists no such feature, so it is asked only
 * of a server that negotiated vmig's extensions in VERSION; any other
 * gets no request.
 *
 * Return: 0, -EOPNOTSUPP (not negotiated, or the device has none), -errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_data_size(struct vmig_vfu_client *c, uint64_t *bytes);

/**
 * vmig_vfu_client_precopy_info() - PRE_COPY sizing (x-vmig extension).
 * @c:       client.
 * @initial: receives initial bytes still to read.
 * @dirty:   receives dirty bytes.
 *
 * Return: 0; -EOPNOTSUPP when not negotiated; -EINVAL outside PRE_COPY.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_precopy_info(struct vmig_vfu_client *c, uint64_t *initial,
                             uint64_t *dirty);

/**
 * vmig_vfu_client_probe() - DEVICE_FEATURE with PROBE: does the device
 * support feature @index for the operations in @ops?
 * @c:     client.
 * @index: feature index (VMIG_VFU_FEAT_*).
 * @ops:   VMIG_VFU_FEATURE_GET and/or _SET (0: any).
 *
 * Return: 0 (supported), or the device's -errno (-EOPNOTSUPP, ...).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_probe(struct vmig_vfu_client *c, uint32_t index, uint32_t ops);

/**
 * vmig_vfu_client_log_start() - DMA_LOGGING_START.
 * @c:         client.
 * @page_size: tracking granularity (power of two, >= 4096).
 * @ranges:    IOVA ranges to track.
 * @n:         number of ranges (1..VMIG_VFU_MAX_LOG_RANGES).
 *
 * Return: 0 or -errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_log_start(struct vmig_vfu_client *c, uint64_t page_size,
                          const struct vmig_vfu_log_range *ranges,
                          unsigned int n);

/**
 * vmig_vfu_client_log_report() - DMA_LOGGING_REPORT: dirty bitmap of
 * [@iova, @iova + @length), one bit per @page_size; clears what it reports.
 * @c:         client.
 * @iova:      start.
 * @length:    bytes.
 * @page_size: bitmap granularity (power of two).
 * @bitmap:    receives ceil(pages / 64) u64 words.
 *
 * Return: 0 or -errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_log_report(struct vmig_vfu_client *c, uint64_t iova,
                           uint64_t length, uint64_t page_size,
                           uint64_t *bitmap);

/**
 * vmig_vfu_client_log_stop() - DMA_LOGGING_STOP.
 * @c: client.
 *
 * Return: 0 or -errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_client_log_stop(struct vmig_vfu_client *c);

#endif /* VMIG_VFU_CLIENT_H */
