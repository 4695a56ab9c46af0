/* SPDX-License-Identifier: MIT */
/*
 * test_tls_migrate.c - migrations through the engine over TLS channels
 * (<vmig/tls.h>): x509, PSK and kernel TLS landing byte-identical, a byte
 * flipped on the wire caught by TLS, and frames sent without a checksum
 * inside TLS (the record layer makes it redundant).  Credentials and
 * handshakes: tls_fixture.c.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <xxhash.h>
#include <vmig/engine.h>
#include <vmig_testkit/memdev.h>
#include <vmig/migproto.h>
#include <vmig/tls.h>
#include "../loopback.h"
#include "tls_fixture.h"
#include "chan_priv.h"
#include "tls_priv.h"

/* ------------------------------------------------------------ migration */

#define RAM_SIZE (16u << 20)
#define DEV_STATE (1u << 20)

struct tvm {
    uint8_t *ram;
    struct vmig_memdev *dev;
    struct vmig_engine *eng;
    int resumes;
};

static int
t_pause(void *o)
{
    (void)o;
    return 0;
}

static int
t_resume(void *o)
{
    ((struct tvm *)o)->resumes++;
    return 0;
}

static const struct vmig_engine_vm_ops t_ops = {
    .vcpu_pause = t_pause,
    .vcpu_resume = t_resume,
};

static struct tvm *
tvm_new(bool fill, uint64_t seed)
{
    struct tvm *vm = calloc(1, sizeof(*vm));
    struct vmig_memdev_params mp = {.state_size = DEV_STATE,
                                    .flags = VMIG_MIGRATION_STOP_COPY |
                                             VMIG_MIGRATION_P2P,
                                    .seed = seed,
                                    .revision = 1};
    struct vmig_engine_region rg = {.name = "ram0", .size = RAM_SIZE};

    assert_non_null(vm);
    vm->ram = calloc(1, RAM_SIZE);
    assert_non_null(vm->ram);
    if (fill) {
        for (size_t i = 0; i < RAM_SIZE / 8; i++) {
            ((uint64_t *)vm->ram)[i] = XXH64(&i, sizeof(i), seed);
        }
    }
    rg.host = vm->ram;
    assert_int_equal(vmig_memdev_new(ctx, &mp, &vm->dev), 0);
    if (fill) {
        assert_int_equal(vmig_memdev_work(vm->dev, 50), 0);
    }
    assert_int_equal(vmig_engine_new(ctx, &rg, 1, &t_ops, vm, &vm->eng), 0);
    assert_int_equal(
        vmig_engine_add_device(vm->eng, "dev0", vmig_memdev_ops(), vm->dev), 0);
    return vm;
}

static void
tvm_free(struct tvm *vm)
{
    vmig_engine_free(vm->eng);
    vmig_memdev_free(vm->dev);
    free(vm->ram);
    free(vm);
}

struct dst_job {
    struct end e;
    struct tvm *vm;
    int lfd;
    int mret;
};

static void *
dst_main(void *arg)
{
    struct dst_job *j = arg;

    j->e.fd = accept(j->lfd, NULL, NULL);
    j->e.ret = vmig_tls_handshake(j->e.t, j->e.fd, 10000, NULL, &j->e.ch,
                                  j->e.why, sizeof(j->e.why));
    j->mret = j->e.ret == 0 ? vmig_engine_incoming_chan(j->vm->eng, j->e.ch)
                            : j->e.ret;
    return NULL;
}

/* Forward bytes both ways; flip one byte of the main direction at @flip. */
struct proxy {
    int lfd;
    int port;
    size_t flip;
};

static void *
proxy_main(void *arg)
{
    struct proxy *px = arg;
    int a = accept(px->lfd, NULL, NULL), b = lb_connect(px->port);
    size_t seen = 0;
    uint8_t buf[65536];

    while (a >= 0 && b >= 0) {
        struct pollfd pfd[2] = {{.fd = a, .events = POLLIN},
                                {.fd = b, .events = POLLIN}};

        if (poll(pfd, 2, 5000) <= 0) {
            break;
        }
        if (pfd[0].revents) {
            ssize_t n = read(a, buf, sizeof(buf));

            if (n <= 0) {
                break;
            }
            if (px->flip >= seen && px->flip < seen + (size_t)n) {
                buf[px->flip - seen] ^= 0x40;
            }
            seen += (size_t)n;
            if (write(b, buf, (size_t)n) != n) {
                break;
            }
        }
        if (pfd[1].revents) {
            ssize_t n = read(b, buf, sizeof(buf));

            if (n <= 0 || write(a, buf, (size_t)n) != n) {
                break;
            }
        }
    }
    if (a >= 0) {
        close(a);
    }
    if (b >= 0) {
        close(b);
    }
    return NULL;
}

static bool want_ktls; /* ask for kernel TLS (falls back without it) */

static int
tls_migrate(struct tvm *src, struct tvm *dst, const char *creds, bool psk,
            struct proxy *px, int *dret)
{
    struct dst_job j = {.vm = dst};
    struct end c = {0};
    pthread_t th, pth;
    int port, ret;

    if (psk) {
        j.e.p.psk_file = creds;
        c.p.psk_file = creds;
    } else {
        j.e.p.x509_dir = creds;
        c.p.x509_dir = creds;
        c.p.hostname = "localhost";
    }
    j.e.p.endpoint = VMIG_TLS_SERVER;
    c.p.endpoint = VMIG_TLS_CLIENT;
    j.e.p.ktls = want_ktls;
    c.p.ktls = want_ktls;
    load(&j.e);
    load(&c);
    j.lfd = lb_listen(&port);
    assert_int_equal(pthread_create(&th, NULL, dst_main, &j), 0);
    if (px != NULL) {
        px->port = port;
        px->lfd = lb_listen(&port);
        assert_int_equal(pthread_create(&pth, NULL, proxy_main, px), 0);
    }
    c.fd = lb_connect(port);
    ret =
        vmig_tls_handshake(c.t, c.fd, 10000, NULL, &c.ch, c.why, sizeof(c.why));
    if (ret == 0) {
        ret = vmig_engine_migrate_chan(src->eng, c.ch);
    }
    end_free(&c);
    pthread_join(th, NULL);
    if (px != NULL) {
        pthread_join(pth, NULL);
        close(px->lfd);
    }
    *dret = j.mret;
    end_free(&j.e);
    close(j.lfd);
    return ret;
}

static void
check_migration(bool psk)
{
    struct tvm *a = tvm_new(true, 5), *b = tvm_new(false, 9);
    struct vmig_engine_stats st;
    int dret;

    assert_int_equal(tls_migrate(a, b,
                                 psk ? path("good/keys.psk") : path("good"),
                                 psk, NULL, &dret),
                     0);
    assert_int_equal(dret, 0);
    assert_memory_equal(a->ram, b->ram, RAM_SIZE);
    assert_true(vmig_memdev_digest(a->dev) == vmig_memdev_digest(b->dev));
    assert_int_equal(b->resumes, 1);
    vmig_engine_stats(a->eng, &st);
    assert_int_equal(st.status, VMIG_ENGINE_COMPLETED);
    tvm_free(a);
    tvm_free(b);
}

static void
test_migrate_x509(void **state)
{
    (void)state;
    check_migration(false);
}

static void
test_migrate_psk(void **state)
{
    (void)state;
    check_migration(true);
}

/*
 * Asking for kernel TLS: the session writes straight to the socket (no
 * buffer above it, as kTLS needs) and lands the same, offloaded or not.
 */
static void
test_migrate_ktls(void **state)
{
    (void)state;
    want_ktls = true;
    check_migration(false);
    want_ktls = false;
}

/* A byte changed on the wire fails TLS (not our checksum); no resume. */
static void
test_tampered(void **state)
{
    struct tvm *a = tvm_new(true, 5), *b = tvm_new(false, 9);
    struct proxy px = {.flip = 8u << 20};
    int ret, dret;

    (void)state;
    ret = tls_migrate(a, b, path("good"), false, &px, &dret);
    assert_true(ret < 0);
    assert_true(dret < 0);
    assert_int_equal(b->resumes, 0);
    assert_int_equal(a->resumes, 1); /* the source took its VM back */
    assert_int_equal(vmig_memdev_state(a->dev), VMIG_STATE_RUNNING);
    tvm_free(a);
    tvm_free(b);
}

/*
 * Inside TLS a frame's checksum field is zero (the record layer
 * authenticates every byte), the rest of its header is as in plaintext,
 * and a receiver on a TLS channel accepts such frames.
 */
static void
test_frames_unhashed(void **state)
{
    static const uint8_t payload[] = "state bytes";
    struct end s = {.p.x509_dir = path("good")};
    struct end c = {.p.x509_dir = path("good"), .p.hostname = "localhost"};
    struct vmig_mp_conn *cc, *sc;
    struct vmig_mp_frame f;
    uint8_t raw[VMIG_MP_HDR_LEN + sizeof(payload)];
    uint64_t got = 0;

    (void)state;
    pair(&s, &c);
    assert_int_equal(c.ret, 0);
    assert_int_equal(s.ret, 0);
    assert_int_equal(vmig_mp_conn_new_chan(ctx, c.ch, &cc), 0);
    assert_int_equal(vmig_mp_conn_new_chan(ctx, s.ch, &sc), 0);
    vmig_mp_conn_set_timeout(cc, 10000);
    vmig_mp_conn_set_timeout(sc, 10000);
    /* a TLS receiver accepts the frame as it is */
    assert_int_equal(
        vmig_mp_send1(cc, VMIG_MP_DEV_DATA, 0, payload, sizeof(payload)), 0);
    assert_int_equal(vmig_mp_recv(sc, &f), 0);
    assert_int_equal(f.hdr.len, sizeof(payload));
    assert_int_equal(f.hdr.csum, 0);
    assert_memory_equal(f.payload, payload, sizeof(payload));
    /* the next frame as it travels inside the session */
    assert_int_equal(
        vmig_mp_send1(cc, VMIG_MP_DEV_DATA, 0, payload, sizeof(payload)), 0);
    assert_int_equal(
        vmig__chan_read_all(s.ch, raw, sizeof(raw), 10000, NULL, &got), 0);
    assert_memory_equal(raw, "vmfr", 4); /* the frame magic */
    assert_int_equal(raw[4], VMIG_MP_DEV_DATA);
    assert_int_equal(raw[8], sizeof(payload));
    assert_int_equal(raw[12], 1); /* sequence number */
    for (int i = 16; i < 24; i++) {
        assert_int_equal(raw[i], 0); /* no checksum inside TLS */
    }
    assert_memory_equal(raw + VMIG_MP_HDR_LEN, payload, sizeof(payload));
    vmig_mp_conn_free(cc);
    vmig_mp_conn_free(sc);
    end_free(&s);
    end_free(&c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_x509),
        cmocka_unit_test(test_migrate_psk),
        cmocka_unit_test(test_migrate_ktls),
        cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_frames_unhashed),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
