/* SPDX-License-Identifier: MIT */
/*
 * test_flowtab_stream.c - the flowtab device's state stream: hostile
 * streams refused with the destination untouched, and the same stream
 * from a device offering fewer features (STOP_COPY alone, with P2P, with
 * PRE_COPY).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <cmocka.h>
#include <xxhash.h>
#include <vmig/ctx.h>
#include <vmig/device.h>
#include "flowtab_side.h"
#include "flowtab_testlib.h"

/* ------------------------------------------------------ hostile streams */

struct stream {
    uint8_t *buf;
    size_t len;
};

/* A whole stream of a device with traffic (STOP -> STOP_COPY). */
static void
make_stream(struct stream *out, uint64_t state_bytes, uint32_t chunk)
{
    struct side s;

    side_new(&s, state_bytes, chunk, true);
    side_guest(&s, 20);
    traffic(&s, 300);
    set_state(s.dev, S(STOP_COPY));
    assert_int_equal(ft_read_all(s.dev, ft_gen(s.dev), &out->buf, &out->len),
                     0);
    side_free(&s);
}

static void
reseal(uint8_t *rec)
{
    struct ft_rec_hdr h;

    memcpy(&h, rec, sizeof(h));
    h.csum = 0;
    h.csum = XXH3_64bits_withSeed(rec + sizeof(h), h.len,
                                  XXH3_64bits(&h, sizeof(h)));
    memcpy(rec, &h, sizeof(h));
}

/* Offset of the END record (the stream's last). */
static size_t
end_off(const struct stream *st)
{
    return st->len - END_REC;
}

/* Recompute END's digest: XXH3-128 over the CHUNK csums in chunk order
 * (each chunk appears once, in id order, in a STOP->STOP_COPY stream). */
static void
redigest(struct stream *st, uint32_t chunk)
{
    XXH3_state_t *x = XXH3_createState();
    struct ft_rec_end e;
    XXH128_hash_t h;

    XXH3_128bits_reset(x);
    for (size_t off = HDR_REC; off < end_off(st); off += REC(chunk)) {
        struct ft_rec_hdr rh;

        memcpy(&rh, st->buf + off, sizeof(rh));
        XXH3_128bits_update(x, &rh.csum, sizeof(rh.csum));
    }
    h = XXH3_128bits_digest(x);
    XXH3_freeState(x);
    memcpy(&e, st->buf + end_off(st) + sizeof(struct ft_rec_hdr), sizeof(e));
    e.digest_high = h.high64;
    e.digest_low = h.low64;
    memcpy(st->buf + end_off(st) + sizeof(struct ft_rec_hdr), &e, sizeof(e));
    reseal(st->buf + end_off(st));
}

/*
 * Load @buf into a fresh destination that has state of its own; expect the
 * write to return @werr (0: accepted) and RESUMING -> STOP @serr; on any
 * error the destination's state must be what it was.
 */
static void
load_expect(const uint8_t *buf, size_t len, uint64_t state_bytes,
            uint32_t chunk, int werr, int serr)
{
    struct side d;
    uint64_t h0, l0, h1, l1;
    ssize_t w;
    int rc;

    side_new(&d, state_bytes, chunk, true);
    side_guest(&d, 5);
    traffic(&d, 40);
    set_state(d.dev, S(STOP));
    ft_model_digest(d.dev, &h0, &l0);
    set_state(d.dev, S(RESUMING));
    w = ft_write_gen(d.dev, ft_gen(d.dev), buf, len);
    assert_int_equal(w, werr != 0 ? werr : (ssize_t)len);
    rc = vmig_dev_set_state(ft_model_dev(d.dev), S(STOP));
    assert_int_equal(rc, serr);
    ft_model_digest(d.dev, &h1, &l1);
    if (serr != 0) {
        assert_int_equal(vmig_dev_state(ft_model_dev(d.dev)), S(RESUMING));
        assert_true(h0 == h1 && l0 == l1);
    } else {
        assert_false(h0 == h1 && l0 == l1);
    }
    side_free(&d);
}

static void
test_hostile_streams_refused(void **state)
{
    const uint64_t sb = 256u << 10;
    const uint32_t ck = 16u << 10;
    const size_t rec = REC(ck);
    struct stream st;
    uint8_t *b;
    size_t n;
    struct ft_rec_stream_hdr sh;
    uint32_t rs = 3;

    (void)state;
    make_stream(&st, sb, ck);
    n = st.len;
    assert_int_equal(n, HDR_REC + (sb / ck) * rec + END_REC);
    b = malloc(n + rec + 64);
    assert_non_null(b);

    /* the intact stream loads */
    load_expect(st.buf, n, sb, ck, 0, 0);

    /* a flipped payload byte: refused at once, and at validation */
    memcpy(b, st.buf, n);
    b[HDR_REC + 3 * rec + 100] ^= 0x40;
    load_expect(b, n, sb, ck, -EBADMSG, -EBADMSG);
    /* a flipped header byte (chunk id) */
    memcpy(b, st.buf, n);
    b[HDR_REC + rec + 8] ^= 1;
    load_expect(b, n, sb, ck, -EBADMSG, -EBADMSG);

    /* truncated: mid-record, and exactly before END */
    load_expect(st.buf, n - 10, sb, ck, 0, -EBADMSG);
    load_expect(st.buf, end_off(&st), sb, ck, 0, -EBADMSG);
    load_expect(st.buf, HDR_REC / 2, sb, ck, 0, -EBADMSG);

    /* data after END; a duplicated HDR; a stream not starting with HDR */
    memcpy(b, st.buf, n);
    memcpy(b + n, st.buf + HDR_REC, rec);
    load_expect(b, n + rec, sb, ck, -EBADMSG, -EBADMSG);
    memcpy(b, st.buf, HDR_REC);
    memcpy(b + HDR_REC, st.buf, n);
    load_expect(b, n + HDR_REC, sb, ck, -EBADMSG, -EBADMSG);
    load_expect(st.buf + HDR_REC, n - HDR_REC, sb, ck, -EBADMSG, -EBADMSG);

    /* a missing chunk (END intact): refused at END */
    memcpy(b, st.buf, HDR_REC + rec);
    memcpy(b + HDR_REC + rec, st.buf + HDR_REC + 2 * rec,
           n - HDR_REC - 2 * rec);
    load_expect(b, n - rec, sb, ck, -EBADMSG, -EBADMSG);

    /* valid checksums but a wrong whole-state digest */
    memcpy(b, st.buf, n);
    b[end_off(&st) + sizeof(struct ft_rec_hdr) + 20] ^= 1;
    reseal(b + end_off(&st));
    load_expect(b, n, sb, ck, -EBADMSG, -EBADMSG);

    /* a newer format version: unsupported, named as such */
    memcpy(b, st.buf, n);
    memcpy(&sh, b + sizeof(struct ft_rec_hdr), sizeof(sh));
    sh.magic = FT_STREAM_MAGIC | 2ull << 56;
    memcpy(b + sizeof(struct ft_rec_hdr), &sh, sizeof(sh));
    reseal(b);
    load_expect(b, n, sb, ck, -EOPNOTSUPP, -EOPNOTSUPP);

    /* another geometry than the destination's */
    load_expect(st.buf, n, 2 * sb, ck, -EOPNOTSUPP, -EOPNOTSUPP);

    /* an unknown mandatory record is refused, an optional one skipped */
    {
        struct ft_rec_hdr h = {.type = 0x77, .len = 8};
        size_t at = HDR_REC;

        memcpy(b, st.buf, at);
        memcpy(b + at, &h, sizeof(h));
        memset(b + at + sizeof(h), 0xab, 8);
        reseal(b + at);
        memcpy(b + at + sizeof(h) + 8, st.buf + at, n - at);
        load_expect(b, n + sizeof(h) + 8, sb, ck, -EBADMSG, -EBADMSG);
        h.type = 0x77 | FT_REC_OPTIONAL;
        memcpy(b + at, &h, sizeof(h));
        reseal(b + at);
        load_expect(b, n + sizeof(h) + 8, sb, ck, 0, 0);
    }

    /* consistent checksums and digest, inconsistent content: refused at
     * RESUMING -> STOP (ring size 3 in the control block, offset 40) */
    memcpy(b, st.buf, n);
    memcpy(b + HDR_REC + sizeof(struct ft_rec_hdr) + 40, &rs, sizeof(rs));
    reseal(b + HDR_REC);
    redigest(&(struct stream){.buf = b, .len = n}, ck);
    load_expect(b, n, sb, ck, 0, -EBADMSG);

    free(b);
    free(st.buf);
}

/*
 * The feature sets (STOP_COPY alone, with P2P, with PRE_COPY): the same
 * device offering fewer features.  Without P2P there
 * is no RUNNING_P2P (RUNNING -> STOP directly, and the device still
 * quiesces); without PRE_COPY no precopy.  The stream is the same.
 */
static void
test_feature_subsets(void **state)
{
    static const uint32_t sets[] = {
        VMIG_MIGRATION_STOP_COPY,
        VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_PRE_COPY,
        VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_P2P,
    };
    struct ft_config bad = {.mig_flags = VMIG_MIGRATION_P2P};
    struct ft_model *m = NULL;
    struct ft_ram ram;

    (void)state;
    assert_int_equal(ft_ram_new(&ram, RAM_BYTES), 0);
    assert_int_equal(ft_model_new(ctx, &bad, &ft_ram_dma, &ram, &m), -EINVAL);
    bad.mig_flags = 1u << 3;
    assert_int_equal(ft_model_new(ctx, &bad, &ft_ram_dma, &ram, &m), -EINVAL);
    assert_null(m);
    ft_ram_free(&ram);

    for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
        struct ft_config cfg = {.state_bytes = 256u << 10,
                                .chunk_bytes = 16u << 10,
                                .no_thread = true,
                                .mig_flags = sets[i]};
        struct side s, d;
        struct vmig_fsm_path path;
        uint8_t *buf;
        size_t len;
        bool p2p = sets[i] & VMIG_MIGRATION_P2P;
        bool pre = sets[i] & VMIG_MIGRATION_PRE_COPY;

        side_new_cfg(&s, &cfg);
        side_new(&d, 256u << 10, 16u << 10, true);
        assert_int_equal(vmig_dev_flags(ft_model_dev(s.dev)), sets[i]);
        side_guest(&s, 8);
        traffic(&s, 50);
        assert_int_equal(
            vmig_dev_set_state(ft_model_dev(s.dev), S(RUNNING_P2P)),
            p2p ? 0 : -EINVAL);
        assert_int_equal(vmig_dev_set_state(ft_model_dev(s.dev), S(RUNNING)),
                         0);
        assert_int_equal(vmig_dev_set_state(ft_model_dev(s.dev), S(PRE_COPY)),
                         pre ? 0 : -EINVAL);
        assert_int_equal(vmig_fsm_path(sets[i],
                                       vmig_dev_state(ft_model_dev(s.dev)),
                                       S(STOP_COPY), &path),
                         0);
        set_state(s.dev, S(STOP_COPY));
        assert_int_equal(ft_model_reg_write(s.dev, FT_REG_TAIL, 1), -EBUSY);
        assert_int_equal(ft_read_all(s.dev, ft_gen(s.dev), &buf, &len), 0);
        /* a device with every feature loads it: same format */
        set_state(d.dev, S(STOP));
        set_state(d.dev, S(RESUMING));
        assert_int_equal(ft_write_gen(d.dev, ft_gen(d.dev), buf, len),
                         (ssize_t)len);
        free(buf);
        set_state(d.dev, S(STOP));
        assert_same_state(s.dev, d.dev);
        side_free(&s);
        side_free(&d);
    }
}

/*
 * Device DMA writes are visible to dirty logging: every guest page the
 * device changed was translated with write=true (the hook a transport's
 * DMA logging uses), and no descriptor read was flagged as a write.
 */

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_streams_refused),
        cmocka_unit_test(test_feature_subsets),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
