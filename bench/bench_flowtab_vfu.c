/* SPDX-License-Identifier: MIT */
/*
 * bench_flowtab_vfu - precopy of the flowtab device over vfio-user: two
 * vmig-flowtab servers (forked children), the vmig client moving the
 * saving session of one into the resuming session of the other (bulk
 * channel), while a vCPU thread keeps posting packets over 16 flows.
 *
 * Per state size: precopy passes (each reads what PRECOPY_INFO reported
 * at its start; precopy ends when the initial data is sent and
 * dirty_bytes <= 2 MiB, or after 30 passes), bytes sent in precopy (and
 * as a multiple of the state), stop-copy bytes, and the stop-copy phase's
 * time (read + load + validate) against the same without precopy and
 * against the ideal: the stop-copy bytes at the plain socketpair
 * bandwidth measured in this run.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vmig/log.h>
#include <vmig/vfu_client.h>
#include "flowtab_server.h"
#include "ft_guest.h"

#define RAM_BYTES (8u << 20)
#define AREA 0x10000u
#define RING 1024u
#define CHUNK (64u << 10)
#define MAX_PASSES 30
#define CONVERGED (2u << 20)

static vmig_ctx_t *ctx;

/* The socket file appears at bind(), a moment before listen(). */
static int
connect_retry(vmig_ctx_t *c, const char *path, uint32_t ext,
              struct vmig_vfu_client **out)
{
    int ret = -ECONNREFUSED;

    for (int i = 0; i < 200 && ret == -ECONNREFUSED; i++) {
        ret = vmig_vfu_client_connect(c, path, ext, out);
        if (ret == -ECONNREFUSED) {
            usleep(5000);
        }
    }
    return ret;
}

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Plain socketpair bandwidth, bytes per second. */
static double
socket_bw(size_t total)
{
    int sv[2];
    static char buf[1 << 20];
    double t0, t1;
    pid_t pid;

    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
        return 0;
    }
    pid = fork();
    if (pid == 0) {
        size_t got = 0;

        close(sv[0]);
        while (got < total) {
            ssize_t n = read(sv[1], buf, sizeof(buf));

            if (n <= 0) {
                _exit(1);
            }
            got += (size_t)n;
        }
        _exit(0);
    }
    close(sv[1]);
    t0 = now();
    for (size_t sent = 0; sent < total;) {
        ssize_t n = write(sv[0], buf, sizeof(buf));

        if (n <= 0) {
            break;
        }
        sent += (size_t)n;
    }
    (void)waitpid(pid, NULL, 0);
    t1 = now();
    close(sv[0]);
    return (double)total / (t1 - t0);
}

static int
reg_read(void *opaque, uint32_t off, uint32_t *val)
{
    return vmig_vfu_client_region_read(opaque, FT_SRV_REGION_BAR0, off, val, 4);
}

static int
reg_write(void *opaque, uint32_t off, uint32_t val)
{
    return vmig_vfu_client_region_write(opaque, FT_SRV_REGION_BAR0, off, &val,
                                        4);
}

struct vcpu {
    struct ft_guest *g;
    bool stop;
    long err;
};

static void *
vcpu_main(void *arg)
{
    struct vcpu *v = arg;

    while (!__atomic_load_n(&v->stop, __ATOMIC_ACQUIRE)) {
        long r = ft_guest_post(v->g, 16, 0);

        if (r >= 0) {
            r = ft_guest_reap(v->g);
        }
        if (r < 0 && v->err == 0) {
            v->err = r;
        }
        usleep(50);
    }
    return NULL;
}

static int
fwd(void *opaque, const void *data, size_t len)
{
    return vmig_vfu_client_mig_write(opaque, data, len);
}

struct result {
    int passes;
    uint64_t pre_bytes;
    uint64_t sc_bytes;
    double sc_time;
    uint64_t full_bytes;
    double full_time;
};

static int
run(const char *dir, uint64_t state, struct result *res)
{
    struct ft_server_cfg cfg = {0};
    struct vmig_vfu_client *cs = NULL, *cd = NULL;
    struct ft_guest g;
    struct ft_guest_regs regs;
    struct vcpu v = {0};
    char ps[300], pd[300];
    pid_t kid[2] = {-1, -1};
    pthread_t th;
    uint8_t *ram = MAP_FAILED;
    uint64_t init, dirty, n;
    double t0;
    int mfd, ret;

    memset(res, 0, sizeof(*res));
    cfg.model.state_bytes = state;
    cfg.model.chunk_bytes = CHUNK;
    snprintf(ps, sizeof(ps), "%s/src.sock", dir);
    snprintf(pd, sizeof(pd), "%s/dst.sock", dir);
    kid[0] = ft_server_spawn(ps, &cfg);
    kid[1] = ft_server_spawn(pd, &cfg);
    mfd = memfd_create("ram", MFD_CLOEXEC);
    ret = kid[0] < 0 || kid[1] < 0 || mfd < 0 ? -EIO : 0;
    if (ret == 0 && ftruncate(mfd, RAM_BYTES) == 0) {
        ram = mmap(NULL, RAM_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    }
    ret = ram == MAP_FAILED ? -ENOMEM : 0;
    if (ret == 0) {
        ret = connect_retry(ctx, ps, VMIG_VFU_EXT__ALL, &cs);
    }
    if (ret == 0) {
        ret = connect_retry(ctx, pd, VMIG_VFU_EXT__ALL, &cd);
    }
    if (ret == 0) {
        ret = vmig_vfu_client_dma_map(cs, 0, RAM_BYTES,
                                      VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE,
                                      mfd, 0, ram);
    }
    if (ret == 0) {
        regs.read = reg_read;
        regs.write = reg_write;
        regs.opaque = cs;
        ret = ft_guest_init(&g, ram, RAM_BYTES, AREA, RING, 16, 3, &regs);
    }
    if (ret == 0) {
        v.g = &g;
        ret = -pthread_create(&th, NULL, vcpu_main, &v);
    }
    if (ret < 0) {
        goto out;
    }
    usleep(20000);
    ret = vmig_vfu_client_set_state(cs, VMIG_STATE_PRE_COPY);
    if (ret == 0) {
        ret = vmig_vfu_client_set_state(cd, VMIG_STATE_RESUMING);
    }
    while (ret == 0 && res->passes < MAX_PASSES) {
        ret = vmig_vfu_client_precopy_info(cs, &init, &dirty);
        if (ret < 0 || (init == 0 && dirty <= CONVERGED)) {
            break;
        }
        ret = vmig_vfu_client_mig_save(cs, fwd, cd, &n);
        ret = ret == -ENOMSG ? 0 : ret;
        res->pre_bytes += n;
        res->passes++;
    }
    __atomic_store_n(&v.stop, true, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    if (ret < 0) {
        goto out;
    }
    /* the downtime part: stop-copy read + load + validate */
    t0 = now();
    ret = vmig_vfu_client_set_state(cs, VMIG_STATE_STOP_COPY);
    if (ret == 0) {
        ret = vmig_vfu_client_mig_save(cs, fwd, cd, &res->sc_bytes);
    }
    if (ret == 0) {
        ret = vmig_vfu_client_set_state(cd, VMIG_STATE_STOP);
    }
    res->sc_time = now() - t0;
    /* the same without precopy: a whole stream in stop-copy */
    if (ret == 0) {
        ret = vmig_vfu_client_set_state(cs, VMIG_STATE_STOP);
    }
    if (ret == 0) {
        ret = vmig_vfu_client_reset(cd);
    }
    if (ret == 0) {
        ret = vmig_vfu_client_set_state(cd, VMIG_STATE_RESUMING);
    }
    t0 = now();
    if (ret == 0) {
        ret = vmig_vfu_client_set_state(cs, VMIG_STATE_STOP_COPY);
    }
    if (ret == 0) {
        ret = vmig_vfu_client_mig_save(cs, fwd, cd, &res->full_bytes);
    }
    if (ret == 0) {
        ret = vmig_vfu_client_set_state(cd, VMIG_STATE_STOP);
    }
    res->full_time = now() - t0;
out:
    vmig_vfu_client_free(cs);
    vmig_vfu_client_free(cd);
    for (int i = 0; i < 2; i++) {
        if (kid[i] > 0) {
            (void)ft_server_stop(kid[i]);
        }
    }
    if (ram != MAP_FAILED) {
        munmap(ram, RAM_BYTES);
    }
    if (mfd >= 0) {
        close(mfd);
    }
    return ret < 0 ? ret : (int)v.err;
}

int
main(void)
{
    static const uint64_t sizes[] = {64ull << 20, 256ull << 20};
    char dir[] = "/tmp/vmig-bench-ftvfu.XXXXXX";
    double bw;
    int rc = 0;

    signal(SIGPIPE, SIG_IGN);
    if (mkdtemp(dir) == NULL || vmig_ctx_new("bench", NULL, NULL, &ctx) < 0) {
        return 1;
    }
    bw = socket_bw(256u << 20);
    printf("flowtab precopy over vfio-user (bulk channel), chunk %u KiB, "
           "16 hot flows under traffic\n",
           CHUNK >> 10);
    printf("plain socketpair in this run: %.0f MiB/s\n", bw / (1 << 20));
    printf("%6s %6s %10s %7s %10s %9s %9s %9s %9s\n", "state", "passes",
           "precopy B", "x state", "stopcopy B", "sc ms", "ideal ms", "x ideal",
           "x no-pre");
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct result r;
        int ret = run(dir, sizes[i], &r);
        double ideal = (double)r.sc_bytes / bw * 1e3;

        if (ret < 0) {
            fprintf(stderr, "bench_flowtab_vfu: %llu MiB: %s\n",
                    (unsigned long long)(sizes[i] >> 20), strerror(-ret));
            rc = 1;
            continue;
        }
        printf("%4llu M %6d %10llu %7.2f %10llu %9.2f %9.2f %9.2f %9.3f\n",
               (unsigned long long)(sizes[i] >> 20), r.passes,
               (unsigned long long)r.pre_bytes,
               (double)r.pre_bytes / (double)sizes[i],
               (unsigned long long)r.sc_bytes, r.sc_time * 1e3, ideal,
               r.sc_time * 1e3 / ideal, r.sc_time / r.full_time);
    }
    printf("x no-pre: stop-copy phase time with precopy / without (the "
           "whole state in stop-copy)\n");
    vmig_ctx_free(ctx);
    rmdir(dir);
    return rc;
}
