/* SPDX-License-Identifier: MIT */
/*
 * bench_rss.c - memory the VMM needs to migrate a vfio-user device with a
 * large state, and how soon that state starts to move.
 *
 * Each row migrates one vfio-user test device server process (its state
 * SIZE MiB of seeded memory) between a source engine process and a
 * destination engine process (each a child of this one, joined by
 * loopback TCP, each with 64 KiB of guest RAM so the device's path is
 * what is measured), and reports:
 *
 *   peak RSS     VmHWM of the source and of the destination engine process
 *                at the end, and its growth over the tiny device's row
 *                (target: at most 64 MiB at every size; the device servers
 *                themselves hold the state and are not counted);
 *   first byte   from the vCPU pause (downtime starts) to the first
 *                stop-copy byte the backend hands to the engine, which
 *                puts it on the wire at once (the engine sends the
 *                remaining guest RAM, the vCPU state and the device's
 *                config first); and how long that first read took (the
 *                backend's share: one bounded pull);
 *   rate         device bytes / migration time; and, for the stop-copy
 *                rows, that rate against a plain TCP loopback stream
 *                from DRAM measured in the same run (the P1):
 *                the best of three after all rows, and the mean of one
 *                just before and one just after the row (what the load
 *                of a shared machine left the row);
 *   cores        CPU seconds of the four processes (both engines, both
 *                device servers) over the migration's wall time: near the
 *                machine's cores, the row is CPU-bound; well below, it
 *                waits on round trips (or on other load);
 *   CPU ms/MiB   per process, and for the stop-copy rows the total against
 *                the plain stream's own CPU per byte, a ratio that other
 *                load on a shared machine disturbs much less than the
 *                throughput ratio.  The engine processes are named
 *                src-engine and dst-engine (perf report --comm).
 *
 * Modes: "stop-copy" (no precopy: the whole state moves while paused) and
 * "precopy" (the device precopies its state in bursts first).
 *
 * usage: bench_rss [MiB ...]   default 1 64 1024 (the first size is the
 *        tiny reference); e.g. bench_rss 1 64 1024 4096
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vmig/engine.h>
#include <vmig/engine_vfu.h>
#include <vmig/vfu_client.h>
#include "vfu_testdev.h"
#include "../tests/loopback.h"
#include "bench_plot.h"

#define RAM_SIZE (64u << 10)
#define MAX_SIZES 8

struct result {
    int ret;
    long hwm_setup_kib, hwm_kib;
    double t_pause, t_stop, t_first, t_pull, t_start, t_end;
    unsigned long long dev_bytes;
    double cpu; /* user + system seconds of this engine process */
};

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* VmHWM of this process in KiB, or -1. */
static long
vm_hwm_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;

    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmHWM: %ld kB", &v) == 1) {
            break;
        }
    }
    fclose(f);
    return v;
}

/* User + system CPU seconds this process used so far. */
static double
cpu_self_s(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_SELF, &ru) < 0) {
        return 0;
    }
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds process @pid used so far from its clock ticks (utime +
 * stime of /proc/PID/stat: 10 ms steps), or 0. */
static double
cpu_pid_ticks_s(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    p = fgets(buf, sizeof(buf), f);
    fclose(f);
    p = p != NULL ? strrchr(buf, ')') : NULL;
    /* after "pid (comm)": fields 3.. ; utime and stime are 14 and 15 */
    if (p == NULL || sscanf(p + 2,
                            "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
                            "%*u %lu %lu",
                            &ut, &st) != 2) {
        return 0;
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/*
 * CPU seconds process @pid used so far: the scheduler's run time of each
 * of its threads (/proc/PID/task/TID/schedstat, nanoseconds), so that a
 * row of 256 MiB is not measured in steps of 0.04 ms/MiB (a thread that
 * ended is not counted: the device servers run one); the clock ticks
 * when the kernel keeps no schedstat.
 */
static double
cpu_pid_s(pid_t pid)
{
    char path[96];
    unsigned long long ns, sum = 0;
    struct dirent *t;
    bool any = false;
    DIR *dir;

    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    dir = opendir(path);
    if (dir == NULL) {
        return 0;
    }
    while ((t = readdir(dir)) != NULL) {
        FILE *f;

        if (t->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof(path), "/proc/%d/task/%.16s/schedstat", (int)pid,
                 t->d_name);
        f = fopen(path, "r");
        if (f == NULL) {
            continue;
        }
        if (fscanf(f, "%llu", &ns) == 1) {
            sum += ns;
            any = true;
        }
        fclose(f);
    }
    closedir(dir);
    return any ? (double)sum / 1e9 : cpu_pid_ticks_s(pid);
}

/* ---- the source's timing: wrap the backend's ops ---- */

static struct result res;
static const struct vmig_engine_dev_ops *inner;
static struct vmig_engine_dev_ops timed;

static int
t_pause(void *o)
{
    (void)o;
    res.t_pause = now_s();
    return 0;
}

static int
t_resume(void *o)
{
    (void)o;
    return 0;
}

static const struct vmig_engine_vm_ops vm_ops = {.vcpu_pause = t_pause,
                                                 .vcpu_resume = t_resume};

static int
t_set_state(void *o, enum vmig_state target)
{
    if (target == VMIG_STATE_STOP_COPY && res.t_stop == 0) {
        res.t_stop = now_s();
    }
    return inner->set_state(o, target);
}

static ssize_t
t_read(void *o, void *buf, size_t cap)
{
    double t0 = now_s();
    ssize_t n = inner->read(o, buf, cap);

    if (n > 0 && res.t_stop != 0 && res.t_first == 0) {
        res.t_first = now_s();
        res.t_pull = res.t_first - t0;
    }
    return n;
}

/* One engine process: connect to the device server at @path, migrate out
 * over a connection to @port (source) or in over @lfd (destination),
 * write a struct result to @out. */
static void
engine_child(bool source, const char *path, int port, int lfd, bool precopy,
             int out)
{
    struct vmig_engine_region rg = {.name = "ram0", .size = RAM_SIZE};
    struct vmig_engine_vfu_params p = {.name = "td0"};
    struct vmig_vfu_client *c = NULL;
    struct vmig_engine_vfu *b = NULL;
    struct vmig_engine *e = NULL;
    struct vmig_engine_stats *st = malloc(sizeof(*st));
    vmig_ctx_t *ctx;
    int fd;

    /* named for perf: "perf report --comm src-engine" */
    (void)prctl(PR_SET_NAME, source ? "src-engine" : "dst-engine");
    memset(&res, 0, sizeof(res));
    res.ret = -EIO;
    rg.host = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    inner = vmig_engine_vfu_ops();
    timed = *inner;
    timed.set_state = t_set_state;
    timed.read = t_read;
    if (st == NULL || rg.host == MAP_FAILED ||
        vmig_ctx_new("bench", NULL, NULL, &ctx) < 0) {
        _exit(1);
    }
    for (int i = 0; i < 500; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};

        if (vmig_vfu_client_connect(ctx, path, VMIG_VFU_EXT__ALL, &c) == 0) {
            break;
        }
        nanosleep(&ts, NULL); /* the server may not accept yet */
    }
    if (c == NULL || vmig_engine_vfu_new(ctx, c, &p, &b) < 0 ||
        vmig_engine_new(ctx, &rg, 1, &vm_ops, NULL, &e) < 0 ||
        vmig_engine_add_device(e, "td0", &timed, b) < 0) {
        fprintf(stderr, "bench_rss: engine setup failed\n");
        _exit(1);
    }
    if (source) {
        struct vmig_engine_params prm;

        vmig_engine_get_params(e, &prm);
        prm.no_precopy = !precopy;
        vmig_engine_set_params(e, &prm);
    }
    res.hwm_setup_kib = vm_hwm_kib();
    fd = source ? lb_connect(port) : accept(lfd, NULL, NULL);
    if (fd < 0) {
        _exit(1);
    }
    res.t_start = now_s();
    res.ret = source ? vmig_engine_migrate(e, fd) : vmig_engine_incoming(e, fd);
    res.t_end = now_s();
    res.hwm_kib = vm_hwm_kib();
    res.cpu = cpu_self_s();
    vmig_engine_stats(e, st);
    res.dev_bytes = st->ndevices > 0 ? st->dev[0].bytes : 0;
    close(fd);
    if (write(out, &res, sizeof(res)) != (ssize_t)sizeof(res)) {
        _exit(1);
    }
    _exit(0);
}

static pid_t
fork_engine(bool source, const char *path, int port, int lfd, bool precopy,
            int *rfd)
{
    int pp[2];
    pid_t pid;

    if (pipe(pp) < 0) {
        return -1;
    }
    pid = fork();
    if (pid == 0) {
        close(pp[0]);
        engine_child(source, path, port, lfd, precopy, pp[1]);
    }
    close(pp[1]);
    *rfd = pp[0];
    return pid;
}

static int
collect(pid_t pid, int rfd, struct result *r)
{
    ssize_t n = read(rfd, r, sizeof(*r));
    int status = 0;

    close(rfd);
    (void)waitpid(pid, &status, 0);
    return n == (ssize_t)sizeof(*r) && WIFEXITED(status) &&
                   WEXITSTATUS(status) == 0
               ? 0
               : -1;
}

/* One row: a fresh device pair of @mib MiB migrated once. */
static int
row(const char *dir, size_t mib, bool precopy, struct result *src,
    struct result *dst, double dev_cpu[2])
{
    char pa[300], pb[300];
    pid_t da, db, ps, pd;
    int lfd, port, rs, rd, ret;

    snprintf(pa, sizeof(pa), "%s/a.sock", dir);
    snprintf(pb, sizeof(pb), "%s/b.sock", dir);
    da = testdev_spawn(pa, 1, mib << 20);
    db = testdev_spawn(pb, 2, mib << 20);
    lfd = lb_listen(&port);
    if (da <= 0 || db <= 0 || lfd < 0) {
        fprintf(stderr, "bench_rss: cannot start the device servers\n");
        return -1;
    }
    dev_cpu[0] = -cpu_pid_s(da);
    dev_cpu[1] = -cpu_pid_s(db);
    pd = fork_engine(false, pb, port, lfd, precopy, &rd);
    ps = fork_engine(true, pa, port, lfd, precopy, &rs);
    close(lfd);
    ret = ps > 0 && pd > 0 ? 0 : -1;
    if (ps > 0 && collect(ps, rs, src) < 0) {
        ret = -1;
    }
    if (pd > 0 && collect(pd, rd, dst) < 0) {
        ret = -1;
    }
    dev_cpu[0] += cpu_pid_s(da);
    dev_cpu[1] += cpu_pid_s(db);
    (void)testdev_stop(da);
    (void)testdev_stop(db);
    (void)unlink(pa);
    (void)unlink(pb);
    if (ret == 0 && (src->ret < 0 || dst->ret < 0)) {
        fprintf(stderr, "bench_rss: migration of %zu MiB failed (%d/%d)\n", mib,
                src->ret, dst->ret);
        ret = -1;
    }
    return ret;
}

/*
 * One plain TCP loopback stream of @len bytes from DRAM: bytes per second
 * (0 on failure) and CPU seconds per MiB in *@cpu.  The buffers live only
 * here, so no engine child forked later inherits them.
 */
static double
plain_once(size_t len, double *cpu)
{
    uint8_t *src = malloc(len), *dst = malloc(len);
    double c0, secs = 0;

    *cpu = 0;
    if (src != NULL && dst != NULL) {
        memset(src, 0x5a, len);
        memset(dst, 0, len);
        c0 = cpu_self_s();
        secs = lb_tcp_copy(src, dst, len);
        *cpu = (cpu_self_s() - c0) / (double)(len >> 20);
    }
    free(src);
    free(dst);
    return secs > 0 ? (double)len / secs : 0;
}

/* P1 as a table (p1.dat) and a plot (p1.svg): the ratio to the plain
 * stream per state size, in speed and in CPU per byte. */
static void
p1_plot(const size_t *sizes, const double *rate, const double *cpu_mib, int n,
        double best, double best_cpu)
{
    char path[512];
    FILE *f = bench_dat_open("p1.dat", path, sizeof(path));

    if (f == NULL) {
        return;
    }
    fprintf(f, "# state_MiB migration_MiB/s plain_MiB/s speed_ratio "
               "cpu_per_byte_ratio\n");
    for (int i = 1; i < n; i++) {
        if (rate[i] > 0) {
            fprintf(f, "%zu %.1f %.1f %.3f %.3f\n", sizes[i],
                    rate[i] / (1 << 20), best / (1 << 20), rate[i] / best,
                    best_cpu > 0 ? cpu_mib[i] / best_cpu : 0);
        }
    }
    fclose(f);
    (void)bench_plot(
        "p1",
        "set title 'P1: one device migrated at stop-copy vs a plain TCP "
        "loopback stream (same run)'\n"
        "set style data histograms\nset style histogram clustered gap 1\n"
        "set style fill solid 0.5\nset yrange [0:*]\n"
        "set key below\nset ylabel 'speed ratio (target 0.95)'\n"
        "set y2label 'CPU per byte, x the plain stream'\n"
        "set y2tics\nset ytics nomirror\nset y2range [0:*]\n"
        "plot '%s' using 4:xtic(sprintf('%%d MiB', $1)) title 'speed / "
        "plain stream', '' using 5 axes x1y2 title 'CPU per byte / plain "
        "stream', 0.95 axes x1y1 with lines dashtype 2 title 'target'\n",
        path);
}

/*
 * P1: each stop-copy row's device bytes per second of migration against a
 * plain TCP loopback stream from DRAM in this run (best of 3 x 64 MiB;
 * after the rows, so no engine child inherits its buffers).
 */
static void
plain_ratio(const size_t *sizes, const double *rate, const double *cpu_mib,
            const double (*around)[2], int n)
{
    size_t len = 64u << 20;
    uint8_t *src = malloc(len), *dst = malloc(len);
    double best = 0, best_cpu = 0;

    if (src == NULL || dst == NULL) {
        free(src);
        free(dst);
        return;
    }
    memset(src, 0x5a, len);
    memset(dst, 0, len);
    for (int r = 0; r < 3; r++) {
        double c0 = cpu_self_s();
        double secs = lb_tcp_copy(src, dst, len);
        double c = (cpu_self_s() - c0) / (double)(len >> 20);

        if (secs > 0 && (double)len / secs > best) {
            best = (double)len / secs;
        }
        if (secs > 0 && c > 0 && (best_cpu == 0 || c < best_cpu)) {
            best_cpu = c;
        }
    }
    free(src);
    free(dst);
    if (best <= 0) {
        return;
    }
    printf("\nplain TCP loopback stream from DRAM: %.0f MiB/s, %.3f CPU "
           "ms/MiB\n",
           best / (1 << 20), best_cpu * 1e3);
    for (int i = 1; i < n; i++) {
        double mean = (around[i][0] + around[i][1]) / 2;

        if (rate[i] > 0) {
            printf("P1 %5zu MiB stop-copy: %.0f MiB/s = %.2fx the plain "
                   "stream; %.3f CPU ms/MiB = %.2fx its CPU per byte\n",
                   sizes[i], rate[i] / (1 << 20), rate[i] / best,
                   cpu_mib[i] * 1e3, best_cpu > 0 ? cpu_mib[i] / best_cpu : 0);
        }
        if (rate[i] > 0 && around[i][0] > 0 && around[i][1] > 0) {
            printf("P1 %5zu MiB stop-copy: %.2fx the plain stream measured "
                   "just before and after the row (%.0f and %.0f MiB/s)\n",
                   sizes[i], rate[i] / mean, around[i][0] / (1 << 20),
                   around[i][1] / (1 << 20));
        }
    }
    p1_plot(sizes, rate, cpu_mib, n, best, best_cpu);
}

int
main(int argc, char **argv)
{
    size_t sizes[MAX_SIZES] = {1, 64, 1024};
    int nsizes = 3;
    char dir[] = "/tmp/vmig-bench-rss-XXXXXX";
    double rate[MAX_SIZES] = {0}, cpu_mib[MAX_SIZES] = {0};
    double around[MAX_SIZES][2] = {{0}};
    int rc = 0;

    if (argc > 1) {
        nsizes = 0;
        for (int i = 1; i < argc && nsizes < MAX_SIZES; i++) {
            sizes[nsizes++] = (size_t)atol(argv[i]);
        }
    }
    signal(SIGPIPE, SIG_IGN);
    if (mkdtemp(dir) == NULL) {
        return 1;
    }
    printf("bench_rss: one vfio-user test device server process migrated "
           "between two engine processes (64 KiB guest RAM each), loopback "
           "TCP; peak RSS = VmHWM of each engine process; the first row is "
           "the tiny reference; target: growth <= 64 MiB\n");
    for (int m = 0; m < 2; m++) {
        bool precopy = m == 1;
        long tiny_s = 0, tiny_d = 0;

        printf("\nmode %s\n", precopy ? "precopy" : "stop-copy");
        printf("%9s %12s %12s %12s %12s %14s %11s %11s %6s\n", "state",
               "src peak", "src growth", "dst peak", "dst growth",
               "pause->1st B", "1st read", "rate", "cores");
        for (int i = 0; i < nsizes; i++) {
            struct result s, d;
            double secs, dev_cpu[2] = {0, 0}, cpu, mib;

            memset(&s, 0, sizeof(s));
            memset(&d, 0, sizeof(d));
            /* other load on a shared machine changes from one second to
             * the next: the stop-copy rows also get the plain stream
             * measured on both sides of them */
            if (!precopy && i > 0) {
                around[i][0] = plain_once(64u << 20, &cpu);
            }
            if (row(dir, sizes[i], precopy, &s, &d, dev_cpu) < 0) {
                rc = 1;
                continue;
            }
            if (!precopy && i > 0) {
                around[i][1] = plain_once(64u << 20, &cpu);
            }
            if (i == 0) {
                tiny_s = s.hwm_kib;
                tiny_d = d.hwm_kib;
            }
            secs = s.t_end - s.t_start;
            cpu = s.cpu + d.cpu + dev_cpu[0] + dev_cpu[1];
            mib = (double)s.dev_bytes / (1 << 20);
            if (!precopy) {
                rate[i] = (double)s.dev_bytes / secs;
                cpu_mib[i] = cpu / mib;
            }
            printf("%5zu MiB %8.1f MiB %8.1f MiB %8.1f MiB %8.1f MiB %11.2f ms "
                   "%8.2f ms %5.0f MiB/s %6.2f%s\n",
                   sizes[i], (double)s.hwm_kib / 1024,
                   (double)(s.hwm_kib - tiny_s) / 1024,
                   (double)d.hwm_kib / 1024,
                   (double)(d.hwm_kib - tiny_d) / 1024,
                   (s.t_first - s.t_pause) * 1e3, s.t_pull * 1e3,
                   (double)s.dev_bytes / (1 << 20) / secs, cpu / secs,
                   s.hwm_kib - tiny_s > (64 << 10) ||
                           d.hwm_kib - tiny_d > (64 << 10)
                       ? "  OVER TARGET"
                       : "");
            if (i > 0 && mib > 0) {
                printf("%9s CPU ms/MiB: source device %.3f, source engine "
                       "%.3f, destination engine %.3f, destination device "
                       "%.3f\n",
                       "", dev_cpu[0] * 1e3 / mib, s.cpu * 1e3 / mib,
                       d.cpu * 1e3 / mib, dev_cpu[1] * 1e3 / mib);
            }
            fflush(stdout);
        }
    }
    (void)rmdir(dir);
    plain_ratio(sizes, rate, cpu_mib, around, nsizes);
    return rc;
}
