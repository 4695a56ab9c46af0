/* SPDX-License-Identifier: MIT */
/*
 * bench_agent_rss.c - peak memory of the vmig agents themselves while a
 * device with a large state migrates between them.
 *
 * Each row starts two vfio-user test device servers (vfu-testdev
 * --size=MiB: separate processes holding SIZE MiB of seeded state) and
 * two agent processes, `vmig run` (the source) and `vmig receive` (the
 * destination), each with 16 MiB of guest RAM and one of the servers
 * (--device socket=PATH), and runs
 * `vmig migrate` between them with the agents' default parameters
 * (precopy, the default channels).  It reports VmHWM from
 * /proc/PID/status of both agent processes once the migration completed,
 * and the growth over the row of the tiny device (the first size):
 * target at most 64 MiB at every size (the device servers hold the state
 * and are not counted).  A row whose device servers would not fit in the
 * memory the machine has available (each server keeps its state and a
 * resuming shadow of it resident: about 4 x SIZE for the two) is skipped
 * and says so.
 *
 * usage: bench_agent_rss [MiB ...]   default 1 64 1024 4096 (the first
 *        is the tiny reference)
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "../tests/loopback.h"
#include "bench_plot.h"

#define MAX_SIZES 8

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A field ("VmHWM:", "MemAvailable:") in KiB from a /proc file, or -1. */
static long
proc_kib(const char *file, const char *field)
{
    FILE *f = fopen(file, "r");
    char line[256];
    long v = -1;

    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, field, strlen(field)) == 0) {
            v = strtol(line + strlen(field), NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

static long
hwm_kib(pid_t pid)
{
    char path[64];

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    return proc_kib(path, "VmHWM:");
}

/* @argv with stderr to @log, stdout to @out (NULL: discarded). */
static pid_t
spawn_out(char *const argv[], const char *log, const char *out)
{
    pid_t pid = fork();

    if (pid == 0) {
        FILE *f = freopen(log, "w", stderr);

        (void)f;
        if (freopen(out != NULL ? out : "/dev/null", "w", stdout) == NULL) {
            _exit(127);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static pid_t
spawn(char *const argv[], const char *log)
{
    return spawn_out(argv, log, NULL);
}

/* A number after "@key": in file @path, or -1. */
static long
json_num(const char *path, const char *key)
{
    char buf[65536];
    FILE *f = fopen(path, "r");
    size_t n;
    const char *p;

    if (f == NULL) {
        return -1;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strstr(buf, key);
    if (p == NULL) {
        return -1;
    }
    p += strlen(key);
    while (*p == '"' || *p == ':' || *p == ' ') {
        p++;
    }
    return strtol(p, NULL, 10);
}

/* Wait until @path exists (a socket), at most @secs, while @pid lives. */
static int
wait_path(const char *path, pid_t pid, double secs)
{
    struct stat st;
    double t0 = now_s();

    while (stat(path, &st) != 0) {
        struct timespec ts = {0, 20000000};

        if (waitpid(pid, NULL, WNOHANG) == pid || now_s() - t0 > secs) {
            return -1;
        }
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* A device server of @mib MiB listening on @sock; its pid or -1. */
static pid_t
server(const char *sock, unsigned long mib, unsigned int seed, const char *log)
{
    char a_sock[320], a_size[64], a_seed[64];
    char *const argv[] = {(char *)VFU_TESTDEV_BIN, a_sock, a_size, a_seed,
                          NULL};
    pid_t pid;

    snprintf(a_sock, sizeof(a_sock), "--socket-path=%s", sock);
    snprintf(a_size, sizeof(a_size), "--size=%lu", mib);
    snprintf(a_seed, sizeof(a_seed), "--seed=%u", seed);
    unlink(sock);
    pid = spawn(argv, log);
    /* filling a large state takes a while on a loaded machine */
    if (pid < 0 || wait_path(sock, pid, 600) < 0) {
        return -1;
    }
    return pid;
}

static void
stop(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
}

struct row {
    unsigned long mib;
    long src_kib, dst_kib;
    long first_us; /* pause -> first stop-copy device byte, or -1 */
    long down_ms;  /* the downtime query-migrate reports, or -1 */
    double secs;
    bool skipped; /* not run (memory), or failed */
    bool failed;
};

/* One migration of a device of @r->mib MiB between two fresh agents. */
static int
run_row(const char *vmig, const char *dir, struct row *r)
{
    char sdev[400], ddev[400], sq[300], dq[300], to[64], listen[64];
    char slog[300], dlog[300], mlog[300], ssock[300], dsock[300], vlog[300];
    char mout[300];
    pid_t src = -1, dst = -1, cli, ssrv, dsrv;
    int port, lfd, st = 0, ret = -1;
    double t0;

    lfd = lb_listen(&port); /* a free port for the destination */
    if (lfd < 0) {
        return -1;
    }
    close(lfd);
    snprintf(ssock, sizeof(ssock), "%s/src-dev.sock", dir);
    snprintf(dsock, sizeof(dsock), "%s/dst-dev.sock", dir);
    snprintf(vlog, sizeof(vlog), "%s/devices.log", dir);
    snprintf(sdev, sizeof(sdev), "socket=%s", ssock);
    snprintf(ddev, sizeof(ddev), "socket=%s", dsock);
    ssrv = server(ssock, r->mib, 1, vlog);
    dsrv = server(dsock, r->mib, 2, vlog);
    if (ssrv < 0 || dsrv < 0) {
        fprintf(stderr, "bench: a device server did not start (%s)\n", vlog);
        goto out;
    }
    snprintf(sq, sizeof(sq), "%s/src.qmp", dir);
    snprintf(dq, sizeof(dq), "%s/dst.qmp", dir);
    snprintf(slog, sizeof(slog), "%s/src.log", dir);
    snprintf(dlog, sizeof(dlog), "%s/dst.log", dir);
    snprintf(mlog, sizeof(mlog), "%s/migrate.log", dir);
    snprintf(mout, sizeof(mout), "%s/migrate.json", dir);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    unlink(sq);
    unlink(dq);
    {
        char *const dargv[] = {(char *)vmig, "receive", "--qmp", dq,
                               "--listen",   listen,    "--ram", "16M",
                               "--device",   ddev,      NULL};
        char *const sargv[] = {(char *)vmig, "run",      "--qmp", sq,  "--ram",
                               "16M",        "--device", sdev,    NULL};

        dst = spawn(dargv, dlog);
        src = spawn(sargv, slog);
    }
    if (dst < 0 || src < 0 || wait_path(dq, dst, 120) < 0 ||
        wait_path(sq, src, 120) < 0) {
        fprintf(stderr, "bench: an agent did not start (see %s, %s)\n", slog,
                dlog);
        goto out;
    }
    {
        char *const margv[] = {(char *)vmig, "migrate", "--qmp",  sq,
                               "--to",       to,        "--json", NULL};

        snprintf(to, sizeof(to), "127.0.0.1:%d", port);
        t0 = now_s();
        cli = spawn_out(margv, mlog, mout);
        if (cli < 0 || waitpid(cli, &st, 0) != cli || !WIFEXITED(st) ||
            WEXITSTATUS(st) != 0) {
            fprintf(stderr, "bench: the %lu MiB migration failed (see %s)\n",
                    r->mib, mlog);
            goto out;
        }
        r->secs = now_s() - t0;
    }
    r->first_us = json_num(mout, "\"x-vmig-first-device-byte-us\"");
    r->down_ms = json_num(mout, "\"downtime\"");
    r->src_kib = hwm_kib(src);
    r->dst_kib = hwm_kib(dst);
    ret = r->src_kib > 0 && r->dst_kib > 0 ? 0 : -1;
out:
    stop(src);
    stop(dst);
    stop(ssrv);
    stop(dsrv);
    return ret;
}

int
main(int argc, char **argv)
{
    static const unsigned long defaults[] = {1, 64, 1024, 4096};
    struct row rows[MAX_SIZES] = {{0}};
    unsigned int n = 0;
    char dir[] = "/tmp/vmig-agent-rss.XXXXXX"; /* kept when a row failed */
    const char *vmig =
        getenv("VMIG_AGENT") ? getenv("VMIG_AGENT") : VMIG_AGENT_BIN;
    int rc = 0;

    for (int i = 1; i < argc && n < MAX_SIZES; i++) {
        rows[n++].mib = strtoul(argv[i], NULL, 0);
    }
    if (n == 0) {
        for (; n < sizeof(defaults) / sizeof(defaults[0]); n++) {
            rows[n].mib = defaults[n];
        }
    }
    if (mkdtemp(dir) == NULL) {
        perror("bench: mkdtemp");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    for (unsigned int i = 0; i < n; i++) {
        long avail = proc_kib("/proc/meminfo", "MemAvailable:");

        /* two servers, each its state and its resuming shadow, plus 2 GiB
         * for everyone else on the machine */
        if (avail > 0 && (unsigned long long)avail <
                             (4ull * rows[i].mib << 10) + (2ull << 20)) {
            rows[i].skipped = true;
            continue;
        }
        if (run_row(vmig, dir, &rows[i]) < 0) {
            rc = 1;
            rows[i].skipped = rows[i].failed = true;
        }
    }
    printf("agent peak RSS (VmHWM of the vmig agent processes; 16 MiB guest "
           "RAM each, one vfio-user test device server each, default "
           "parameters)\n");
    printf(
        "| device state | source agent MiB | destination agent MiB | over "
        "tiny, source | over tiny, destination | migration s | pause -> first "
        "device byte ms | downtime ms |\n"
        "|---|---|---|---|---|---|---|---|\n");
    for (unsigned int i = 0; i < n; i++) {
        const struct row *r = &rows[i];

        if (r->failed) {
            printf("| %lu MiB | failed (see the message above) | | | | | | |\n",
                   r->mib);
            continue;
        }
        if (r->skipped) {
            printf("| %lu MiB | skipped: needs about %lu MiB available for "
                   "the two device servers | | | | | | |\n",
                   r->mib, 4 * r->mib + 2048);
            continue;
        }
        printf(
            "| %lu MiB | %.1f | %.1f | %+.1f | %+.1f | %.2f | %.2f | %ld |\n",
            r->mib, (double)r->src_kib / 1024, (double)r->dst_kib / 1024,
            rows[0].skipped ? 0.0
                            : (double)(r->src_kib - rows[0].src_kib) / 1024,
            rows[0].skipped ? 0.0
                            : (double)(r->dst_kib - rows[0].dst_kib) / 1024,
            r->secs, (double)r->first_us / 1e3, r->down_ms);
    }
    if (!rows[0].skipped) {
        long worst = 0;

        for (unsigned int i = 1; i < n; i++) {
            if (!rows[i].skipped) {
                long g = rows[i].src_kib - rows[0].src_kib;
                long h = rows[i].dst_kib - rows[0].dst_kib;

                worst = g > worst ? g : worst;
                worst = h > worst ? h : worst;
            }
        }
        printf("largest growth over the tiny device: %.1f MiB (target <= 64 "
               "MiB)\n",
               (double)worst / 1024);
    }
    if (!rows[0].skipped) {
        char path[512];
        FILE *f = bench_dat_open("agent_rss.dat", path, sizeof(path));

        if (f != NULL) {
            fprintf(f, "# state_MiB source_MiB destination_MiB "
                       "tiny_plus_64_MiB\n");
            for (unsigned int i = 0; i < n; i++) {
                if (!rows[i].skipped) {
                    fprintf(f, "%lu %.1f %.1f %.1f\n", rows[i].mib,
                            (double)rows[i].src_kib / 1024,
                            (double)rows[i].dst_kib / 1024,
                            (double)(rows[0].src_kib > rows[0].dst_kib
                                         ? rows[0].src_kib
                                         : rows[0].dst_kib) /
                                    1024 +
                                64);
                }
            }
            fclose(f);
            (void)bench_plot(
                "agent_rss",
                "set title 'peak RSS (VmHWM) of the vmig agents vs the "
                "device state they migrate'\n"
                "set logscale x 2\nset xlabel 'device state (MiB)'\n"
                "set ylabel 'MiB'\nset yrange [0:*]\nset key top left\n"
                "plot '%s' using 1:2 with linespoints title 'source agent', "
                "'' using 1:3 with linespoints title 'destination agent', "
                "'' using 1:4 with lines dashtype 2 title 'target: tiny + "
                "64 MiB'\n",
                path);
        }
    }
    if (rc == 0) {
        char p[300];

        snprintf(p, sizeof(p), "rm -rf '%s'", dir);
        if (system(p) != 0) {
            rc = 1;
        }
    }
    return rc;
}
