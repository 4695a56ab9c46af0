/* SPDX-License-Identifier: MIT */
/*
 * bench_plot.h - a benchmark's table as data and an SVG plot in the build
 * tree (BENCH_OUT_DIR: build-bench/bench/ under `make bench`), drawn by
 * gnuplot (gnuplot-nox, from scripts/install-deps; a benchmark without
 * it prints its tables and says the plot was skipped).  Header-only.
 */
#ifndef VMIG_BENCH_PLOT_H
#define VMIG_BENCH_PLOT_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef BENCH_OUT_DIR
#define BENCH_OUT_DIR "."
#endif

/* Open BENCH_OUT_DIR/@name for writing (a .dat file); NULL on failure. */
static inline FILE *
bench_dat_open(const char *name, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", BENCH_OUT_DIR, name);
    return fopen(path, "w");
}

/*
 * Render BENCH_OUT_DIR/@name.svg with gnuplot from the commands @fmt
 * (after the terminal and output are set; "%s" arguments as printf),
 * keeping the script as @name.gp.  Prints where the plot went, or why
 * it was skipped.  Return: 0, or -1 when skipped.
 */
static inline int __attribute__((format(printf, 2, 3)))
bench_plot(const char *name, const char *fmt, ...)
{
    char gp[512], svg[512], cmd[1200];
    va_list ap;
    FILE *f;

    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        printf("plot skipped: gnuplot is not installed (apt-get install "
               "gnuplot-nox)\n");
        return -1;
    }
    snprintf(gp, sizeof(gp), "%s/%s.gp", BENCH_OUT_DIR, name);
    snprintf(svg, sizeof(svg), "%s/%s.svg", BENCH_OUT_DIR, name);
    f = fopen(gp, "w");
    if (f == NULL) {
        printf("plot skipped: cannot write %s\n", gp);
        return -1;
    }
    fprintf(f,
            "set terminal svg size 960,540 dynamic font 'sans,11'\n"
            "set output '%s'\n"
            "set grid\nset bmargin 5\n",
            svg);
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    if (fclose(f) != 0) {
        printf("plot skipped: cannot write %s\n", gp);
        return -1;
    }
    snprintf(cmd, sizeof(cmd), "gnuplot '%s' 2>/dev/null", gp);
    fflush(stdout);
    if (system(cmd) != 0) {
        printf("plot skipped: gnuplot failed on %s\n", gp);
        return -1;
    }
    printf("plot: %s\n", svg);
    return 0;
}

#endif /* VMIG_BENCH_PLOT_H */
