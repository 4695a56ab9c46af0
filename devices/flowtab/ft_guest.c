/* SPDX-License-Identifier: MIT */
/*
 * ft_guest.c - the flowtab guest driver (see ft_guest.h).
 */
#include <errno.h>
#include <string.h>
#include "ft_guest.h"

#define FT_GUEST_MAGIC 0x5652444742415446ull /* "FTABGDRV" */

static size_t
align64(size_t v)
{
    return (v + 63) & ~(size_t)63;
}

size_t
ft_guest_area_bytes(uint32_t ring_size, uint32_t nflows)
{
    return align64(sizeof(struct ft_guest_area)) +
           2 * align64((size_t)ring_size * 32) +
           align64(sizeof(struct ft_stats)) +
           (size_t)nflows * sizeof(struct ft_guest_exp);
}

static void
map_area(struct ft_guest *g)
{
    g->ring = (struct ft_desc *)(void *)(g->ram + g->a->desc_iova);
    g->cmpl = (struct ft_cmpl *)(void *)(g->ram + g->a->cmpl_iova);
    g->stats = (struct ft_stats *)(void *)(g->ram + g->a->stats_iova);
    g->exp = (struct ft_guest_exp *)(void *)(g->ram + g->a->exp_iova);
}

static int
wr64(const struct ft_guest *g, uint32_t lo, uint64_t v)
{
    int ret = g->regs.write(g->regs.opaque, lo, (uint32_t)v);

    if (ret == 0) {
        ret = g->regs.write(g->regs.opaque, lo + 4, (uint32_t)(v >> 32));
    }
    return ret;
}

int
ft_guest_init(struct ft_guest *g, void *ram, size_t ram_len, uint64_t area_iova,
              uint32_t ring_size, uint32_t nflows, uint64_t seed,
              const struct ft_guest_regs *regs)
{
    struct ft_guest_area *a;
    uint64_t off;
    uint32_t id = 0;
    int ret;

    if (g == NULL || ram == NULL || regs == NULL || regs->read == NULL ||
        regs->write == NULL || nflows == 0 || seed == 0 ||
        ring_size < FT_RING_MIN || ring_size > FT_RING_MAX ||
        (ring_size & (ring_size - 1)) != 0 || (area_iova & 63) != 0 ||
        area_iova > ram_len ||
        ft_guest_area_bytes(ring_size, nflows) > ram_len - area_iova) {
        return -EINVAL;
    }
    memset(g, 0, sizeof(*g));
    g->ram = ram;
    g->ram_len = ram_len;
    g->regs = *regs;
    ret = g->regs.read(g->regs.opaque, FT_REG_ID, &id);
    if (ret < 0) {
        return ret;
    }
    if (id != FT_ID_VALUE) {
        return -ENODEV;
    }
    memset(g->ram + area_iova, 0, ft_guest_area_bytes(ring_size, nflows));
    a = (struct ft_guest_area *)(void *)(g->ram + area_iova);
    g->a = a;
    a->ring_size = ring_size;
    a->nflows = nflows;
    a->rng = seed;
    off = area_iova + align64(sizeof(*a));
    a->desc_iova = off;
    off += align64((size_t)ring_size * 32);
    a->cmpl_iova = off;
    off += align64((size_t)ring_size * 32);
    a->stats_iova = off;
    off += align64(sizeof(struct ft_stats));
    a->exp_iova = off;
    a->magic = FT_GUEST_MAGIC;
    map_area(g);

    ret = g->regs.write(g->regs.opaque, FT_REG_CTRL, 0);
    if (ret == 0) {
        ret = wr64(g, FT_REG_RING_LO, a->desc_iova);
    }
    if (ret == 0) {
        ret = wr64(g, FT_REG_CMPL_LO, a->cmpl_iova);
    }
    if (ret == 0) {
        ret = wr64(g, FT_REG_STATS_LO, a->stats_iova);
    }
    if (ret == 0) {
        ret = g->regs.write(g->regs.opaque, FT_REG_RING_SIZE, ring_size);
    }
    if (ret == 0) {
        ret = g->regs.write(g->regs.opaque, FT_REG_CTRL, FT_CTRL_ENABLE);
    }
    return ret;
}

int
ft_guest_attach(struct ft_guest *g, void *ram, size_t ram_len,
                uint64_t area_iova, const struct ft_guest_regs *regs)
{
    const struct ft_guest_area *a;

    if (g == NULL || ram == NULL || regs == NULL || area_iova > ram_len ||
        sizeof(*a) > ram_len - area_iova) {
        return -EINVAL;
    }
    a = (const struct ft_guest_area *)(const void *)((uint8_t *)ram +
                                                     area_iova);
    if (a->magic != FT_GUEST_MAGIC || a->ring_size < FT_RING_MIN ||
        a->ring_size > FT_RING_MAX || a->nflows == 0 || a->exp_iova > ram_len ||
        (size_t)a->nflows * sizeof(struct ft_guest_exp) >
            ram_len - a->exp_iova) {
        return -EINVAL;
    }
    memset(g, 0, sizeof(*g));
    g->ram = ram;
    g->ram_len = ram_len;
    g->regs = *regs;
    g->a = (struct ft_guest_area *)(void *)((uint8_t *)ram + area_iova);
    map_area(g);
    return 0;
}

static uint64_t
rng_next(struct ft_guest_area *a)
{
    uint64_t x = a->rng;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    a->rng = x;
    return x;
}

/* Flow id -> key: injective in @id (src carries it). */
static void
flow_key(uint32_t id, struct ft_desc *d)
{
    d->src = 0x0a000000u + id;
    d->dst = 0xc0a80000u + ((id * 2654435761u) & 0xffffu);
    d->sport = (uint16_t)(1024u + id % 60000u);
    d->dport = (uint16_t)(80u + id % 7u);
    d->proto = (id & 1u) ? 6 : 17;
}

long
ft_guest_post(struct ft_guest *g, unsigned int n, unsigned int fwd_every)
{
    struct ft_guest_area *a = g->a;
    unsigned int i;
    int ret;

    for (i = 0; i < n && a->prod - a->cons < a->ring_size; i++) {
        uint64_t r = rng_next(a);
        struct ft_desc d;

        memset(&d, 0, sizeof(d));
        d.seq = a->posted + 1;
        d.cookie = (uint32_t)(r % a->nflows);
        flow_key(d.cookie, &d);
        d.len = (uint16_t)(64u + (uint32_t)(r >> 40) % 1437u);
        if (fwd_every != 0 && d.seq % fwd_every == 0) {
            d.flags = FT_DESC_FWD;
            a->fwd_posted++;
        }
        g->ring[a->prod & (a->ring_size - 1)] = d;
        a->prod++;
        a->posted++;
    }
    if (i == 0) {
        return 0;
    }
    ret = g->regs.write(g->regs.opaque, FT_REG_TAIL, a->prod);
    return ret < 0 ? ret : (long)i;
}

long
ft_guest_reap(struct ft_guest *g)
{
    struct ft_guest_area *a = g->a;
    uint32_t head = __atomic_load_n(&g->stats->head, __ATOMIC_ACQUIRE);
    long n = 0;

    if ((uint32_t)(head - a->cons) > a->ring_size) {
        a->bad++;
        return -EBADMSG;
    }
    while (a->cons != head) {
        uint32_t idx = a->cons & (a->ring_size - 1);
        const struct ft_desc *d = &g->ring[idx];
        const struct ft_cmpl *c = &g->cmpl[idx];
        struct ft_guest_exp *e;

        if (c->seq != d->seq || c->cookie != d->cookie ||
            c->cookie >= a->nflows || c->status != FT_ST_OK ||
            ((c->flags & FT_CMPL_FWD) != 0) !=
                ((d->flags & FT_DESC_FWD) != 0)) {
            a->bad++;
            return -EBADMSG;
        }
        e = &g->exp[c->cookie];
        if (c->flow_packets != e->packets + 1 ||
            c->flow_bytes != e->bytes + d->len) {
            a->bad++;
            return -EBADMSG;
        }
        e->packets++;
        e->bytes += d->len;
        if (d->flags & FT_DESC_FWD) {
            a->fwd_completed++;
        }
        a->cons++;
        /* atomic: another thread may watch progress (ft_guest_completed) */
        __atomic_store_n(&a->completed, a->completed + 1, __ATOMIC_RELAXED);
        n++;
    }
    return n;
}

uint32_t
ft_guest_outstanding(const struct ft_guest *g)
{
    return g->a->prod - g->a->cons;
}

uint64_t
ft_guest_completed(const struct ft_guest *g)
{
    return __atomic_load_n(&g->a->completed, __ATOMIC_RELAXED);
}
