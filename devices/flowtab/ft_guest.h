/* SPDX-License-Identifier: MIT */
/*
 * ft_guest.h - a guest driver for the flowtab device.
 *
 * It works on guest memory (a host mapping of guest RAM, addressed by
 * IOVA = offset in that mapping) and on the device's registers through
 * accessor callbacks, so the same driver runs against an in-process model
 * or, later, a device behind a transport.  Every piece of driver state
 * lives in guest memory (the driver area), so migrating guest RAM and the
 * device migrates the workload: ft_guest_attach() picks it up on the
 * destination.
 *
 * The driver posts packets of @nflows flows, forwards every
 * @fwd_every-th one to the device's peer, and checks every completion:
 * in order, exactly once, status OK, and the flow's packet and byte
 * counters equal to what it sent.
 *
 * Not thread-safe: one vCPU drives one instance.
 */
#ifndef FT_GUEST_H
#define FT_GUEST_H

#include <stddef.h>
#include <stdint.h>
#include "flowtab_regs.h"

/**
 * struct ft_guest_regs - register accessors (BAR0).
 * @read:   read a 32-bit register; 0 or a negative errno.
 * @write:  write a 32-bit register; 0 or a negative errno.
 * @opaque: passed to both.
 */
struct ft_guest_regs {
    int (*read)(void *opaque, uint32_t off, uint32_t *val);
    int (*write)(void *opaque, uint32_t off, uint32_t val);
    void *opaque;
};

/* Per-flow expectation kept in guest memory. */
struct ft_guest_exp {
    uint64_t packets;
    uint64_t bytes;
};

/*
 * struct ft_guest_area - the driver's state at the start of its area in
 * guest memory, followed by the descriptor ring, the completion ring, the
 * statistics block and nflows struct ft_guest_exp.
 */
struct ft_guest_area {
    uint64_t magic;
    uint32_t ring_size;
    uint32_t nflows;
    uint64_t rng;
    uint32_t prod;
    uint32_t cons;
    uint64_t posted;
    uint64_t completed;
    uint64_t bad;
    uint64_t fwd_posted;
    uint64_t fwd_completed;
    uint64_t desc_iova;
    uint64_t cmpl_iova;
    uint64_t stats_iova;
    uint64_t exp_iova;
};

/**
 * struct ft_guest - a driver instance (host-side handle; no state of its
 * own beyond pointers into guest memory).
 */
struct ft_guest {
    uint8_t *ram;
    size_t ram_len;
    struct ft_guest_area *a;
    struct ft_desc *ring;
    struct ft_cmpl *cmpl;
    struct ft_stats *stats;
    struct ft_guest_exp *exp;
    struct ft_guest_regs regs;
};

/**
 * ft_guest_area_bytes() - Guest memory the driver needs.
 * @ring_size: ring entries (power of two).
 * @nflows:    distinct flows the driver uses.
 *
 * Return: bytes, from the area's start.
 */
size_t ft_guest_area_bytes(uint32_t ring_size, uint32_t nflows);

/**
 * ft_guest_init() - Format the driver area and program the device.
 * @g:         instance to fill.
 * @ram:       host mapping of guest memory.
 * @ram_len:   its length.
 * @area_iova: where the driver area starts (8-byte aligned).
 * @ring_size: ring entries, power of two in FT_RING_MIN..FT_RING_MAX.
 * @nflows:    number of flows, >= 1.
 * @seed:      traffic generator seed (non-zero).
 * @regs:      register accessors (copied).
 *
 * Return: 0; -EINVAL (bad parameters, area outside guest memory),
 * -ENODEV (not a flowtab device), or a register access error.
 */
int ft_guest_init(struct ft_guest *g, void *ram, size_t ram_len,
                  uint64_t area_iova, uint32_t ring_size, uint32_t nflows,
                  uint64_t seed, const struct ft_guest_regs *regs);

/**
 * ft_guest_attach() - Take over a driver area formatted earlier (on the
 * destination after migration).
 * @g:         instance to fill.
 * @ram:       host mapping of guest memory.
 * @ram_len:   its length.
 * @area_iova: where the driver area starts.
 * @regs:      register accessors (copied).
 *
 * Return: 0, or -EINVAL when no valid driver area is there.
 */
int ft_guest_attach(struct ft_guest *g, void *ram, size_t ram_len,
                    uint64_t area_iova, const struct ft_guest_regs *regs);

/**
 * ft_guest_post() - Post up to @n packets (as far as the ring has room)
 * and ring the doorbell.
 * @g:         instance.
 * @n:         packets wanted.
 * @fwd_every: set FT_DESC_FWD on every @fwd_every-th packet; 0 = never.
 *
 * Return: packets posted (maybe 0), or the doorbell write's error.
 */
long ft_guest_post(struct ft_guest *g, unsigned int n, unsigned int fwd_every);

/**
 * ft_guest_reap() - Check every completion the device has published.
 * @g: instance.
 *
 * Return: completions reaped, or -EBADMSG at the first wrong one (counted
 * in the area's @bad; reaping stops there).
 */
long ft_guest_reap(struct ft_guest *g);

/**
 * ft_guest_outstanding() - Posted packets not yet reaped.
 * @g: instance.
 *
 * Return: the count.
 */
uint32_t ft_guest_outstanding(const struct ft_guest *g);

/**
 * ft_guest_completed() - Completions reaped so far; may be called from
 * another thread than the one driving @g (to watch progress).
 * @g: instance.
 *
 * Return: the count.
 */
uint64_t ft_guest_completed(const struct ft_guest *g);

#endif /* FT_GUEST_H */
