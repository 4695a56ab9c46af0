/* SPDX-License-Identifier: MIT */
/*
 * dirty.h - tracking which pages of guest RAM the VMM's own threads write.
 *
 * Precopy sends guest RAM while the guest runs, then resends the pages
 * written meanwhile.  Writes come from two places: the vCPU (this
 * process) and devices (DMA, tracked by the devices' DMA logging).  This
 * module covers the first, with a real kernel mechanism where there is
 * one:
 *   - VMIG_DIRTY_UFFD_WP: userfaultfd write-protect in async mode
 *     (UFFD_FEATURE_WP_ASYNC, Linux 6.7+) read and re-armed atomically with
 *     the PAGEMAP_SCAN ioctl.  Writes cost one minor fault per page per
 *     round, with no thread handling faults;
 *   - VMIG_DIRTY_HASH: the portable fallback: a 128-bit xxh3 of every page,
 *     compared at each collection.  Correct (a page is reported whenever
 *     its bytes changed) but reads all of RAM every round.
 * Only writes made through this process's mapping are seen by UFFD_WP; the
 * hash method sees every writer of shared memory.
 */
#ifndef VMIG_DIRTY_H
#define VMIG_DIRTY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmig/ctx.h>
#include <vmig/export.h>

struct vmig_dirty;

enum vmig_dirty_method {
    VMIG_DIRTY_AUTO = 0, /* UFFD_WP when the kernel has it, else HASH */
    VMIG_DIRTY_UFFD_WP,
    VMIG_DIRTY_HASH,
    VMIG_DIRTY__COUNT
};

/**
 * vmig_dirty_method_name() - "auto", "uffd-wp", "hash".
 * @m: a method.
 *
 * Return: a static string; "unknown" for other values.
 */
VMIG_EXPORT const char *vmig_dirty_method_name(enum vmig_dirty_method m);

/**
 * vmig_dirty_uffd_wp_supported() - Whether this kernel offers async
 * userfaultfd write-protect with PAGEMAP_SCAN to this process.
 *
 * Return: true when VMIG_DIRTY_UFFD_WP can be used.
 */
VMIG_EXPORT bool vmig_dirty_uffd_wp_supported(void);

/**
 * vmig_dirty_new() - Prepare dirty tracking of [@base, @base + @len).
 * @ctx:    logging context (borrowed).
 * @base:   page-aligned start of a mapping of this process (anonymous or
 *          shared memory such as a memfd).
 * @len:    length, a multiple of the page size, > 0.
 * @method: AUTO, UFFD_WP (fails with -EOPNOTSUPP where unavailable) or
 *          HASH.
 * @out:    receives the tracker; untouched on failure.
 *
 * Tracking is off until vmig_dirty_start().
 *
 * Return: 0, -EINVAL (alignment, length), -EOPNOTSUPP, -ENOMEM, or the
 * errno of a failing kernel call.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_dirty_new(vmig_ctx_t *ctx, void *base,
                                               size_t len,
                                               enum vmig_dirty_method method,
                                               struct vmig_dirty **out);

/**
 * vmig_dirty_free() - Stop tracking and release everything.  NULL is fine.
 * @d: tracker.
 */
VMIG_EXPORT void vmig_dirty_free(struct vmig_dirty *d);

/**
 * vmig_dirty_method_in_use() - The method actually used (never AUTO).
 * @d: tracker.
 *
 * Return: UFFD_WP or HASH.
 */
VMIG_EXPORT enum vmig_dirty_method
vmig_dirty_method_in_use(const struct vmig_dirty *d);

/**
 * vmig_dirty_page_size() - Tracking granularity in bytes.
 * @d: tracker.
 *
 * Return: the page size.
 */
VMIG_EXPORT size_t vmig_dirty_page_size(const struct vmig_dirty *d);

/**
 * vmig_dirty_pages() - Number of pages tracked (bits in a bitmap).
 * @d: tracker.
 *
 * Return: len / page size.
 */
VMIG_EXPORT size_t vmig_dirty_pages(const struct vmig_dirty *d);

/**
 * vmig_dirty_start() - Forget past writes and track from now on.
 * @d: tracker.
 *
 * Return: 0 or a negative errno from the kernel.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_dirty_start(struct vmig_dirty *d);

/**
 * vmig_dirty_collect() - Read and clear: report pages written since the
 * last start or collect, and track anew from this moment.
 * @d:      tracker (started).
 * @bitmap: receives one bit per page (bit i of word i / 64), set for
 *          written pages; bits are ORed in, never cleared, so a caller
 *          can accumulate.
 * @nbits:  size of @bitmap in bits; at least vmig_dirty_pages().
 *
 * A write that races with the collection is reported either now or at
 * the next collection, never lost.
 *
 * Return: the number of pages found written by this collection (whether
 * or not their bits were already set), or -EINVAL (not started,
 * @nbits too small), or a negative errno from the kernel.
 */
VMIG_EXPORT VMIG_MUST_CHECK long
vmig_dirty_collect(struct vmig_dirty *d, uint64_t *bitmap, size_t nbits);

#endif /* VMIG_DIRTY_H */
