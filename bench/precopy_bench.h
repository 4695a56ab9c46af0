/* SPDX-License-Identifier: MIT */
/*
 * precopy_bench.h - bench_precopy's cases and results, shared by the
 * bench (bench_precopy.c: the guest, the engines, one case) and its
 * report (precopy_report.c: the tables, precopy.dat, the plot).
 */
#ifndef VMIG_BENCH_PRECOPY_BENCH_H
#define VMIG_BENCH_PRECOPY_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A dirty rate of the guest. */
struct profile {
    const char *name;
    unsigned int pkts;  /* packets per second (one dirty chunk each) */
    unsigned int pages; /* guest RAM pages written per second */
};

extern const struct profile profiles[];
extern const size_t nprofiles;

/* One case's figures. */
struct result {
    uint64_t state;
    unsigned int prof;
    bool precopy;
    uint64_t down_ms;  /* the engine's */
    uint64_t exp_ms;   /* the engine's estimate when it switched over */
    double meas_ms;    /* pause -> resume, measured here */
    uint64_t sc_bytes; /* moved while paused */
    bool sc_derived;   /* the engine gave none: RAM + device bytes */
    double ideal_ms;
    double ratio;
    unsigned int iters;
    uint64_t pre_bytes;
    uint64_t est_bytes;
    uint64_t dirty_pages; /* RAM pages dirty at the final collection */
    double total_ms;
    double bw;       /* plain TCP loopback bytes/s next to this case */
    double pkt_rate; /* packets per second the vCPU achieved */
    double pause_ms; /* of meas_ms, the VMM's vcpu_pause */
    bool forced;     /* precopy never fit the limit: a cap switched over */
};

/* The per-case table's header, and one row of it (@dat: the .dat form). */
extern const char *const table_head;
void print_row(FILE *f, const struct result *r, bool dat);
/* qsort order of runs by measured downtime. */
int by_downtime(const void *a, const void *b);
/* precopy.dat: one block per mode x dirty rate (gnuplot "index"). */
int write_dat(const char *path, const struct result *res, size_t n, double bw);
bool have_gnuplot(void);
/* precopy.svg from @dat in @dir, titled with @what. */
int plot(const char *dir, const char *dat, const char *png, const char *what);
/* Precopy against stop-copy, then downtime against @limit_ms. */
void summary(const struct result *res, size_t n, uint64_t limit_ms);

#endif /* VMIG_BENCH_PRECOPY_BENCH_H */
