/* SPDX-License-Identifier: MIT */
/*
 * precopy_report.c - bench_precopy's report: the per-case table, the
 * precopy-vs-stop-copy summary, the downtime-vs-limit table,
 * precopy.dat and (with gnuplot) precopy.svg.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "precopy_bench.h"

static const char *
mode_name(bool precopy)
{
    return precopy ? "precopy" : "stop-copy";
}

void
print_row(FILE *f, const struct result *r, bool dat)
{
    double mib = 1 << 20;

    if (dat) {
        fprintf(f,
                "%6llu %-5s %-9s %6llu %9.2f %10.2f %9.2f %9.2f %5u %10.2f "
                "%9.1f %10.2f %7.0f %6.0f %7llu\n",
                (unsigned long long)(r->state >> 20), profiles[r->prof].name,
                mode_name(r->precopy), (unsigned long long)r->down_ms,
                r->meas_ms, (double)r->sc_bytes / mib, r->ideal_ms, r->ratio,
                r->iters, (double)r->pre_bytes / mib, r->total_ms,
                (double)r->est_bytes / mib, r->bw / mib, r->pkt_rate,
                (unsigned long long)r->dirty_pages);
        return;
    }
    fprintf(f,
            "%6llu %-5s %6.0f %-9s %6llu %6llu %9.2f %9.2f%s %8.2f %6llu %7.0f "
            "%8.2f %8.2f %5u %10.2f %9.1f\n",
            (unsigned long long)(r->state >> 20), profiles[r->prof].name,
            r->pkt_rate, mode_name(r->precopy), (unsigned long long)r->exp_ms,
            (unsigned long long)r->down_ms, r->meas_ms,
            (double)r->sc_bytes / mib, r->sc_derived ? "*" : " ",
            (double)r->est_bytes / mib, (unsigned long long)r->dirty_pages,
            r->bw / mib, r->ideal_ms, r->ratio, r->iters,
            (double)r->pre_bytes / mib, r->total_ms);
}

const char *const table_head =
    "  state dirty  pkt/s mode         exp   down      meas  stop-copy      "
    "est dirtyp     tcp    ideal    ratio iters    precopy     total\n"
    "    MiB                            ms     ms        ms        MiB      "
    "MiB  pages   MiB/s       ms  meas/id              MiB        ms\n";

/* The .dat file: one block per mode x dirty rate (gnuplot "index"). */
int
write_dat(const char *path, const struct result *res, size_t n, double bw)
{
    FILE *f = fopen(path, "w");
    int block = 0;

    if (f == NULL) {
        return -errno;
    }
    fprintf(f,
            "# bench_precopy: plain TCP loopback %.1f MiB/s at the start\n"
            "# columns: state_MiB dirty mode engine_downtime_ms "
            "measured_downtime_ms stopcopy_MiB ideal_ms ratio iterations "
            "precopy_MiB total_ms est_stopcopy_MiB tcp_MiB_per_s "
            "packets_per_s final_dirty_pages\n",
            bw / (1 << 20));
    for (int pc = 0; pc < 2; pc++) {
        for (unsigned int p = 0; p < nprofiles; p++) {
            fprintf(f, "%s# index %d: %s %s\n", block > 0 ? "\n\n" : "", block,
                    mode_name(pc), profiles[p].name);
            for (size_t i = 0; i < n; i++) {
                if (res[i].precopy == (pc == 1) && res[i].prof == p) {
                    print_row(f, &res[i], true);
                }
            }
            block++;
        }
    }
    return fclose(f) == 0 ? 0 : -errno;
}

bool
have_gnuplot(void)
{
    return system("command -v gnuplot >/dev/null 2>&1") == 0;
}

int
plot(const char *dir, const char *dat, const char *png, const char *what)
{
    char gp[4096], cmd[4200], titles[256] = "";
    int last = (int)(2 * nprofiles) - 1, pc0 = (int)nprofiles;
    FILE *f;
    int ret;

    for (int pc = 0; pc < 2; pc++) {
        for (unsigned int p = 0; p < nprofiles; p++) {
            size_t at = strlen(titles);

            snprintf(titles + at, sizeof(titles) - at, "%s%s/%s",
                     at > 0 ? " " : "", mode_name(pc), profiles[p].name);
        }
    }
    snprintf(gp, sizeof(gp), "%s/precopy.gp", dir);
    f = fopen(gp, "w");
    if (f == NULL) {
        return -errno;
    }
    fprintf(f,
            "set terminal svg size 1500,560 dynamic font 'sans,10'\n"
            "set output '%s'\n"
            "titles = '%s'\n"
            "set multiplot layout 1,3 title 'bench\\_precopy: flowtab "
            "device + guest RAM over loopback TCP (%s)'\n"
            "set logscale x 2\n"
            "set xlabel 'device state (MiB)'\n"
            "set grid\n"
            "set key below maxrows 3\n"
            "set logscale y\n"
            "set ylabel 'downtime (ms, measured)'\n"
            "plot for [i=0:%d] '%s' index i using 1:5 with linespoints "
            "title word(titles, i+1)\n"
            "set ylabel 'downtime / ideal (stop-copy bytes at TCP speed)'\n"
            "plot for [i=0:%d] '%s' index i using 1:8 with linespoints "
            "title word(titles, i+1)\n"
            "unset logscale y\n"
            "set ylabel 'precopy sent (MiB, solid)'\n"
            "set y2label 'precopy iterations (dashed)'\n"
            "set ytics nomirror\n"
            "set y2tics\n"
            "set yrange [0:*]\n"
            "set y2range [0:*]\n"
            "plot for [i=%d:%d] '%s' index i using 1:10 with linespoints "
            "title word(titles, i+1), for [i=%d:%d] '%s' index i using 1:9 "
            "axes x1y2 with linespoints dashtype 2 notitle\n"
            "unset multiplot\n",
            png, titles, what, last, dat, last, dat, pc0, last, dat, pc0, last,
            dat);
    if (fclose(f) != 0) {
        return -errno;
    }
    snprintf(cmd, sizeof(cmd), "gnuplot '%s'", gp);
    fflush(stdout);
    ret = system(cmd);
    return ret == 0 ? 0 : -EIO;
}

int
by_downtime(const void *a, const void *b)
{
    double x = ((const struct result *)a)->meas_ms;
    double y = ((const struct result *)b)->meas_ms;

    return x < y ? -1 : x > y;
}

/*
 * Downtime against the limit, precopy rows: the limit, the engine's
 * estimate when it switched over, the actual downtime (source pause ->
 * destination running, as QEMU counts it) and the two ratios.  A row
 * whose estimate never fit the limit (a cap forced the switchover) says
 * so and is not counted against the target: the engine did not claim it
 * would meet the limit there.
 */
static void
limit_table(const struct result *res, size_t n, uint64_t limit_ms)
{
    double worst = 0, lo = 1e30, hi = 0;
    unsigned int forced = 0, rows = 0;

    printf("downtime vs limit (precopy): est = the engine's expected "
           "downtime when it switched over; actual = vcpu_pause on the "
           "source -> vcpu_resume on the destination; pause = of actual, "
           "the VMM's vcpu_pause; conv = the estimate fit the limit "
           "(yes) or never did and the precopy cap switched over "
           "(FORCED)\n");
    printf("  state dirty   pkt/s  limit    est  actual  pause  act/lim  "
           "act/est  conv\n"
           "    MiB                   ms     ms      ms     ms\n");
    for (size_t i = 0; i < n; i++) {
        const struct result *r = &res[i];
        double ql = r->meas_ms / (double)limit_ms;
        double qe = r->exp_ms > 0 ? r->meas_ms / (double)r->exp_ms : 0;

        if (!r->precopy) {
            continue;
        }
        printf("%7llu %-5s %7.0f %6llu %6llu %7.1f %6.1f %8.2f %8.2f  %s\n",
               (unsigned long long)(r->state >> 20), profiles[r->prof].name,
               r->pkt_rate, (unsigned long long)limit_ms,
               (unsigned long long)r->exp_ms, r->meas_ms, r->pause_ms, ql, qe,
               r->forced ? "FORCED" : "yes");
        if (r->forced) {
            forced++;
            continue;
        }
        rows++;
        worst = ql > worst ? ql : worst;
        if (qe > 0) {
            lo = qe < lo ? qe : lo;
            hi = qe > hi ? qe : hi;
        }
    }
    if (rows > 0) {
        printf("converged rows (%u): actual / limit at most %.2f (target "
               "<= 1.1); actual / estimate %.2f .. %.2f\n",
               rows, worst, lo < 1e30 ? lo : 0, hi);
    }
    if (forced > 0) {
        printf("%u row%s did not converge at the limit: the engine "
               "switched over at the precopy cap and says so "
               "(stats.forced_switchover, a warning); their downtime is "
               "over the limit by design\n",
               forced, forced > 1 ? "s" : "");
    }
}

/* Precopy against stop-copy per state size and dirty rate. */
void
summary(const struct result *res, size_t n, uint64_t limit_ms)
{
    double lo = 1e30, hi = 0;

    printf("downtime with precopy / without (measured), and the ratio to "
           "the ideal:\n");
    printf("  state dirty  stop-copy ms  precopy ms  pre/stop  ratio "
           "stop-copy  ratio precopy\n");
    for (size_t i = 0; i + 1 < n; i += 2) {
        const struct result *a = &res[i], *b = &res[i + 1];

        printf("%7llu %-5s %13.1f %11.1f %9.3f %16.2f %14.2f\n",
               (unsigned long long)(a->state >> 20), profiles[a->prof].name,
               a->meas_ms, b->meas_ms, b->meas_ms / a->meas_ms, a->ratio,
               b->ratio);
        lo = a->ratio < lo ? a->ratio : lo;
        hi = a->ratio > hi ? a->ratio : hi;
    }
    printf("stop-copy downtime / ideal: %.2f .. %.2f\n", lo, hi);
    limit_table(res, n, limit_ms);
}
