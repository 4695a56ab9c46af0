/* SPDX-License-Identifier: MIT */
/*
 * test_acc_model_state.c - the accelerator model's migration payload: a
 * round trip to a matching destination, and the refusals (version 1,
 * queue-pair count, isolation, truncation, corruption) with the
 * destination left untouched; golden streams of earlier builds still load.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include "acc_model_fixture.h"
#include "acc_rig.h"

/* ------------------------------------------------------------ migration */

static uint8_t *
save(struct acc_model *m, size_t *len)
{
    size_t cap = acc_model_state_size(m);
    uint8_t *buf = malloc(cap);

    assert_non_null(buf);
    assert_int_equal(acc_model_save(m, buf, cap, len), 0);
    assert_int_equal(*len, cap);
    return buf;
}

static void
put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void
reseal(uint8_t *p, size_t len)
{
    put32(p + len - 4, acc_crc32c(0, p, len - 4));
}

/*
 * The test-only version 1 writer: the v2 layout with the stream version
 * byte 1 and the EQ/AEQ base addresses' 32-bit halves swapped, as the
 * buggy writer stored them.
 */
static void
make_v1(uint8_t *p, size_t len)
{
    static const unsigned int offs[] = {ACC_STATE_EQ_BASE_OFF,
                                        ACC_STATE_AEQ_BASE_OFF};

    p[0] = 1;
    for (unsigned int i = 0; i < 2; i++) {
        uint8_t t[4];

        memcpy(t, p + offs[i], 4);
        memmove(p + offs[i], p + offs[i] + 4, 4);
        memcpy(p + offs[i] + 4, t, 4);
    }
    reseal(p, len);
}

/* A stopped destination with some state of its own, and its bytes. */
struct dest {
    struct acc_model *m;
    uint8_t *snap;
    size_t len;
};

static void
dest_new(struct acc_rig *r, uint32_t qps, uint32_t iso, struct dest *d)
{
    assert_int_equal(acc_rig_new_model(r, qps, iso, &d->m), 0);
    acc_model_mmio_write(d->m, ACC_REG_EQ_BASE_LO, 0xabc000);
    acc_model_mmio_write(d->m, ACC_REG_EQ_SIZE, 4);
    acc_model_mmio_write(d->m, ACC_REG_IRQ_MASK, 1);
    acc_model_stop(d->m);
    d->snap = save(d->m, &d->len);
}

static void
dest_assert_untouched(struct dest *d)
{
    size_t len;
    uint8_t *now = save(d->m, &len);

    assert_int_equal(len, d->len);
    assert_memory_equal(now, d->snap, len);
    free(now);
}

static void
dest_free(struct dest *d)
{
    acc_model_free(d->m);
    free(d->snap);
}

static int
load(struct dest *d, const uint8_t *p, size_t len, char *why, size_t sz)
{
    why[0] = '\0';
    return acc_model_load(d->m, p, len, why, sz);
}

static void
test_state_roundtrip_and_match(void **state)
{
    struct acc_rig *r = *state;
    struct acc_match_info a, b;
    struct dest d;
    uint8_t *p, *q;
    size_t len, len2;
    char why[256];

    /* Not while running. */
    assert_int_equal(acc_model_save(r->m, why, sizeof(why), &len), -EBUSY);
    acc_model_stop(r->m);
    p = save(r->m, &len);
    assert_int_equal(len, ACC_STATE_SIZE(QPS));
    dest_new(r, QPS, ACC_ISO_QP, &d);
    assert_int_equal(load(&d, p, len, why, sizeof(why)), 0);
    q = save(d.m, &len2);
    assert_int_equal(len2, len);
    assert_memory_equal(p, q, len); /* bit-exact */
    free(q);

    /* Loading into a running device is refused. */
    acc_model_resume(d.m);
    assert_int_equal(load(&d, p, len, why, sizeof(why)), -EBUSY);
    assert_non_null(strstr(why, "running"));

    acc_model_match_info(d.m, &a);
    assert_int_equal(acc_state_peek(p, len, &b, why, sizeof(why)), 0);
    assert_int_equal(acc_check_match(&a, &b, why, sizeof(why)), 0);
    b.device ^= 1;
    assert_int_equal(acc_check_match(&a, &b, why, sizeof(why)), -EOPNOTSUPP);
    assert_non_null(strstr(why, "cannot load state of device"));
    b.device ^= 1;
    b.version = 3;
    assert_int_equal(acc_check_match(&a, &b, why, sizeof(why)), -EOPNOTSUPP);
    assert_non_null(strstr(why, "stream version 3 is not supported"));
    free(p);
    dest_free(&d);
}

static void
test_refuse_v1(void **state)
{
    struct acc_rig *r = *state;
    struct dest d;
    size_t len;
    uint8_t *p;
    char why[256];

    acc_model_stop(r->m);
    p = save(r->m, &len);
    dest_new(r, QPS, ACC_ISO_QP, &d);
    /* The v2 stream loads ... */
    assert_int_equal(load(&d, p, len, why, sizeof(why)), 0);
    free(d.snap);
    d.snap = save(d.m, &d.len);
    /* ... and the same state written by the v1 writer does not. */
    make_v1(p, len);
    assert_int_equal(p[ACC_STATE_EQ_BASE_OFF + 4], (uint8_t)r->drv.st->eq_gpa);
    assert_int_equal(load(&d, p, len, why, sizeof(why)), -EOPNOTSUPP);
    assert_string_equal(why, "stream version 1 is known bad: EQ/AEQ "
                             "addresses saved wrongly; refusing");
    dest_assert_untouched(&d);
    free(p);
    dest_free(&d);
}

/* A destination unlike the source: refused with the exact reason, the
 * destination untouched. */
static void
test_refuse_mismatch(void **state)
{
    static const struct {
        uint32_t qps, iso;
        const char *why;
    } cases[] = {
        {QPS + 1, ACC_ISO_QP,
         "queue-pair count mismatch: source has 2, this device has 3"},
        {QPS, ACC_ISO_DEVICE,
         "isolation mode mismatch: source is queue-pair (1), this device is "
         "device (0)"},
    };
    struct acc_rig *r = *state;
    size_t len;
    uint8_t *p;
    char why[256];

    acc_model_stop(r->m);
    p = save(r->m, &len);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dest d;

        dest_new(r, cases[i].qps, cases[i].iso, &d);
        assert_int_equal(load(&d, p, len, why, sizeof(why)), -EINVAL);
        assert_string_equal(why, cases[i].why);
        dest_assert_untouched(&d);
        dest_free(&d);
    }
    free(p);
}

/*
 * Damage to a good payload at @off: the 32-bit field set to @val, the
 * byte set to @val, or the byte XOR'ed with @val; resealed (a fresh CRC)
 * when @reseal, so the field's own check must catch it.  Loading gives
 * @err and a message containing @why.
 */
enum damage_op { PUT32, SET8, FLIP8 };

struct damage {
    size_t off;
    enum damage_op op;
    uint32_t val;
    bool reseal;
    int err;
    const char *why;
};

static const struct damage damages[] = {
    /* inconsistent but correctly sealed: each field is validated */
    {ACC_STATE_QP_OFF + 32, PUT32, 16, true, -EBADMSG, /* sq_head == size */
     "qp 0 SQ size 16 head 16"},
    {ACC_STATE_GLOBAL_OFF + 32, PUT32, 12, true, -EBADMSG, /* not 2^n */
     "EQ size 12"},
    {ACC_STATE_GLOBAL_OFF + 0, PUT32, 0x80, true, -EBADMSG,
     "unknown bits in ctrl 0x80"},
    {16, PUT32, 17, true, -EBADMSG, /* in a 2-pair payload */
     "cannot hold 17 queue pairs"},
    {0, SET8, 3, true, -EOPNOTSUPP, "stream version 3"}, /* a future one */
    /* not resealed: the CRC does not hide it */
    {7, FLIP8, 0x40, false, -EBADMSG, "not accelerator state"}, /* magic */
};

static void
test_refuse_truncated_and_corrupt(void **state)
{
    struct acc_rig *r = *state;
    struct dest d;
    size_t len;
    uint8_t *p, *c;
    char why[256];
    unsigned int refused = 0;

    acc_model_stop(r->m);
    p = save(r->m, &len);
    c = malloc(len + 8);
    assert_non_null(c);
    dest_new(r, QPS, ACC_ISO_QP, &d);

    for (size_t n = 0; n < len; n++) {
        assert_int_equal(load(&d, p, n, why, sizeof(why)), -EBADMSG);
        assert_true(strstr(why, "truncated") != NULL);
        refused++;
    }
    memcpy(c, p, len);
    memset(c + len, 0, 8);
    assert_int_equal(load(&d, c, len + 8, why, sizeof(why)), -EBADMSG);
    assert_non_null(strstr(why, "trailing"));

    /* Every single-bit flip is caught (CRC32C detects them all). */
    for (size_t i = 0; i < len; i++) {
        for (int b = 0; b < 8; b++) {
            int rc;

            memcpy(c, p, len);
            c[i] ^= (uint8_t)(1u << b);
            rc = load(&d, c, len, why, sizeof(why));
            assert_true(rc == -EBADMSG || rc == -EOPNOTSUPP);
            assert_true(why[0] != '\0');
            refused++;
        }
    }

    for (size_t i = 0; i < sizeof(damages) / sizeof(damages[0]); i++) {
        const struct damage *x = &damages[i];

        memcpy(c, p, len);
        if (x->op == PUT32) {
            put32(c + x->off, x->val);
        } else if (x->op == SET8) {
            c[x->off] = (uint8_t)x->val;
        } else {
            c[x->off] ^= (uint8_t)x->val;
        }
        if (x->reseal) {
            reseal(c, len);
        }
        assert_int_equal(load(&d, c, len, why, sizeof(why)), x->err);
        assert_non_null(strstr(why, x->why));
    }

    dest_assert_untouched(&d);
    print_message("refused %u damaged payloads of %zu bytes\n", refused, len);
    free(c);
    free(p);
    dest_free(&d);
}

static uint8_t *
read_golden(const char *name, size_t *len)
{
    char path[512];
    uint8_t *buf = malloc(4096);
    FILE *f;

    assert_non_null(buf);
    snprintf(path, sizeof(path), "%s/%s", VMIG_TEST_DATA, name);
    f = fopen(path, "rb");
    assert_non_null(f);
    *len = fread(buf, 1, 4096, f);
    fclose(f);
    return buf;
}

/*
 * Golden streams, written from docs/acc.md alone (by a script, not by this
 * code): every released version must keep its verdict.
 */
static void
test_golden_streams(void **state)
{
    struct acc_rig *r = *state;
    struct dest d;
    size_t len, len2;
    uint8_t *p = read_golden("acc-state-v2.bin", &len), *q;
    char why[256];

    dest_new(r, QPS, ACC_ISO_QP, &d);
    assert_int_equal(load(&d, p, len, why, sizeof(why)), 0);
    assert_int_equal(acc_model_mmio_read(d.m, ACC_REG_EQ_BASE_LO), 0x2000);
    assert_int_equal(acc_model_mmio_read(d.m, ACC_QP_REG(1, ACC_QP_SQ_TAIL)),
                     12);
    q = save(d.m, &len2);
    assert_int_equal(len2, len);
    assert_memory_equal(p, q, len);
    free(q);
    free(p);
    free(d.snap);
    d.snap = save(d.m, &d.len);

    p = read_golden("acc-state-v1.bin", &len);
    assert_int_equal(load(&d, p, len, why, sizeof(why)), -EOPNOTSUPP);
    assert_string_equal(why, "stream version 1 is known bad: EQ/AEQ "
                             "addresses saved wrongly; refusing");
    dest_assert_untouched(&d);
    free(p);
    dest_free(&d);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_state_roundtrip_and_match, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refuse_v1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_golden_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_truncated_and_corrupt,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
