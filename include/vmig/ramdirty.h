/* SPDX-License-Identifier: MIT */
/*
 * ramdirty.h - guest-RAM dirty tracking from both writers: the vCPU
 * (this process, through <vmig/dirty.h>) and devices (their DMA, through
 * vfio-user DMA logging: DMA_LOGGING_START / REPORT / STOP).
 *
 * The VMM's precopy loop registers its guest RAM regions (host mapping +
 * IOVA the devices see) and the vfio-user devices that may DMA into them,
 * starts tracking, and then, per region and per pass, asks for one
 * read-and-clear bitmap of pages written by anyone since the last pass:
 *
 *     vmig_ramdirty_new(ctx, VMIG_DIRTY_AUTO, &rd);
 *     vmig_ramdirty_add_region(rd, 0, ram, ram_len);
 *     vmig_ramdirty_add_device(rd, client, "nic0", 0);
 *     vmig_ramdirty_start(rd);
 *     ... copy all of RAM ...
 *     while (not converged) {
 *         vmig_ramdirty_collect(rd, 0, 0, ram_len, bitmap, nbits);
 *         ... resend the pages whose bits are set ...
 *     }
 *     pause vCPU, quiesce devices, collect once more, send, then
 *     vmig_ramdirty_stop(rd);
 *
 * Page sizes: bitmaps have one bit per RAM page (the CPU tracker's page
 * size).  Each device is offered that page size for its DMA logging
 * (or a larger minimum the caller asks for); a device that refuses it
 * with EINVAL/EOPNOTSUPP is offered twice the size, up to 2 MiB, and its
 * coarser pages are spread over the RAM pages they cover.
 *
 * Read-and-clear and sub-ranges: vmig_ramdirty_collect() may ask for any
 * page-aligned sub-range of a region.  The CPU tracker can only be read
 * for a whole region, so what it reports outside the sub-range is kept
 * pending inside the aggregator and handed out by a later collection of
 * those pages; device reports are asked for the sub-range only (widened
 * to the device's page size, the widening kept pending likewise).  A
 * write is therefore reported exactly once, by the first collection
 * covering its page that starts after it (or by that collection or the
 * next when the two race).
 *
 * Threads: one thread calls the aggregator; the vCPU and devices write
 * concurrently.
 */
#ifndef VMIG_RAMDIRTY_H
#define VMIG_RAMDIRTY_H

#include <stddef.h>
#include <stdint.h>
#include <vmig/ctx.h>
#include <vmig/dirty.h>
#include <vmig/export.h>

struct vmig_ramdirty;
struct vmig_vfu_client;

#define VMIG_RAMDIRTY_MAX_REGIONS 64
#define VMIG_RAMDIRTY_MAX_DEVICES 32
/* Largest DMA logging page size offered while negotiating. */
#define VMIG_RAMDIRTY_MAX_DEV_PAGE (2u << 20)

/**
 * vmig_ramdirty_new() - Create an empty aggregator.
 * @ctx:    logging context (borrowed; must outlive the aggregator).
 * @method: CPU tracking method for every region (VMIG_DIRTY_AUTO picks
 *          userfaultfd write-protect where the kernel has it).
 * @out:    receives the aggregator; untouched on failure.
 *
 * Return: 0, -EINVAL, -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_ramdirty_new(vmig_ctx_t *ctx,
                                                  enum vmig_dirty_method method,
                                                  struct vmig_ramdirty **out);

/**
 * vmig_ramdirty_free() - Stop device logging if running, release
 * everything.  NULL is accepted.
 * @rd: aggregator.
 */
VMIG_EXPORT void vmig_ramdirty_free(struct vmig_ramdirty *rd);

/**
 * vmig_ramdirty_add_region() - Track a guest RAM region.
 * @rd:   aggregator, not started.
 * @iova: the address devices use for @base's first byte (what the VMM
 *        gave to DMA_MAP).
 * @base: this process's mapping of the region (page-aligned); the vCPU
 *        writes through it.
 * @len:  bytes, a multiple of the page size, > 0.
 *
 * Return: the region's index (0, 1, ... in order of addition); -EINVAL
 * (alignment, overlap with another region's IOVA range), -EBUSY (started),
 * -E2BIG (too many regions), or the CPU tracker's error.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_ramdirty_add_region(struct vmig_ramdirty *rd, uint64_t iova, void *base,
                         size_t len);

/**
 * vmig_ramdirty_add_device() - Include a device's DMA writes.
 * @rd:        aggregator, not started.
 * @c:         the device's vfio-user client (borrowed; must outlive the
 *             aggregator or its stop).  Its DMA logging must be free.
 * @name:      for log messages (copied; NULL reads as "device").
 * @min_page:  smallest DMA logging page size to offer; 0 for the RAM page
 *             size.  Power of two.
 *
 * Return: the device's index; -EINVAL, -EBUSY (started), -E2BIG, -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_ramdirty_add_device(struct vmig_ramdirty *rd, struct vmig_vfu_client *c,
                         const char *name, uint64_t min_page);

/**
 * vmig_ramdirty_start() - Forget past writes and track from now on: start
 * every CPU tracker and DMA logging (over every region) on every device,
 * negotiating each device's page size.
 * @rd: aggregator with at least one region, not started.
 *
 * On failure nothing stays started.
 *
 * Return: 0; -EINVAL (no region), -EBUSY (already started), or the first
 * error (a device's DMA_LOGGING_START errno, a kernel errno).
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_ramdirty_start(struct vmig_ramdirty *rd);

/**
 * vmig_ramdirty_collect() - Read and clear: pages of region @region in
 * [@offset, @offset + @len) written by the vCPU or a device since they
 * were last reported.
 * @rd:     aggregator, started.
 * @region: region index.
 * @offset: byte offset in the region, page-aligned.
 * @len:    bytes, page-aligned, > 0, within the region.
 * @bitmap: bit i (bit i % 64 of word i / 64) stands for the page at
 *          @offset + i * page size; set bits are ORed in, others left.
 * @nbits:  size of @bitmap in bits, at least @len / page size.
 *
 * Return: the number of pages reported by this call, or a negative errno
 * (-EINVAL bad argument or not started, a device's report errno, a kernel
 * errno).  After an error nothing reported so far is lost: it stays
 * pending for the next call.
 */
VMIG_EXPORT VMIG_MUST_CHECK long
vmig_ramdirty_collect(struct vmig_ramdirty *rd, unsigned int region,
                      uint64_t offset, uint64_t len, uint64_t *bitmap,
                      size_t nbits);

/**
 * vmig_ramdirty_stop() - Stop DMA logging on every device (the CPU
 * trackers stay armed until vmig_ramdirty_free(); collecting is refused
 * from now on).
 * @rd: aggregator.
 *
 * Return: 0, -EINVAL when not started, or the first device's error
 * (every device is still asked to stop).
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_ramdirty_stop(struct vmig_ramdirty *rd);

/**
 * vmig_ramdirty_page_size() - Bitmap granularity (the RAM page size).
 * @rd: aggregator.
 *
 * Return: bytes.
 */
VMIG_EXPORT uint64_t vmig_ramdirty_page_size(const struct vmig_ramdirty *rd);

/**
 * vmig_ramdirty_device_page_size() - The DMA logging page size a device
 * agreed to.
 * @rd:     aggregator, started.
 * @device: device index.
 *
 * Return: bytes, or 0 when not started or out of range.
 */
VMIG_EXPORT uint64_t vmig_ramdirty_device_page_size(
    const struct vmig_ramdirty *rd, unsigned int device);

#endif /* VMIG_RAMDIRTY_H */
