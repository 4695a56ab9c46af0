/* SPDX-License-Identifier: MIT */
/*
 * bench_dirty - cost of CPU-write dirty tracking on 256 MiB of memfd RAM.
 *
 * For each method: the time to write one byte into every 16th page
 * (first touch after arming = one write fault per page for uffd-wp), and
 * the time of one collection, each as a ratio of the same writes with no
 * tracking and of a plain memcpy of the whole region, measured in this run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <vmig/dirty.h>

#define RAM (256u << 20)
#define STRIDE_PAGES 16

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
touch(uint8_t *base, size_t page)
{
    double t = now();

    for (size_t off = 0; off < RAM; off += page * STRIDE_PAGES) {
        base[off]++;
    }
    return now() - t;
}

int
main(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    int fd = memfd_create("bench-ram", MFD_CLOEXEC);
    uint8_t *ram, *copy;
    uint64_t *bm = calloc(RAM / page / 64 + 1, sizeof(uint64_t));
    double t_plain, t_memcpy;
    static const enum vmig_dirty_method methods[] = {VMIG_DIRTY_HASH,
                                                     VMIG_DIRTY_UFFD_WP};

    if (fd < 0 || ftruncate(fd, RAM) != 0 || bm == NULL) {
        perror("bench_dirty");
        free(bm);
        return 1;
    }
    ram = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    copy = malloc(RAM);
    if (ram == MAP_FAILED || copy == NULL) {
        perror("bench_dirty");
        free(bm);
        free(copy);
        return 1;
    }
    memset(ram, 1, RAM);
    memcpy(copy, ram, RAM);
    t_plain = touch(ram, page);
    t_memcpy = now();
    memcpy(copy, ram, RAM);
    t_memcpy = now() - t_memcpy;
    printf("RAM %u MiB, pages %zu, writes to every %dth page\n", RAM >> 20,
           (size_t)RAM / page, STRIDE_PAGES);
    {
        size_t writes = RAM / page / STRIDE_PAGES;

        printf("untracked: %.0f ns per page write; memcpy of RAM %.1f ms\n",
               t_plain * 1e9 / (double)writes, t_memcpy * 1e3);
    }
    printf("%-8s %14s %20s %22s\n", "method", "dirty pages",
           "writes vs untracked", "collect vs RAM memcpy");
    for (size_t i = 0; i < 2; i++) {
        struct vmig_dirty *d;
        double t_w, t_c;
        long n;

        if (vmig_dirty_new(NULL, ram, RAM, methods[i], &d) < 0) {
            printf("%-8s unavailable here\n",
                   vmig_dirty_method_name(methods[i]));
            continue;
        }
        if (vmig_dirty_start(d) < 0) {
            vmig_dirty_free(d);
            continue;
        }
        t_w = touch(ram, page);
        memset(bm, 0, (RAM / page / 64 + 1) * sizeof(uint64_t));
        t_c = now();
        n = vmig_dirty_collect(d, bm, RAM / page);
        t_c = now() - t_c;
        printf("%-8s %14ld %19.1fx %21.2fx\n",
               vmig_dirty_method_name(methods[i]), n, t_w / t_plain,
               t_c / t_memcpy);
        vmig_dirty_free(d);
    }
    free(copy);
    free(bm);
    munmap(ram, RAM);
    close(fd);
    return 0;
}
