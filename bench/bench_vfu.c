/* SPDX-License-Identifier: MIT */
/*
 * bench_vfu.c - vfio-user data and control plane, each against a plain
 * socket doing the same work in the same run.
 *
 *   MIG_DATA_READ (spec message path, 1 MiB request/reply) and the bulk
 *   channel extension: STOP_COPY save of the test device's state, as a
 *   ratio of a plain AF_UNIX socket copy of the same byte count;
 *   GET state round trip (DEVICE_FEATURE) vs a raw 16-byte ping-pong.
 * Each figure is the best of REPS interleaved rounds.
 *
 * usage: bench_vfu [state-MiB] [round-trips]
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vmig/vfu_client.h>
#include "vfu_testdev.h"

#define REPS 5

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct sinkbuf {
    uint8_t *p;
    size_t len, cap;
};

static int
sink(void *opaque, const void *buf, size_t len)
{
    struct sinkbuf *s = opaque;

    if (len > s->cap - s->len) {
        return -E2BIG;
    }
    memcpy(s->p + s->len, buf, len);
    s->len += len;
    return 0;
}

/* Bytes/s of a STOP_COPY save over @c (bulk when negotiated). */
static double
save_rate(struct vmig_vfu_client *c, struct sinkbuf *sb, uint64_t *bytes)
{
    double t0, t1;
    int ret;

    sb->len = 0;
    if (vmig_vfu_client_set_state(c, VMIG_STATE_STOP_COPY) < 0) {
        return -1;
    }
    t0 = now();
    ret = vmig_vfu_client_mig_save(c, sink, sb, bytes);
    t1 = now();
    if (ret < 0 || vmig_vfu_client_set_state(c, VMIG_STATE_RUNNING) < 0) {
        fprintf(stderr, "save failed: %s\n", strerror(-ret));
        return -1;
    }
    return (double)*bytes / (t1 - t0);
}

/* Bytes/s of a STOP_COPY save read with MIG_DATA_READ of @chunk bytes
 * (what a client with a smaller transfer size pays per round trip). */
static double
read_rate(struct vmig_vfu_client *c, struct sinkbuf *sb, size_t chunk)
{
    double t0, t1;
    long n = 1;

    sb->len = 0;
    if (vmig_vfu_client_set_state(c, VMIG_STATE_STOP_COPY) < 0) {
        return -1;
    }
    t0 = now();
    while (n > 0 && sb->cap - sb->len >= chunk) {
        n = vmig_vfu_client_mig_read(c, sb->p + sb->len, chunk);
        if (n > 0) {
            sb->len += (size_t)n;
        }
    }
    t1 = now();
    if (n != 0 || vmig_vfu_client_set_state(c, VMIG_STATE_RUNNING) < 0) {
        return -1;
    }
    return (double)sb->len / (t1 - t0);
}

/*
 * Baselines run their peer in a thread: a forked peer would share the
 * benchmark's big buffers copy-on-write and charge page faults to the
 * plain copy.
 */
struct peer {
    int fd;
    uint64_t bytes; /* writer: bytes to send; 0: echo 16-byte messages */
};

static void *
peer_main(void *arg)
{
    struct peer *p = arg;
    static uint8_t blk[1 << 20];
    char b[16];

    if (p->bytes == 0) {
        while (recv(p->fd, b, sizeof(b), MSG_WAITALL) == (ssize_t)sizeof(b)) {
            if (write(p->fd, b, sizeof(b)) != (ssize_t)sizeof(b)) {
                break;
            }
        }
        return NULL;
    }
    memset(blk, 0x5a, sizeof(blk));
    while (p->bytes > 0) {
        size_t n = p->bytes < sizeof(blk) ? (size_t)p->bytes : sizeof(blk);
        ssize_t w = write(p->fd, blk, n);

        if (w <= 0) {
            break;
        }
        p->bytes -= (uint64_t)w;
    }
    return NULL;
}

/* Bytes/s of a plain socketpair copy in 1 MiB writes. */
static double
socket_rate(uint64_t bytes, struct sinkbuf *sb)
{
    struct peer p;
    pthread_t th;
    double t0, t1;
    int sv[2];
    int sz = 4 << 20;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        return -1;
    }
    (void)setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    (void)setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    p.fd = sv[1];
    p.bytes = bytes;
    sb->len = 0;
    t0 = now();
    if (pthread_create(&th, NULL, peer_main, &p) != 0) {
        return -1;
    }
    while (sb->len < bytes) {
        ssize_t r = read(sv[0], sb->p + sb->len, sb->cap - sb->len);

        if (r <= 0) {
            break;
        }
        sb->len += (size_t)r;
    }
    t1 = now();
    pthread_join(th, NULL);
    close(sv[0]);
    close(sv[1]);
    return (double)bytes / (t1 - t0);
}

/* Round trips per second of a raw 16-byte ping-pong. */
static double
pingpong_rate(int n)
{
    struct peer p = {0};
    pthread_t th;
    double t0, t1;
    char b[16] = {0};
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        return -1;
    }
    p.fd = sv[1];
    if (pthread_create(&th, NULL, peer_main, &p) != 0) {
        return -1;
    }
    t0 = now();
    for (int i = 0; i < n; i++) {
        if (write(sv[0], b, sizeof(b)) != (ssize_t)sizeof(b) ||
            recv(sv[0], b, sizeof(b), MSG_WAITALL) != (ssize_t)sizeof(b)) {
            break;
        }
    }
    t1 = now();
    shutdown(sv[0], SHUT_RDWR);
    pthread_join(th, NULL);
    close(sv[0]);
    close(sv[1]);
    return n / (t1 - t0);
}

int
main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atoi(argv[1]) : 64;
    int trips = argc > 2 ? atoi(argv[2]) : 20000;
    char dir[] = "/tmp/vmig-bench-XXXXXX";
    char path[128];
    struct vmig_vfu_client *plain = NULL, *bulk = NULL;
    struct sinkbuf sb;
    uint64_t nb = 0, nb2 = 0;
    double r_msg, r_small, r_bulk, r_sock, r_get, r_ping, t0;
    vmig_ctx_t *ctx;
    enum vmig_state st;
    pid_t pid;
    int rc = 1;

    signal(SIGPIPE, SIG_IGN);
    if (mib == 0 || trips <= 0 || mkdtemp(dir) == NULL) {
        return 2;
    }
    snprintf(path, sizeof(path), "%s/dev.sock", dir);
    if (vmig_ctx_new("bench", NULL, NULL, &ctx) < 0) {
        return 1;
    }
    pid = testdev_spawn(path, 1, mib << 20);
    if (pid <= 0) {
        return 1;
    }
    sb.cap = (mib << 20) + (8u << 20);
    sb.p = malloc(sb.cap);
    if (sb.p == NULL) {
        goto out;
    }
    memset(sb.p, 0, sb.cap);
    for (int i = 0; i < 100; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};

        if (vmig_vfu_client_connect(ctx, path, 0, &plain) == 0) {
            break;
        }
        nanosleep(&ts, NULL);
    }
    if (plain == NULL) {
        goto out;
    }
    vmig_vfu_client_free(plain);
    plain = NULL;
    /*
     * Best of REPS rounds for every figure; each round runs every
     * variant once, so all of them see the same background load (the
     * machine is shared).  The server takes one client at a time, so
     * each round connects the plain client, then the bulk one.
     */
    r_msg = r_small = r_get = r_bulk = r_sock = r_ping = 0;
    for (int rep = 0; rep < REPS; rep++) {
        double r;

        if (vmig_vfu_client_connect(ctx, path, 0, &plain) < 0) {
            goto out;
        }
        r = save_rate(plain, &sb, &nb);
        r_msg = r > r_msg ? r : r_msg;
        r = read_rate(plain, &sb, 64 << 10);
        r_small = r > r_small ? r : r_small;
        t0 = now();
        for (int i = 0; i < trips; i++) {
            if (vmig_vfu_client_get_state(plain, &st) < 0) {
                goto out;
            }
        }
        r = trips / (now() - t0);
        r_get = r > r_get ? r : r_get;
        vmig_vfu_client_free(plain);
        plain = NULL;

        if (vmig_vfu_client_connect(ctx, path, VMIG_VFU_EXT_BULK_DATA, &bulk) <
            0) {
            goto out;
        }
        r = save_rate(bulk, &sb, &nb2);
        r_bulk = r > r_bulk ? r : r_bulk;
        vmig_vfu_client_free(bulk);
        bulk = NULL;

        r = socket_rate(nb, &sb);
        r_sock = r > r_sock ? r : r_sock;
        r = pingpong_rate(trips);
        r_ping = r > r_ping ? r : r_ping;
    }
    if (r_msg <= 0 || r_small <= 0 || r_bulk <= 0 || r_sock <= 0 ||
        r_ping <= 0) {
        goto out;
    }
    printf("device state: %zu MiB (%llu stream bytes)\n", mib,
           (unsigned long long)nb);
    printf("%-40s %10.0f MiB/s  ratio %.2f\n", "plain socket copy (baseline)",
           r_sock / (1 << 20), 1.0);
    printf("%-40s %10.0f MiB/s  ratio %.2f\n", "MIG_DATA_READ messages (1 MiB)",
           r_msg / (1 << 20), r_msg / r_sock);
    printf("%-40s %10.0f MiB/s  ratio %.2f\n",
           "MIG_DATA_READ messages (64 KiB)", r_small / (1 << 20),
           r_small / r_sock);
    printf("%-40s %10.0f MiB/s  ratio %.2f\n", "bulk channel (x-vmig)",
           r_bulk / (1 << 20), r_bulk / r_sock);
    printf("%-40s %10.0f /s     ratio %.2f\n",
           "raw 16-byte ping-pong (baseline)", r_ping, 1.0);
    printf("%-40s %10.0f /s     ratio %.2f\n", "GET state round trip", r_get,
           r_get / r_ping);
    rc = 0;
out:
    vmig_vfu_client_free(plain);
    vmig_vfu_client_free(bulk);
    (void)testdev_stop(pid);
    free(sb.p);
    vmig_ctx_free(ctx);
    (void)rmdir(dir);
    return rc;
}
