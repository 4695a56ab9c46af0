/* SPDX-License-Identifier: MIT */
/*
 * test_engine_wire.c - the engines' bytes on the wire do not change.
 *
 * A fixed VM (two RAM regions: 16 KiB of patterned pages and 64 KiB of
 * zeros; one memdev with 10 units of work and its config space set; a
 * vCPU state blob) is migrated stop-and-copy from a source engine to a
 * destination engine through a relay that records both directions.  The
 * recordings must equal tests/data/migstream-src-v1.bin (main direction)
 * and tests/data/migstream-ret-v1.bin (return path) frame by frame.  Only
 * clock readings may differ: SWITCHOVER's pause time, CONFIRM's resume
 * time and duration, and with them those frames' checksums.
 *
 * test_golden.c proves a destination still loads an old stream; this
 * proves the engines still write the same one.  After a deliberate
 * format change (a new protocol version), regenerate the files with
 * VMIG_WIRE_RECORD=1 and say why in the commit.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <vmig/engine.h>
#include <vmig_testkit/memdev.h>

#define RAM0 (16u << 10)
#define RAM1 (64u << 10)
#define REC_MAX (1u << 20)
#define VCPU_LEN 300

static int
nop(void *o)
{
    (void)o;
    return 0;
}

static ssize_t
vcpu_save(void *o, void *buf, size_t cap)
{
    (void)o;
    if (cap < VCPU_LEN) {
        return -E2BIG;
    }
    for (unsigned int i = 0; i < VCPU_LEN; i++) {
        ((uint8_t *)buf)[i] = (uint8_t)(i ^ 0xa5);
    }
    return VCPU_LEN;
}

static int
vcpu_load(void *o, const void *buf, size_t len)
{
    (void)o;
    return len == VCPU_LEN && ((const uint8_t *)buf)[1] == (1 ^ 0xa5) ? 0
                                                                      : -EINVAL;
}

static const struct vmig_engine_vm_ops ops = {.vcpu_pause = nop,
                                              .vcpu_resume = nop,
                                              .vcpu_save = vcpu_save,
                                              .vcpu_load = vcpu_load};

/* Forwards both directions between @a (source) and @b (destination) and
 * records each, until both sides closed. */
struct relay {
    int a, b;
    uint8_t *rec[2];
    size_t len[2];
    pthread_t th;
};

static void *
relay_main(void *arg)
{
    struct relay *r = arg;
    bool open[2] = {true, true};
    static uint8_t buf[1 << 16];

    while (open[0] || open[1]) {
        struct pollfd p[2] = {{.fd = open[0] ? r->a : -1, .events = POLLIN},
                              {.fd = open[1] ? r->b : -1, .events = POLLIN}};

        if (poll(p, 2, 10000) <= 0) {
            break;
        }
        for (int i = 0; i < 2; i++) {
            int from = i == 0 ? r->a : r->b, to = i == 0 ? r->b : r->a;
            ssize_t n;

            if (p[i].revents == 0) {
                continue;
            }
            n = read(from, buf, sizeof(buf));
            if (n <= 0) {
                shutdown(to, SHUT_WR);
                open[i] = false;
                continue;
            }
            if (r->len[i] + (size_t)n <= REC_MAX) {
                memcpy(r->rec[i] + r->len[i], buf, (size_t)n);
                r->len[i] += (size_t)n;
            }
            if (write(to, buf, (size_t)n) != n) {
                return NULL;
            }
        }
    }
    return NULL;
}

struct side {
    uint8_t *ram;
    struct vmig_memdev *dev;
    struct vmig_engine *eng;
};

static void
side_new(struct side *s, bool source)
{
    struct vmig_memdev_params p = {.state_size = 4096,
                                   .flags = VMIG_MIGRATION_STOP_COPY,
                                   .seed = 1,
                                   .revision = 1};
    /* the recorded streams are of the protocol without the commit feature */
    struct vmig_engine_params ep = {.timeout_ms = 5000, .no_commit = true};
    uint8_t cfg[VMIG_MEMDEV_CONFIG_SIZE];
    struct vmig_engine_region rg[2] = {{.name = "ram0", .size = RAM0},
                                       {.name = "ram1", .size = RAM1}};

    s->ram = calloc(1, RAM0 + RAM1);
    assert_non_null(s->ram);
    rg[0].host = s->ram;
    rg[1].host = s->ram + RAM0;
    assert_int_equal(vmig_engine_new(NULL, rg, 2, &ops, NULL, &s->eng), 0);
    vmig_engine_set_params(s->eng, &ep);
    assert_int_equal(vmig_memdev_new(NULL, &p, &s->dev), 0);
    assert_int_equal(
        vmig_engine_add_device(s->eng, "dev0", vmig_memdev_ops(), s->dev), 0);
    if (source) {
        for (unsigned int i = 0; i < RAM0; i++) {
            s->ram[i] = (uint8_t)(i * 31 + 7);
        }
        assert_int_equal(vmig_memdev_work(s->dev, 10), 0);
        memset(cfg, 0xc3, sizeof(cfg));
        vmig_memdev_config(s->dev, NULL, cfg);
    }
}

static void
side_free(struct side *s)
{
    vmig_engine_free(s->eng);
    vmig_memdev_free(s->dev);
    free(s->ram);
}

struct dst_job {
    struct side *s;
    int fd;
    int ret;
};

static void *
dst_main(void *arg)
{
    struct dst_job *j = arg;

    j->ret = vmig_engine_incoming(j->s->eng, j->fd);
    return NULL;
}

static uint32_t
le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/*
 * Compare a recording with the file @name frame by frame.  In a frame of
 * type @clock_type the payload bytes [@clock_off, @clock_off + @clock_len)
 * are a clock reading: skipped, and so is that frame's checksum.
 */
static void
compare(const uint8_t *rec, size_t len, const char *name,
        unsigned int clock_type, size_t clock_off, size_t clock_len)
{
    char path[512];
    FILE *f;
    uint8_t *want = malloc(REC_MAX);
    size_t wlen, off;
    unsigned int frames = 0;
    bool saw_clock = false;

    assert_non_null(want);
    snprintf(path, sizeof(path), "%s/%s", VMIG_TEST_DATA, name);
    if (getenv("VMIG_WIRE_RECORD") != NULL) {
        f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(rec, 1, len, f), len);
        fclose(f);
    }
    f = fopen(path, "rb");
    assert_non_null(f);
    wlen = fread(want, 1, REC_MAX, f);
    fclose(f);
    assert_int_equal(len, wlen);
    assert_memory_equal(rec, want, 8); /* the preamble */
    for (off = 8; off + 24 <= wlen; frames++) {
        unsigned int type = want[off + 4] | (unsigned int)want[off + 5] << 8;
        uint32_t plen = le32(want + off + 8);
        const uint8_t *a = rec + off + 24, *b = want + off + 24;

        assert_true(off + 24 + plen <= wlen);
        if (type == clock_type) {
            saw_clock = true;
            assert_memory_equal(rec + off, want + off, 16);
            assert_memory_equal(a, b, clock_off);
            assert_memory_equal(a + clock_off + clock_len,
                                b + clock_off + clock_len,
                                plen - clock_off - clock_len);
        } else {
            assert_memory_equal(rec + off, want + off, 24 + plen);
        }
        off += 24 + plen;
    }
    assert_int_equal(off, wlen);
    assert_true(saw_clock);
    assert_true(frames >= 3);
    free(want);
}

static void
test_wire_unchanged(void **state)
{
    struct side src, dst;
    struct relay r = {0};
    struct dst_job j;
    pthread_t dth;
    int s1[2], s2[2];

    (void)state;
    side_new(&src, true);
    side_new(&dst, false);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, s1), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, s2), 0);
    r.a = s1[1];
    r.b = s2[0];
    r.rec[0] = malloc(REC_MAX);
    r.rec[1] = malloc(REC_MAX);
    assert_non_null(r.rec[0]);
    assert_non_null(r.rec[1]);
    j = (struct dst_job){.s = &dst, .fd = s2[1]};
    assert_int_equal(pthread_create(&r.th, NULL, relay_main, &r), 0);
    assert_int_equal(pthread_create(&dth, NULL, dst_main, &j), 0);
    assert_int_equal(vmig_engine_migrate(src.eng, s1[0]), 0);
    pthread_join(dth, NULL);
    assert_int_equal(j.ret, 0);
    shutdown(s1[0], SHUT_RDWR);
    shutdown(s2[1], SHUT_RDWR);
    pthread_join(r.th, NULL);
    /* the migration itself worked */
    assert_memory_equal(src.ram, dst.ram, RAM0 + RAM1);
    assert_true(vmig_memdev_digest(src.dev) == vmig_memdev_digest(dst.dev));

    /* SWITCHOVER: u64 RAM, u32 devices, u32 flags, u64 pause time, ... */
    compare(r.rec[0], r.len[0], "migstream-src-v1.bin", 0x09, 16, 8);
    /* CONFIRM: u64 resume time, u64 switchover -> resume ns, ... */
    compare(r.rec[1], r.len[1], "migstream-ret-v1.bin", 0x85, 0, 16);
    free(r.rec[0]);
    free(r.rec[1]);
    close(s1[0]);
    close(s1[1]);
    close(s2[0]);
    close(s2[1]);
    side_free(&src);
    side_free(&dst);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_unchanged),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
