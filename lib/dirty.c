/* SPDX-License-Identifier: MIT */
/*
 * dirty.c - CPU-write dirty tracking of guest RAM (see <vmig/dirty.h>).
 *
 * The UFFD_WP method, step by step:
 *   1. userfaultfd(UFFD_USER_MODE_ONLY) and UFFDIO_API asking for
 *      WP_ASYNC (the kernel resolves write faults itself, marking the page
 *      written, instead of queueing an event for a handler thread),
 *      WP_UNPOPULATED (pages never touched are protected too) and
 *      WP_HUGETLBFS_SHMEM (needed for memfd/shmem mappings);
 *   2. UFFDIO_REGISTER the range in WP mode;
 *   3. start: UFFDIO_WRITEPROTECT the whole range;
 *   4. collect: PAGEMAP_SCAN on /proc/self/pagemap for PAGE_IS_WRITTEN
 *      with PM_SCAN_WP_MATCHING, which reports written pages and
 *      write-protects them again in one walk, so no write is lost between
 *      "read" and "clear".
 * The kernel headers here are older than these features (6.1); the
 * constants below carry their upstream values (include/uapi/linux/
 * userfaultfd.h and fs.h, Linux 6.7).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <xxhash.h>
#include <vmig/dirty.h>
#include "internal.h"

#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
struct page_region {
    uint64_t start;
    uint64_t end; /* exclusive */
    uint64_t categories;
};
struct pm_scan_arg {
    uint64_t size;
    uint64_t flags;
    uint64_t start;
    uint64_t end;
    uint64_t walk_end;
    uint64_t vec;
    uint64_t vec_len;
    uint64_t max_pages;
    uint64_t category_inverted;
    uint64_t category_mask;
    uint64_t category_anyof_mask;
    uint64_t return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif
_Static_assert(sizeof(struct pm_scan_arg) == 96, "uapi pm_scan_arg");
_Static_assert(sizeof(struct page_region) == 24, "uapi page_region");

#define UFFD_WP_FEATURES                                                       \
    (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED |                     \
     UFFD_FEATURE_WP_HUGETLBFS_SHMEM)

/* Regions fetched per PAGEMAP_SCAN call. */
#define SCAN_VEC_LEN 512

struct hash128 {
    uint64_t lo, hi;
};

struct vmig_dirty {
    vmig_ctx_t *ctx;
    uint8_t *base;
    size_t len;
    size_t page;
    size_t npages;
    enum vmig_dirty_method method;
    bool started;
    /* UFFD_WP */
    int uffd;
    int pagemap;
    struct page_region *vec;
    /* HASH */
    struct hash128 *hashes;
};

const char *
vmig_dirty_method_name(enum vmig_dirty_method m)
{
    static const char *const names[VMIG_DIRTY__COUNT] = {
        [VMIG_DIRTY_AUTO] = "auto",
        [VMIG_DIRTY_UFFD_WP] = "uffd-wp",
        [VMIG_DIRTY_HASH] = "hash",
    };

    if ((unsigned int)m >= VMIG_DIRTY__COUNT) {
        return "unknown";
    }
    return names[m];
}

static int
uffd_open(uint64_t want, uint64_t *got)
{
    struct uffdio_api api = {.api = UFFD_API, .features = want};
    int fd = (int)syscall(SYS_userfaultfd,
                          O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);

    if (fd < 0) {
        return -errno;
    }
    if (ioctl(fd, UFFDIO_API, &api) != 0) {
        int ret = -errno;

        close(fd);
        return ret;
    }
    *got = api.features;
    return fd;
}

bool
vmig_dirty_uffd_wp_supported(void)
{
    uint64_t got = 0;
    int fd = uffd_open(UFFD_WP_FEATURES, &got);
    int pm;
    bool ok;

    if (fd < 0) {
        return false;
    }
    close(fd);
    ok = (got & UFFD_WP_FEATURES) == UFFD_WP_FEATURES;
    pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (pm < 0) {
        return false;
    }
    /* An empty scan tells whether the ioctl exists (ENOTTY if not). */
    {
        struct pm_scan_arg arg = {.size = sizeof(arg)};

        if (ioctl(pm, PAGEMAP_SCAN, &arg) != 0 && errno == ENOTTY) {
            ok = false;
        }
    }
    close(pm);
    return ok;
}

static int
uffd_setup(struct vmig_dirty *d)
{
    struct uffdio_register reg = {
        .range = {.start = (uintptr_t)d->base, .len = d->len},
        .mode = UFFDIO_REGISTER_MODE_WP,
    };
    uint64_t got = 0;
    int ret;

    ret = uffd_open(UFFD_WP_FEATURES, &got);
    if (ret < 0) {
        return ret == -EINVAL ? -EOPNOTSUPP : ret;
    }
    d->uffd = ret;
    if ((got & UFFD_WP_FEATURES) != UFFD_WP_FEATURES) {
        ret = -EOPNOTSUPP;
        goto err_close_uffd;
    }
    if (ioctl(d->uffd, UFFDIO_REGISTER, &reg) != 0) {
        ret = -errno;
        vmig_dbg(d->ctx, "dirty: UFFDIO_REGISTER(WP) of %zu bytes: %s", d->len,
                 strerror(-ret));
        goto err_close_uffd;
    }
    d->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (d->pagemap < 0) {
        ret = -errno;
        goto err_close_uffd;
    }
    d->vec = calloc(SCAN_VEC_LEN, sizeof(*d->vec));
    if (d->vec == NULL) {
        ret = -ENOMEM;
        goto err_close_pagemap;
    }
    return 0;

err_close_pagemap:
    close(d->pagemap);
    d->pagemap = -1;
err_close_uffd:
    close(d->uffd); /* closing unregisters the range */
    d->uffd = -1;
    return ret;
}

int
vmig_dirty_new(vmig_ctx_t *ctx, void *base, size_t len,
               enum vmig_dirty_method method, struct vmig_dirty **out)
{
    struct vmig_dirty *d;
    long page = sysconf(_SC_PAGESIZE);
    int ret = 0;

    if (out == NULL || base == NULL || len == 0 || page <= 0 ||
        (uintptr_t)base % (size_t)page != 0 || len % (size_t)page != 0 ||
        (unsigned int)method >= VMIG_DIRTY__COUNT) {
        return -EINVAL;
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return -ENOMEM;
    }
    d->ctx = ctx;
    d->base = base;
    d->len = len;
    d->page = (size_t)page;
    d->npages = len / (size_t)page;
    d->uffd = -1;
    d->pagemap = -1;

    if (method == VMIG_DIRTY_AUTO || method == VMIG_DIRTY_UFFD_WP) {
        ret = uffd_setup(d);
        if (ret == 0) {
            d->method = VMIG_DIRTY_UFFD_WP;
        } else if (method == VMIG_DIRTY_UFFD_WP) {
            vmig_err(ctx,
                     "dirty: userfaultfd write-protect tracking unavailable "
                     "(%s); use the hash method on this kernel",
                     strerror(-ret));
            free(d);
            return ret;
        } else {
            vmig_info(ctx,
                      "dirty: userfaultfd async write-protect unavailable "
                      "(%s); falling back to page hashing",
                      strerror(-ret));
        }
    }
    if (d->method != VMIG_DIRTY_UFFD_WP) {
        d->hashes = calloc(d->npages, sizeof(*d->hashes));
        if (d->hashes == NULL) {
            free(d);
            return -ENOMEM;
        }
        d->method = VMIG_DIRTY_HASH;
    }
    *out = d;
    return 0;
}

void
vmig_dirty_free(struct vmig_dirty *d)
{
    if (d == NULL) {
        return;
    }
    if (d->uffd >= 0) {
        struct uffdio_range r = {.start = (uintptr_t)d->base, .len = d->len};

        /* leave the memory writable without faults for whoever keeps it */
        (void)ioctl(d->uffd, UFFDIO_UNREGISTER, &r);
        close(d->uffd);
    }
    if (d->pagemap >= 0) {
        close(d->pagemap);
    }
    free(d->vec);
    free(d->hashes);
    free(d);
}

enum vmig_dirty_method
vmig_dirty_method_in_use(const struct vmig_dirty *d)
{
    return d->method;
}

size_t
vmig_dirty_page_size(const struct vmig_dirty *d)
{
    return d->page;
}

size_t
vmig_dirty_pages(const struct vmig_dirty *d)
{
    return d->npages;
}

static struct hash128
page_hash(const struct vmig_dirty *d, size_t i)
{
    XXH128_hash_t h = XXH3_128bits(d->base + i * d->page, d->page);
    struct hash128 r = {.lo = h.low64, .hi = h.high64};

    return r;
}

int
vmig_dirty_start(struct vmig_dirty *d)
{
    if (d->method == VMIG_DIRTY_UFFD_WP) {
        struct uffdio_writeprotect wp = {
            .range = {.start = (uintptr_t)d->base, .len = d->len},
            .mode = UFFDIO_WRITEPROTECT_MODE_WP,
        };

        if (ioctl(d->uffd, UFFDIO_WRITEPROTECT, &wp) != 0) {
            int ret = -errno;

            vmig_err(d->ctx, "dirty: cannot write-protect guest RAM: %s",
                     strerror(-ret));
            return ret;
        }
    } else {
        for (size_t i = 0; i < d->npages; i++) {
            d->hashes[i] = page_hash(d, i);
        }
    }
    d->started = true;
    return 0;
}

static long
collect_uffd(struct vmig_dirty *d, uint64_t *bitmap)
{
    uint64_t end = (uintptr_t)d->base + d->len;
    uint64_t pos = (uintptr_t)d->base;
    long found = 0;

    while (pos < end) {
        struct pm_scan_arg arg = {
            .size = sizeof(arg),
            .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
            .start = pos,
            .end = end,
            .vec = (uintptr_t)d->vec,
            .vec_len = SCAN_VEC_LEN,
            .category_mask = PAGE_IS_WRITTEN,
            .return_mask = PAGE_IS_WRITTEN,
        };
        int n = ioctl(d->pagemap, PAGEMAP_SCAN, &arg);

        if (n < 0) {
            int ret = -errno;

            vmig_err(d->ctx, "dirty: PAGEMAP_SCAN failed: %s", strerror(-ret));
            return ret;
        }
        for (int r = 0; r < n; r++) {
            uint64_t first = (d->vec[r].start - (uintptr_t)d->base) / d->page;
            uint64_t last = (d->vec[r].end - (uintptr_t)d->base) / d->page;

            for (uint64_t p = first; p < last && p < d->npages; p++) {
                bitmap[p / 64] |= 1ull << (p % 64);
                found++;
            }
        }
        if (VMIG_NEVER(arg.walk_end <= pos)) {
            return -EIO;
        }
        pos = arg.walk_end;
    }
    return found;
}

static long
collect_hash(struct vmig_dirty *d, uint64_t *bitmap)
{
    long found = 0;

    for (size_t i = 0; i < d->npages; i++) {
        struct hash128 h = page_hash(d, i);

        if (h.lo != d->hashes[i].lo || h.hi != d->hashes[i].hi) {
            d->hashes[i] = h;
            bitmap[i / 64] |= 1ull << (i % 64);
            found++;
        }
    }
    return found;
}

long
vmig_dirty_collect(struct vmig_dirty *d, uint64_t *bitmap, size_t nbits)
{
    if (!d->started || bitmap == NULL || nbits < d->npages) {
        return -EINVAL;
    }
    if (d->method == VMIG_DIRTY_UFFD_WP) {
        return collect_uffd(d, bitmap);
    }
    return collect_hash(d, bitmap);
}
