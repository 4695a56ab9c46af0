/* SPDX-License-Identifier: MIT */
/*
 * ramdirty.c - one dirty bitmap per guest RAM region out of two sources:
 * the CPU tracker of each region (vmig_dirty: whole-region read-and-clear)
 * and the DMA logging of each vfio-user device (read-and-clear of any
 * IOVA range, in the device's own page size).
 *
 * Each region keeps a "pending" bitmap: pages some source reported that
 * no collection has handed out yet.  A collection first ORs fresh reports
 * into pending (the whole region from the CPU tracker, the asked range
 * from every device), then moves the asked range from pending to the
 * caller.  So a source's read-and-clear never loses a page the caller did
 * not ask for this time.
 *
 * Device report ranges: the asked range widened to the device's page
 * size and clipped to the region (kernel drivers and vfio-user servers
 * may refuse ranges they were not told to track); a report's bitmap is
 * at most REPORT_BYTES (well under the vfio-user max transfer), larger
 * ranges are asked for in pieces.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vmig/proto.h>
#include <vmig/ramdirty.h>
#include <vmig/vfu_client.h>
#include "internal.h"

#define REPORT_BYTES (128u << 10)

struct rd_region {
    uint64_t iova;
    uint8_t *base;
    uint64_t len;
    uint64_t npages;
    struct vmig_dirty *cpu;
    uint64_t *pending; /* npages bits */
};

struct rd_device {
    struct vmig_vfu_client *c;
    char name[32];
    uint64_t min_page;
    uint64_t page; /* agreed while started; 0 otherwise */
};

struct vmig_ramdirty {
    vmig_ctx_t *ctx;
    enum vmig_dirty_method method;
    uint64_t pg;
    bool started;
    struct rd_region reg[VMIG_RAMDIRTY_MAX_REGIONS];
    unsigned int nreg;
    struct rd_device dev[VMIG_RAMDIRTY_MAX_DEVICES];
    unsigned int ndev;
    uint64_t *scratch; /* REPORT_BYTES */
};

static bool
pow2(uint64_t v)
{
    return v != 0 && (v & (v - 1)) == 0;
}

int
vmig_ramdirty_new(vmig_ctx_t *ctx, enum vmig_dirty_method method,
                  struct vmig_ramdirty **out)
{
    struct vmig_ramdirty *rd;
    long pg = sysconf(_SC_PAGESIZE);

    if (ctx == NULL || out == NULL ||
        (unsigned int)method >= VMIG_DIRTY__COUNT || pg <= 0) {
        return -EINVAL;
    }
    rd = calloc(1, sizeof(*rd));
    if (rd == NULL) {
        return -ENOMEM;
    }
    rd->scratch = malloc(REPORT_BYTES);
    if (rd->scratch == NULL) {
        free(rd);
        return -ENOMEM;
    }
    rd->ctx = ctx;
    rd->method = method;
    rd->pg = (uint64_t)pg;
    *out = rd;
    return 0;
}

void
vmig_ramdirty_free(struct vmig_ramdirty *rd)
{
    if (rd == NULL) {
        return;
    }
    if (rd->started) {
        (void)!vmig_ramdirty_stop(rd);
    }
    for (unsigned int i = 0; i < rd->nreg; i++) {
        vmig_dirty_free(rd->reg[i].cpu);
        free(rd->reg[i].pending);
    }
    free(rd->scratch);
    free(rd);
}

int
vmig_ramdirty_add_region(struct vmig_ramdirty *rd, uint64_t iova, void *base,
                         size_t len)
{
    struct rd_region *r;
    int ret;

    if (rd == NULL || base == NULL || len == 0 || len % rd->pg != 0 ||
        (uintptr_t)base % rd->pg != 0 || iova % rd->pg != 0 ||
        iova + len < iova) {
        return -EINVAL;
    }
    if (rd->started) {
        return -EBUSY;
    }
    if (rd->nreg == VMIG_RAMDIRTY_MAX_REGIONS) {
        return -E2BIG;
    }
    for (unsigned int i = 0; i < rd->nreg; i++) {
        if (iova < rd->reg[i].iova + rd->reg[i].len &&
            rd->reg[i].iova < iova + len) {
            vmig_err(rd->ctx,
                     "ramdirty: region at iova %#llx overlaps region %u",
                     (unsigned long long)iova, i);
            return -EINVAL;
        }
    }
    r = &rd->reg[rd->nreg];
    memset(r, 0, sizeof(*r));
    r->iova = iova;
    r->base = base;
    r->len = len;
    r->npages = len / rd->pg;
    r->pending = calloc((size_t)((r->npages + 63) / 64), sizeof(uint64_t));
    if (r->pending == NULL) {
        return -ENOMEM;
    }
    ret = vmig_dirty_new(rd->ctx, base, len, rd->method, &r->cpu);
    if (ret < 0) {
        free(r->pending);
        r->pending = NULL;
        return ret;
    }
    if (vmig_dirty_page_size(r->cpu) != rd->pg) {
        vmig_dirty_free(r->cpu);
        free(r->pending);
        return -EINVAL;
    }
    return (int)rd->nreg++;
}

int
vmig_ramdirty_add_device(struct vmig_ramdirty *rd, struct vmig_vfu_client *c,
                         const char *name, uint64_t min_page)
{
    struct rd_device *d;

    if (rd == NULL || c == NULL || (min_page != 0 && !pow2(min_page)) ||
        min_page > VMIG_RAMDIRTY_MAX_DEV_PAGE) {
        return -EINVAL;
    }
    if (rd->started) {
        return -EBUSY;
    }
    if (rd->ndev == VMIG_RAMDIRTY_MAX_DEVICES) {
        return -E2BIG;
    }
    d = &rd->dev[rd->ndev];
    memset(d, 0, sizeof(*d));
    d->c = c;
    d->min_page = min_page < rd->pg ? rd->pg : min_page;
    snprintf(d->name, sizeof(d->name), "%s", name != NULL ? name : "device");
    return (int)rd->ndev++;
}

/* DMA_LOGGING_START, offering page sizes from d->min_page upwards. */
static int
dev_start(struct vmig_ramdirty *rd, struct rd_device *d,
          const struct vmig_vfu_log_range *ranges)
{
    int ret = -EINVAL;

    for (uint64_t ps = d->min_page; ps <= VMIG_RAMDIRTY_MAX_DEV_PAGE;
         ps <<= 1) {
        ret = vmig_vfu_client_log_start(d->c, ps, ranges, rd->nreg);
        if (ret == 0) {
            d->page = ps;
            if (ps != rd->pg) {
                vmig_log(rd->ctx, VMIG_LOG_INFO,
                         "ramdirty: %s: DMA logging in %llu-byte pages "
                         "(RAM pages are %llu bytes)",
                         d->name, (unsigned long long)ps,
                         (unsigned long long)rd->pg);
            }
            return 0;
        }
        if (ret != -EINVAL && ret != -EOPNOTSUPP) {
            break;
        }
    }
    vmig_err(rd->ctx,
             "ramdirty: %s: DMA_LOGGING_START refused (%s) for every page "
             "size from %llu to %u bytes; the device cannot report its "
             "writes to guest RAM, so it cannot be migrated live",
             d->name, strerror(-ret), (unsigned long long)d->min_page,
             VMIG_RAMDIRTY_MAX_DEV_PAGE);
    return ret;
}

int
vmig_ramdirty_start(struct vmig_ramdirty *rd)
{
    struct vmig_vfu_log_range ranges[VMIG_RAMDIRTY_MAX_REGIONS];
    unsigned int i;
    int ret = 0;

    if (rd == NULL || rd->nreg == 0) {
        return -EINVAL;
    }
    if (rd->started) {
        return -EBUSY;
    }
    for (i = 0; i < rd->nreg; i++) {
        ranges[i].iova = rd->reg[i].iova;
        ranges[i].length = rd->reg[i].len;
        memset(rd->reg[i].pending, 0,
               (size_t)((rd->reg[i].npages + 63) / 64) * sizeof(uint64_t));
        ret = vmig_dirty_start(rd->reg[i].cpu);
        if (ret < 0) {
            vmig_err(rd->ctx, "ramdirty: region %u: CPU tracking: %s", i,
                     strerror(-ret));
            return ret;
        }
    }
    for (i = 0; i < rd->ndev; i++) {
        ret = dev_start(rd, &rd->dev[i], ranges);
        if (ret < 0) {
            break;
        }
    }
    if (ret < 0) {
        while (i-- > 0) {
            (void)!vmig_vfu_client_log_stop(rd->dev[i].c);
            rd->dev[i].page = 0;
        }
        return ret;
    }
    rd->started = true;
    return 0;
}

int
vmig_ramdirty_stop(struct vmig_ramdirty *rd)
{
    int ret = 0;

    if (rd == NULL || !rd->started) {
        return -EINVAL;
    }
    for (unsigned int i = 0; i < rd->ndev; i++) {
        int r = vmig_vfu_client_log_stop(rd->dev[i].c);

        if (r < 0) {
            vmig_err(rd->ctx, "ramdirty: %s: DMA_LOGGING_STOP: %s",
                     rd->dev[i].name, strerror(-r));
            if (ret == 0) {
                ret = r;
            }
        }
        rd->dev[i].page = 0;
    }
    rd->started = false;
    return ret;
}

static void
set_bits(uint64_t *bm, uint64_t first, uint64_t last)
{
    for (uint64_t p = first; p <= last; p++) {
        bm[p / 64] |= 1ull << (p % 64);
    }
}

/* Ask device @d for [a, b) of region @r; OR the result into pending. */
static int
dev_collect(struct vmig_ramdirty *rd, struct rd_device *d, struct rd_region *r,
            uint64_t a, uint64_t b)
{
    uint64_t ps = d->page;
    uint64_t piece = (uint64_t)REPORT_BYTES * 8 * ps;

    while (a < b) {
        uint64_t n = b - a < piece ? b - a : piece;
        uint64_t bits = (n + ps - 1) / ps;
        int ret;

        memset(rd->scratch, 0, (size_t)((bits + 63) / 64) * 8);
        ret = vmig_vfu_client_log_report(d->c, a, n, ps, rd->scratch);
        if (ret < 0) {
            vmig_err(rd->ctx,
                     "ramdirty: %s: DMA_LOGGING_REPORT of [%#llx, %#llx): %s",
                     d->name, (unsigned long long)a,
                     (unsigned long long)(a + n), strerror(-ret));
            return ret;
        }
        for (uint64_t w = 0; w < (bits + 63) / 64; w++) {
            uint64_t word = rd->scratch[w];

            while (word != 0) {
                uint64_t q = w * 64 + (uint64_t)__builtin_ctzll(word);
                uint64_t lo = a + q * ps, hi = lo + ps;

                word &= word - 1;
                if (q >= bits) {
                    break;
                }
                hi = hi > a + n ? a + n : hi;
                set_bits(r->pending, (lo - r->iova) / rd->pg,
                         (hi - 1 - r->iova) / rd->pg);
            }
        }
        a += n;
    }
    return 0;
}

long
vmig_ramdirty_collect(struct vmig_ramdirty *rd, unsigned int region,
                      uint64_t offset, uint64_t len, uint64_t *bitmap,
                      size_t nbits)
{
    struct rd_region *r;
    uint64_t first, npg;
    long ret, count = 0;

    if (rd == NULL || !rd->started || region >= rd->nreg || bitmap == NULL) {
        return -EINVAL;
    }
    r = &rd->reg[region];
    if (len == 0 || offset % rd->pg != 0 || len % rd->pg != 0 ||
        offset > r->len || len > r->len - offset || nbits < len / rd->pg) {
        return -EINVAL;
    }
    ret = vmig_dirty_collect(r->cpu, r->pending, (size_t)r->npages);
    if (ret < 0) {
        vmig_err(rd->ctx, "ramdirty: region %u: CPU dirty collection: %s",
                 region, strerror((int)-ret));
        return ret;
    }
    for (unsigned int i = 0; i < rd->ndev; i++) {
        struct rd_device *d = &rd->dev[i];
        uint64_t a = (r->iova + offset) & ~(d->page - 1);
        uint64_t b = (r->iova + offset + len + d->page - 1) & ~(d->page - 1);

        a = a < r->iova ? r->iova : a;
        b = b > r->iova + r->len ? r->iova + r->len : b;
        ret = dev_collect(rd, d, r, a, b);
        if (ret < 0) {
            return ret;
        }
    }
    first = offset / rd->pg;
    npg = len / rd->pg;
    for (uint64_t i = 0; i < npg; i++) {
        uint64_t p = first + i;
        uint64_t bit = 1ull << (p % 64);

        if (r->pending[p / 64] & bit) {
            r->pending[p / 64] &= ~bit;
            bitmap[i / 64] |= 1ull << (i % 64);
            count++;
        }
    }
    return count;
}

uint64_t
vmig_ramdirty_page_size(const struct vmig_ramdirty *rd)
{
    return rd->pg;
}

uint64_t
vmig_ramdirty_device_page_size(const struct vmig_ramdirty *rd,
                               unsigned int device)
{
    if (rd == NULL || device >= rd->ndev) {
        return 0;
    }
    return rd->dev[device].page;
}
