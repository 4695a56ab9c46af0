/* SPDX-License-Identifier: MIT */
/*
 * test_migproto_zstd.c - compressed data frames (ZDATA, QEMU's
 * multifd-compression zstd) on a connection: RAM and DEV_DATA frames
 * round-trip compressed (and as they are when they do not shrink), the
 * receiver refuses ZDATA it did not negotiate, and hostile ZDATA frames
 * with valid checksums - a corrupt zstd body, a size other than declared,
 * no content size or checksum in the zstd frame,
 * a decompression bomb, a carried type that may not be compressed, a
 * size over the carried type's limit, trailing bytes, an oversized frame
 * - are refused without writing past the declared size.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <zstd.h>
#include <vmig/byteorder.h>
#include <vmig/migproto.h>

#define DATA_LEN (VMIG_MP_CHUNK_MAX)

struct pair {
    int sv[2];
    struct vmig_mp_conn *a, *b; /* a sends, b receives */
};

static void
pair_open(struct pair *p, bool a_zstd, bool b_zstd)
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p->sv), 0);
    assert_int_equal(vmig_mp_conn_new(NULL, p->sv[0], &p->a), 0);
    assert_int_equal(vmig_mp_conn_new(NULL, p->sv[1], &p->b), 0);
    vmig_mp_conn_set_timeout(p->a, 30000);
    vmig_mp_conn_set_timeout(p->b, 30000);
    if (a_zstd) {
        assert_int_equal(
            vmig_mp_conn_set_compress(p->a, VMIG_MP_COMPRESS_ZSTD, 0), 0);
    }
    if (b_zstd) {
        assert_int_equal(
            vmig_mp_conn_set_compress(p->b, VMIG_MP_COMPRESS_ZSTD, 0), 0);
    }
}

static void
pair_close(struct pair *p)
{
    vmig_mp_conn_free(p->a);
    vmig_mp_conn_free(p->b);
    close(p->sv[0]);
    close(p->sv[1]);
}

/* A sender thread: frames bigger than the socket buffer. */
struct job {
    struct vmig_mp_conn *c;
    const struct vmig_mp_msg *msg; /* sent with vmig_mp_send_msg, or */
    unsigned int type;             /* a raw payload of this type */
    const void *payload;
    size_t len;
    int ret;
    pthread_t th;
};

static void *
job_main(void *arg)
{
    struct job *j = arg;

    j->ret = j->msg != NULL
                 ? vmig_mp_send_msg(j->c, j->msg)
                 : vmig_mp_send1(j->c, j->type, 0, j->payload, j->len);
    return NULL;
}

static void
job_start(struct job *j)
{
    assert_int_equal(pthread_create(&j->th, NULL, job_main, j), 0);
}

static int
job_end(struct job *j)
{
    pthread_join(j->th, NULL);
    return j->ret;
}

/* Text-like, compressible bytes. */
static void
fill_text(uint8_t *p, size_t n, unsigned int seed)
{
    static const char words[] = "vfio migration stop-copy precopy device ";

    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)words[(i + seed * 7 + i / 97) % (sizeof(words) - 1)];
    }
}

static void
fill_random(uint8_t *p, size_t n, uint64_t x)
{
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

static int placed_calls;

static void *
place_never(void *opaque, const struct vmig_mp_hdr *hdr, const uint8_t *head,
            size_t tail_len)
{
    (void)opaque;
    (void)head;
    (void)tail_len;
    placed_calls += hdr->type == VMIG_MP_ZDATA;
    return NULL;
}

static void
test_round_trip(void **state)
{
    struct pair p;
    uint8_t *data = malloc(DATA_LEN), *noise = malloc(DATA_LEN);
    struct vmig_mp_msg m = {.type = VMIG_MP_RAM}, got;
    struct vmig_mp_frame f;
    struct job j = {0};
    uint64_t raw, packed, sent;

    (void)state;
    assert_non_null(data);
    assert_non_null(noise);
    fill_text(data, DATA_LEN, 1);
    fill_random(noise, DATA_LEN, 88172645463325252ull);
    pair_open(&p, true, true);

    /* a full RAM frame of text: ZDATA on the wire, RAM out */
    m.ram = (struct vmig_mp_ram){.region = 0,
                                 .offset = 8192,
                                 .npages = DATA_LEN / VMIG_MP_PAGE_SIZE,
                                 .pass = 1,
                                 .data = {.ptr = data, .len = DATA_LEN}};
    j = (struct job){.c = p.a, .msg = &m};
    job_start(&j);
    placed_calls = 0;
    assert_int_equal(
        vmig_mp_recv_placed(p.b, VMIG_MP_RAM_HDR_LEN, place_never, NULL, &f),
        0);
    assert_int_equal(job_end(&j), 0);
    assert_int_equal(placed_calls, 0);
    assert_int_equal(f.hdr.type, VMIG_MP_RAM);
    assert_false(f.placed);
    assert_int_equal(vmig_mp_frame_decode(&f, &got), 0);
    assert_int_equal(got.ram.offset, 8192);
    assert_int_equal(got.ram.npages, DATA_LEN / VMIG_MP_PAGE_SIZE);
    assert_int_equal(got.ram.data.len, DATA_LEN);
    assert_memory_equal(got.ram.data.ptr, data, DATA_LEN);
    vmig_mp_conn_zbytes(p.a, &raw, &packed);
    vmig_mp_conn_bytes(p.a, &sent, NULL);
    assert_int_equal(raw, VMIG_MP_RAM_HDR_LEN + DATA_LEN);
    assert_true(packed * 10 < raw); /* text shrinks more than 10x */
    assert_true(sent < DATA_LEN / 10);

    /* DEV_DATA of random bytes does not shrink: it goes as it is */
    m = (struct vmig_mp_msg){.type = VMIG_MP_DEV_DATA};
    m.dev_data = (struct vmig_mp_dev_data){
        .dev = 3, .offset = 77, .data = {.ptr = noise, .len = DATA_LEN}};
    j = (struct job){.c = p.a, .msg = &m};
    job_start(&j);
    assert_int_equal(vmig_mp_recv(p.b, &f), 0);
    assert_int_equal(job_end(&j), 0);
    assert_int_equal(f.hdr.type, VMIG_MP_DEV_DATA);
    assert_int_equal(vmig_mp_frame_decode(&f, &got), 0);
    assert_int_equal(got.dev_data.dev, 3);
    assert_int_equal(got.dev_data.offset, 77);
    assert_memory_equal(got.dev_data.data.ptr, noise, DATA_LEN);
    vmig_mp_conn_zbytes(p.a, &raw, &packed);
    assert_int_equal(raw, VMIG_MP_RAM_HDR_LEN + DATA_LEN +
                              VMIG_MP_DEV_DATA_HDR_LEN + DATA_LEN);
    assert_true(packed >= VMIG_MP_DEV_DATA_HDR_LEN + DATA_LEN);

    /* small frames and other types are never compressed */
    m = (struct vmig_mp_msg){.type = VMIG_MP_DEV_DATA};
    m.dev_data = (struct vmig_mp_dev_data){
        .dev = 1, .offset = 0, .data = {.ptr = data, .len = 100}};
    assert_int_equal(vmig_mp_send_msg(p.a, &m), 0);
    assert_int_equal(vmig_mp_recv(p.b, &f), 0);
    assert_int_equal(f.hdr.type, VMIG_MP_DEV_DATA);
    assert_int_equal(f.hdr.len, VMIG_MP_DEV_DATA_HDR_LEN + 100);

    pair_close(&p);
    free(data);
    free(noise);
}

/* A ZDATA payload: @type, @raw_len declared, then @z (@zlen bytes). */
static size_t
zdata(uint8_t *out, uint32_t type, uint32_t raw_len, const void *z, size_t zlen)
{
    vmig_put_le32(out, type);
    vmig_put_le32(out + 4, raw_len);
    memcpy(out + 8, z, zlen);
    return 8 + zlen;
}

/* A DEV_DATA payload of @n compressible bytes, compressed into @z;
 * @with_size: the zstd frame declares its content size and carries its
 * content checksum. */
static size_t
dev_frame_z(uint8_t *raw, size_t n, uint8_t *z, size_t cap, bool with_size)
{
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    size_t r;

    memset(raw, 0, VMIG_MP_DEV_DATA_HDR_LEN);
    vmig_put_le32(raw, 0);
    fill_text(raw + VMIG_MP_DEV_DATA_HDR_LEN, n - VMIG_MP_DEV_DATA_HDR_LEN, 5);
    assert_non_null(cc);
    assert_false(ZSTD_isError(
        ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, with_size)));
    assert_false(ZSTD_isError(
        ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, with_size)));
    r = ZSTD_compress2(cc, z, cap, raw, n);
    assert_false(ZSTD_isError(r));
    ZSTD_freeCCtx(cc);
    return r;
}

/* The receiver (with zstd) refuses @payload as a ZDATA frame: @err. */
static void
expect_refused(const void *payload, size_t len, int err)
{
    struct pair p;
    struct vmig_mp_frame f;
    struct job j;

    pair_open(&p, false, true);
    j = (struct job){
        .c = p.a, .type = VMIG_MP_ZDATA, .payload = payload, .len = len};
    if (len > vmig_mp_type_limit(VMIG_MP_ZDATA)) {
        /* the sender's own check refuses it: put the header on the wire
         * by hand, the receiver must refuse it from the header alone */
        uint8_t hdr[VMIG_MP_HDR_LEN] = {0};

        vmig_put_le32(hdr, VMIG_MP_FRAME_MAGIC);
        vmig_put_le16(hdr + 4, VMIG_MP_ZDATA);
        vmig_put_le32(hdr + 8, (uint32_t)len);
        assert_int_equal(write(p.sv[0], hdr, sizeof(hdr)),
                         (ssize_t)sizeof(hdr));
        assert_int_equal(vmig_mp_recv(p.b, &f), err);
        pair_close(&p);
        return;
    }
    job_start(&j);
    assert_int_equal(vmig_mp_recv(p.b, &f), err);
    /* the receiver stops reading; let the sender finish */
    shutdown(p.sv[1], SHUT_RDWR);
    (void)job_end(&j);
    pair_close(&p);
}

static void
test_hostile(void **state)
{
    size_t cap = VMIG_MP_PAYLOAD_MAX, n = 64 << 10, zlen, len;
    uint8_t *raw = malloc(cap), *z = malloc(cap), *pl = malloc(cap + 64);
    const uint32_t big = VMIG_MP_DEV_DATA_HDR_LEN + VMIG_MP_CHUNK_MAX;

    (void)state;
    assert_non_null(raw);
    assert_non_null(z);
    assert_non_null(pl);

    /* sanity: a well-formed hand-made frame is accepted */
    zlen = dev_frame_z(raw, n, z, cap, true);
    {
        struct pair p;
        struct vmig_mp_frame f;

        pair_open(&p, false, true);
        len = zdata(pl, VMIG_MP_DEV_DATA, (uint32_t)n, z, zlen);
        assert_int_equal(vmig_mp_send1(p.a, VMIG_MP_ZDATA, 0, pl, len), 0);
        assert_int_equal(vmig_mp_recv(p.b, &f), 0);
        assert_int_equal(f.hdr.type, VMIG_MP_DEV_DATA);
        assert_int_equal(f.hdr.len, n);
        assert_memory_equal(f.payload, raw, n);
        pair_close(&p);
    }

    /* a corrupt zstd body (the frame checksum is valid) */
    len = zdata(pl, VMIG_MP_DEV_DATA, (uint32_t)n, z, zlen);
    pl[8 + zlen / 2] ^= 0x5a;
    pl[8 + zlen / 2 + 1] ^= 0xa5;
    expect_refused(pl, len, -EBADMSG);

    /* a declared size other than the zstd frame's */
    len = zdata(pl, VMIG_MP_DEV_DATA, (uint32_t)n - 1, z, zlen);
    expect_refused(pl, len, -EBADMSG);
    len = zdata(pl, VMIG_MP_DEV_DATA, (uint32_t)n + 1, z, zlen);
    expect_refused(pl, len, -EBADMSG);

    /* no content size or checksum in the zstd frame */
    zlen = dev_frame_z(raw, n, z, cap, false);
    len = zdata(pl, VMIG_MP_DEV_DATA, (uint32_t)n, z, zlen);
    expect_refused(pl, len, -EBADMSG);

    /* a bomb: 64 MiB of text in a few KiB, declared as the most a frame
     * may carry; and the same without a content size */
    {
        size_t bomb = 64u << 20;
        uint8_t *b = malloc(bomb);
        size_t bl;

        assert_non_null(b);
        memset(b, 'A', bomb);
        bl = ZSTD_compress(z, cap, b, bomb, 1);
        assert_false(ZSTD_isError(bl));
        assert_true(bl < (1u << 20));
        len = zdata(pl, VMIG_MP_DEV_DATA, big, z, bl);
        expect_refused(pl, len, -EBADMSG);
        free(b);
    }

    /* a carried type that is never compressed */
    zlen = dev_frame_z(raw, n, z, cap, true);
    len = zdata(pl, VMIG_MP_SETUP, (uint32_t)n, z, zlen);
    expect_refused(pl, len, -EBADMSG);
    len = zdata(pl, VMIG_MP_ZDATA, (uint32_t)n, z, zlen);
    expect_refused(pl, len, -EBADMSG);

    /* a declared size over DEV_DATA's limit */
    len = zdata(pl, VMIG_MP_DEV_DATA, big + 1, z, zlen);
    expect_refused(pl, len, -EBADMSG);

    /* trailing bytes after the zstd frame */
    len = zdata(pl, VMIG_MP_DEV_DATA, (uint32_t)n, z, zlen);
    memset(pl + len, 0, 16);
    expect_refused(pl, len + 16, -EBADMSG);

    /* no zstd bytes at all */
    len = zdata(pl, VMIG_MP_DEV_DATA, (uint32_t)n, z, 0);
    expect_refused(pl, len, -EBADMSG);

    /* a frame longer than ZDATA may be */
    expect_refused(pl, vmig_mp_type_limit(VMIG_MP_ZDATA) + 1, -E2BIG);

    free(raw);
    free(z);
    free(pl);
}

/* ZDATA on a connection that did not negotiate compression. */
static void
test_not_negotiated(void **state)
{
    struct pair p;
    struct vmig_mp_frame f;
    uint8_t raw[4096], z[4096], pl[4200];
    size_t zlen, len;

    (void)state;
    zlen = dev_frame_z(raw, sizeof(raw), z, sizeof(z), true);
    len = zdata(pl, VMIG_MP_DEV_DATA, sizeof(raw), z, zlen);
    pair_open(&p, false, false);
    assert_int_equal(vmig_mp_send1(p.a, VMIG_MP_ZDATA, 0, pl, len), 0);
    assert_int_equal(vmig_mp_recv(p.b, &f), -EPROTO);
    pair_close(&p);

    /* and a bad method or level is refused, changing nothing */
    pair_open(&p, false, false);
    assert_int_equal(vmig_mp_conn_set_compress(p.a, 7, 0), -EINVAL);
    assert_int_equal(
        vmig_mp_conn_set_compress(p.a, VMIG_MP_COMPRESS_ZSTD, 1000), -EINVAL);
    assert_int_equal(vmig_mp_send1(p.a, VMIG_MP_ZDATA, 0, pl, len), 0);
    assert_int_equal(vmig_mp_recv(p.b, &f), -EPROTO);
    pair_close(&p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_not_negotiated),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
