/* SPDX-License-Identifier: MIT */
/*
 * test_golden.c - tests/data/migstream-v1.bin is the main direction of a
 * protocol-version-1 migration (preamble, HELLO, SETUP, a RAM page, a
 * zero-page run, RAM_PASS_END, DEV_CONFIG, DEV_DATA, DEV_END, SWITCHOVER)
 * of a VM with 64 KiB of RAM and one memdev.  Every later version of the
 * destination must still accept it and land exactly the same state.
 * A stream from a newer framing version, or with any byte changed, is
 * refused.
 */
#include <errno.h>
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

#define RAM (64u << 10)
#define GOLDEN_DEV_DIGEST 0xceac6910ccdccdaeull

static int resumes;

static int
nop(void *o)
{
    (void)o;
    return 0;
}

static int
resume(void *o)
{
    (void)o;
    resumes++;
    return 0;
}

static const struct vmig_engine_vm_ops ops = {.vcpu_pause = nop,
                                              .vcpu_resume = resume};

static uint8_t *
load(size_t *len)
{
    FILE *f = fopen(VMIG_TEST_DATA "/migstream-v1.bin", "rb");
    uint8_t *buf = malloc(1 << 16);

    assert_non_null(f);
    assert_non_null(buf);
    *len = fread(buf, 1, 1 << 16, f);
    fclose(f);
    assert_true(*len > 1000);
    return buf;
}

/* Feed @stream to a fresh destination; return its result. */
static int
replay(const uint8_t *stream, size_t len, uint8_t *ram,
       struct vmig_memdev **devp)
{
    struct vmig_engine_region rg = {.name = "ram0", .host = ram, .size = RAM};
    struct vmig_memdev_params p = {.state_size = 4096,
                                   .flags = VMIG_MIGRATION_STOP_COPY,
                                   .seed = 1,
                                   .revision = 1};
    struct vmig_engine_params ep = {.timeout_ms = 2000};
    struct vmig_engine *e;
    int sv[2], big = 1 << 20, ret;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    assert_int_equal(write(sv[0], stream, len), (ssize_t)len);
    shutdown(sv[0], SHUT_WR);
    assert_int_equal(vmig_engine_new(NULL, &rg, 1, &ops, NULL, &e), 0);
    vmig_engine_set_params(e, &ep);
    assert_int_equal(vmig_memdev_new(NULL, &p, devp), 0);
    assert_int_equal(
        vmig_engine_add_device(e, "dev0", vmig_memdev_ops(), *devp), 0);
    ret = vmig_engine_incoming(e, sv[1]);
    vmig_engine_free(e);
    close(sv[0]);
    close(sv[1]);
    return ret;
}

static void
test_golden_v1_loads(void **state)
{
    size_t len;
    uint8_t *s = load(&len), *ram = calloc(1, RAM);
    uint8_t cfg[VMIG_MEMDEV_CONFIG_SIZE];
    struct vmig_memdev *dev;

    (void)state;
    memset(ram, 0xee, RAM); /* the zero-page run must clear this */
    resumes = 0;
    assert_int_equal(replay(s, len, ram, &dev), 0);
    assert_int_equal(resumes, 1);
    for (unsigned int i = 0; i < 4096; i++) {
        assert_int_equal(ram[i], (uint8_t)(i * 31 + 7));
    }
    for (unsigned int i = 4096; i < RAM; i++) {
        assert_int_equal(ram[i], 0);
    }
    assert_true(vmig_memdev_digest(dev) == GOLDEN_DEV_DIGEST);
    assert_int_equal(vmig_memdev_work_done(dev), 10);
    assert_int_equal(vmig_memdev_state(dev), VMIG_STATE_RUNNING);
    vmig_memdev_config(dev, cfg, NULL);
    assert_int_equal(cfg[0], 0xc3);
    assert_int_equal(cfg[255], 0xc3);
    vmig_memdev_free(dev);
    free(ram);
    free(s);
}

static void
test_golden_mutations_refused(void **state)
{
    size_t len;
    uint8_t *s = load(&len), *ram = calloc(1, RAM);
    struct vmig_memdev *dev;
    /* framing version, a header byte, a HELLO byte, a RAM data byte, a
     * device data byte, the last byte */
    const size_t at[] = {7, 9, 40, 500, len - 3000, len - 1};

    (void)state;
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        int ret;

        s[at[i]] ^= 0x20;
        resumes = 0;
        ret = replay(s, len, ram, &dev);
        s[at[i]] ^= 0x20;
        assert_true(ret < 0);
        assert_int_equal(resumes, 0);
        assert_int_equal(vmig_memdev_state(dev), VMIG_STATE_RUNNING);
        vmig_memdev_free(dev);
    }
    /* truncated anywhere: refused */
    assert_true(replay(s, len / 2, ram, &dev) < 0);
    vmig_memdev_free(dev);
    free(ram);
    free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_v1_loads),
        cmocka_unit_test(test_golden_mutations_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
