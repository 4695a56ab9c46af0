/* SPDX-License-Identifier: MIT */
/*
 * bench_tls.c - the same stop-and-copy migration (guest RAM of
 * pseudo-random bytes, no zero pages, and two devices) between two
 * engines over loopback TCP, in plaintext and over TLS 1.3 (x509, AES-GCM),
 * in the same run, with runs interleaved so a busy machine slows every
 * case alike.  A third case asks OpenSSL for kernel TLS offload
 * (SSL_OP_ENABLE_KTLS: the kernel encrypts after the handshake) where the
 * kernel has the "tls" TCP ULP, and says why not otherwise.
 *
 * Prints each case's best throughput and its ratio to plaintext; the
 * target is TLS >= 0.7x plaintext for one stream.  The load average before
 * and after is printed too: on a shared machine the ratio moves with it.
 * No assertions on timing.
 *
 * It also prints the ceiling this machine puts on the ratio.  The source
 * and the destination each run on one thread; over TLS each does all its
 * plaintext work plus AES-GCM over every byte (the source encrypts, the
 * destination decrypts), so a TLS run takes at least
 *   max(source CPU, destination CPU) of the plaintext run + bytes / AES
 * minus the frame checksum (XXH3), which neither side computes over TLS,
 * where AES is the single-core AES-128-GCM speed measured here on 16 KiB
 * records (what `openssl speed -evp aes-128-gcm` reports in its last
 * column).  On a quiet machine, where the plaintext run takes as long as
 * its busier side's CPU, the ratio cannot beat that CPU / the bound; on a
 * busy one the CPU times still give it.
 *
 * usage: bench_tls [RAM_MiB] [DEV_MiB] [RUNS]
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <vmig/engine.h>
#include <vmig_testkit/memdev.h>
#include <vmig/tls.h>
#include <openssl/evp.h>
#include "../tests/loopback.h"
#include "xxh_fast.h"
#include "bench_side.h"

enum mode { PLAIN, TLS, KTLS, NMODES };

static const char *const mode_name[NMODES] = {
    [PLAIN] = "plaintext",
    [TLS] = "TLS 1.3",
    [KTLS] = "TLS 1.3 + kTLS",
};

static double
thread_cpu_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Single-core AES-128-GCM encryption speed on 16 KiB records, bytes/s. */
static double
aes_gcm_speed(void)
{
    static uint8_t in[16384], out[16384 + 16];
    static const uint8_t key[16] = {1}, iv[12] = {2};
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    double t0, t, bytes = 0;
    int n;

    if (c == NULL ||
        EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, key, iv) != 1) {
        exit(1);
    }
    t0 = thread_cpu_s();
    do {
        for (int i = 0; i < 64; i++) {
            if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, iv) != 1 ||
                EVP_EncryptUpdate(c, out, &n, in, sizeof(in)) != 1 ||
                EVP_EncryptFinal_ex(c, out + n, &n) != 1) {
                exit(1);
            }
            bytes += sizeof(in);
        }
        t = thread_cpu_s() - t0;
    } while (t < 0.3);
    EVP_CIPHER_CTX_free(c);
    return bytes / t;
}

/* Single-core XXH3 speed (the frame checksum) on 1 MiB, bytes/s. */
static double
xxh3_speed(void)
{
    static uint8_t in[1 << 20];
    double t0, t, bytes = 0;
    volatile uint64_t sink = 0;

    t0 = thread_cpu_s();
    do {
        for (int i = 0; i < 16; i++) {
            in[0] = (uint8_t)i;
            sink += XXH3_64bits(in, sizeof(in));
            bytes += sizeof(in);
        }
        t = thread_cpu_s() - t0;
    } while (t < 0.2);
    (void)sink;
    return bytes / t;
}

static double
loadavg(void)
{
    double l[1] = {0};

    return getloadavg(l, 1) == 1 ? l[0] : 0;
}

struct dst_job {
    struct side *s;
    struct vmig_tls *tls; /* NULL: plaintext */
    vmig_ctx_t *ctx;
    int lfd;
    int ret;
    double cpu_s; /* the migration's CPU time on this thread */
    struct vmig_chan_info info;
};

static void *
dst_main(void *arg)
{
    struct dst_job *j = arg;
    struct vmig_chan *ch = NULL;
    char why[512];
    int fd = accept(j->lfd, NULL, NULL);

    if (fd < 0) {
        j->ret = -errno;
        return NULL;
    }
    j->ret = j->tls != NULL ? vmig_tls_handshake(j->tls, fd, 30000, NULL, &ch,
                                                 why, sizeof(why))
                            : vmig_chan_plain(j->ctx, fd, &ch);
    if (j->ret == 0) {
        double c0 = thread_cpu_s();

        vmig_chan_info(ch, &j->info);
        j->ret = vmig_engine_incoming_chan(j->s->eng, ch);
        j->cpu_s = thread_cpu_s() - c0;
    } else {
        fprintf(stderr, "bench: destination: %s\n", why);
    }
    vmig_chan_free(ch);
    close(fd);
    return NULL;
}

struct creds {
    struct vmig_tls *srv;
    struct vmig_tls *cli;
};

static void
creds_load(vmig_ctx_t *ctx, const char *dir, bool ktls, struct creds *c)
{
    struct vmig_tls_params sp = {
        .endpoint = VMIG_TLS_SERVER, .x509_dir = dir, .ktls = ktls};
    struct vmig_tls_params cp = {.endpoint = VMIG_TLS_CLIENT,
                                 .x509_dir = dir,
                                 .hostname = "localhost",
                                 .ktls = ktls};
    char err[512];

    if (vmig_tls_new(ctx, &sp, &c->srv, err, sizeof(err)) < 0 ||
        vmig_tls_new(ctx, &cp, &c->cli, err, sizeof(err)) < 0) {
        fprintf(stderr, "bench: credentials: %s\n", err);
        exit(1);
    }
}

/*
 * One migration a -> b in @m; seconds of the engine's migration (the
 * handshake, timed apart, is in *@hs_s); the channel in *@info; the CPU
 * seconds of the source's and the destination's thread in @cpu.
 */
static double
run_one(struct side *a, struct side *b, vmig_ctx_t *ctx, const struct creds *c,
        size_t ram, double *hs_s, struct vmig_chan_info *info, double cpu[2])
{
    struct dst_job j = {.s = b, .tls = c != NULL ? c->srv : NULL, .ctx = ctx};
    struct vmig_chan *ch = NULL;
    char why[512];
    pthread_t th;
    int port, fd, ret;
    double t0, t1, t2, c1;

    j.lfd = lb_listen(&port);
    if (j.lfd < 0 || pthread_create(&th, NULL, dst_main, &j) != 0) {
        exit(1);
    }
    fd = lb_connect(port);
    t0 = bench_now_s();
    ret = c != NULL ? vmig_tls_handshake(c->cli, fd, 30000, NULL, &ch, why,
                                         sizeof(why))
                    : vmig_chan_plain(ctx, fd, &ch);
    t1 = bench_now_s();
    c1 = thread_cpu_s();
    if (ret == 0) {
        vmig_chan_info(ch, info);
        ret = vmig_engine_migrate_chan(a->eng, ch);
    } else {
        fprintf(stderr, "bench: source: %s\n", why);
    }
    t2 = bench_now_s();
    cpu[0] = thread_cpu_s() - c1;
    vmig_chan_free(ch);
    close(fd);
    pthread_join(th, NULL);
    close(j.lfd);
    if (ret < 0 || j.ret < 0 || memcmp(a->ram, b->ram, ram) != 0 ||
        vmig_memdev_digest(a->dev[0]) != vmig_memdev_digest(b->dev[0])) {
        fprintf(stderr, "bench: migration failed (%d/%d) or differs\n", ret,
                j.ret);
        exit(1);
    }
    /* back to RUNNING for the next run; the destination forgets */
    for (int i = 0; i < 2; i++) {
        if (vmig_memdev_ops()->set_state(a->dev[i], VMIG_STATE_RUNNING) < 0) {
            exit(1);
        }
    }
    memset(b->ram, 0, ram);
    cpu[1] = j.cpu_s;
    *hs_s = t1 - t0;
    return t2 - t1;
}

int
main(int argc, char **argv)
{
    size_t ram = (size_t)(argc > 1 ? atol(argv[1]) : 512) << 20;
    size_t dev = (size_t)(argc > 2 ? atol(argv[2]) : 16) << 20;
    int runs = argc > 3 ? atoi(argv[3]) : 5;
    char dir[] = "/tmp/vmig-bench-tls-XXXXXX", err[512], kwhy[256] = "";
    double best[NMODES], hs[NMODES], cpu[NMODES][2], aes;
    struct vmig_chan_info info[NMODES];
    struct creds cr[NMODES];
    struct side a, b;
    vmig_ctx_t *ctx;
    bool ktls_kernel;
    double load0 = loadavg();
    int nmodes;

    if (runs < 1 || ram == 0 || vmig_ctx_new("bench", NULL, NULL, &ctx) < 0 ||
        mkdtemp(dir) == NULL) {
        return 1;
    }
    if (vmig_tls_setup(dir, NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    creds_load(ctx, dir, false, &cr[TLS]);
    creds_load(ctx, dir, true, &cr[KTLS]);
    ktls_kernel = vmig_tls_ktls_available(kwhy, sizeof(kwhy)) == 1;
    nmodes = ktls_kernel ? NMODES : KTLS;
    sides_new(&a, &b, ctx, ram, dev);
    printf("bench_tls: %zu MiB RAM (random) + 2 devices x %zu MiB, "
           "stop-and-copy over loopback TCP, best of %d interleaved runs\n",
           ram >> 20, dev >> 20, runs);
    for (int m = 0; m < NMODES; m++) {
        best[m] = 1e9;
        hs[m] = 0;
        cpu[m][0] = cpu[m][1] = 0;
        memset(&info[m], 0, sizeof(info[m]));
    }
    for (int r = 0; r < runs; r++) {
        for (int m = 0; m < nmodes; m++) {
            double h, c[2];
            double t = run_one(&a, &b, ctx, m == PLAIN ? NULL : &cr[m], ram, &h,
                               &info[m], c);

            printf("  run %d %-15s %.3f s  (CPU: source %.3f s, destination "
                   "%.3f s)\n",
                   r + 1, mode_name[m], t, c[0], c[1]);
            if (t < best[m]) {
                best[m] = t;
                hs[m] = h;
                cpu[m][0] = c[0];
                cpu[m][1] = c[1];
            }
        }
    }
    {
        double bytes = (double)ram + 2.0 * (double)dev;

        printf("%-16s %9.1f MiB/s\n", mode_name[PLAIN],
               bytes / best[PLAIN] / (1 << 20));
        for (int m = TLS; m < nmodes; m++) {
            printf("%-16s %9.1f MiB/s  ratio %.2f x plaintext  (%s, %s%s; "
                   "handshake %.1f ms)\n",
                   mode_name[m], bytes / best[m] / (1 << 20),
                   best[PLAIN] / best[m], info[m].cipher,
                   info[m].ktls_tx ? "kernel encrypts" : "OpenSSL encrypts",
                   info[m].ktls_rx ? ", kernel decrypts" : "", hs[m] * 1e3);
        }
        if (!ktls_kernel) {
            printf("%-16s not measured: %s\n", mode_name[KTLS], kwhy);
        }
        aes = aes_gcm_speed();
        {
            double side =
                cpu[PLAIN][0] > cpu[PLAIN][1] ? cpu[PLAIN][0] : cpu[PLAIN][1];
            double xxh = xxh3_speed();
            double floor_s = side - bytes / xxh + bytes / aes;

            /* over TLS neither side hashes frames (AEAD authenticates) */
            printf("ceiling: one core does AES-128-GCM at %.0f MiB/s, XXH3 at "
                   "%.0f MiB/s; the busier plaintext side used %.3f s of "
                   "CPU, so over TLS it needs >= %.3f s: ratio <= %.2f x "
                   "with each side on a core of its own\n",
                   aes / (1 << 20), xxh / (1 << 20), side, floor_s,
                   side / floor_s);
        }
        printf("target: TLS >= 0.70 x plaintext for one stream; load "
               "average %.1f before, %.1f after (%ld CPUs)\n",
               load0, loadavg(), sysconf(_SC_NPROCESSORS_ONLN));
    }
    side_free(&a);
    side_free(&b);
    for (int m = TLS; m < NMODES; m++) {
        vmig_tls_free(cr[m].srv);
        vmig_tls_free(cr[m].cli);
    }
    {
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "bench: could not remove %s\n", dir);
        }
    }
    vmig_ctx_free(ctx);
    return 0;
}
