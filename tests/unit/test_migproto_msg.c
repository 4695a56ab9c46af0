/* SPDX-License-Identifier: MIT */
/*
 * test_migproto_msg.c - the codec of every fixed-layout frame of the
 * migration stream (<vmig/migproto.h> vmig_mp_msg_*), against payloads
 * written byte by byte here from the tables of docs/migration-protocol.md
 * (this file shares no code with the codec): each decodes to the expected
 * fields and encodes back to the same bytes; every truncation, a trailing
 * byte, and per frame the values its layout forbids (unknown flag bits,
 * reserved fields not 0, counts and errnos out of range, data that does
 * not match the fields) are refused with -EBADMSG and leave the output
 * untouched.
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
#include <vmig/migproto.h>

/* ------------------------------------------------ payloads by hand */

struct buf {
    uint8_t b[8192];
    size_t n;
};

static void
put(struct buf *b, uint64_t v, int width)
{
    for (int i = 0; i < width; i++) {
        b->b[b->n++] = (uint8_t)(v >> (8 * i));
    }
}

#define P32(b, v) put((b), (v), 4)
#define P64(b, v) put((b), (v), 8)

static void
pstr(struct buf *b, const char *s)
{
    size_t n = strlen(s);

    put(b, n, 2);
    memcpy(b->b + b->n, s, n);
    b->n += n;
}

static void
pdata(struct buf *b, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++) {
        b->b[b->n++] = (uint8_t)(seed + i * 7);
    }
}

/*
 * One frame: its payload, where its fields end (the rest is data, when
 * the frame has data), whether its data length is free (DEV_DATA,
 * DEV_CONFIG and VCPU carry whatever follows; a RAM frame's is fixed by
 * its page count), and the message it must decode to.
 */
struct vec {
    const char *name;
    struct buf p;
    size_t head;
    bool free_data;
    struct vmig_mp_msg m;
};

static void
vec_init(struct vec *v, const char *name, unsigned int type)
{
    memset(v, 0, sizeof(*v));
    v->name = name;
    v->m.type = type;
}

static void
v_setup(struct vec *v)
{
    vec_init(v, "SETUP", VMIG_MP_SETUP);
    P64(&v->p, 0x123456789ull);
    P64(&v->p, 77);
    v->m.setup.ram_bytes = 0x123456789ull;
    v->m.setup.dev_bytes = 77;
}

static void
v_ram(struct vec *v)
{
    vec_init(v, "RAM", VMIG_MP_RAM);
    P32(&v->p, 1);
    P32(&v->p, 0);
    P64(&v->p, 3 * 4096);
    P32(&v->p, 1);
    P32(&v->p, 2);
    v->head = v->p.n;
    pdata(&v->p, 4096, 3);
    v->m.ram = (struct vmig_mp_ram){.region = 1,
                                    .offset = 3 * 4096,
                                    .npages = 1,
                                    .pass = 2,
                                    .data = {v->p.b + 24, 4096}};
}

static void
v_ram_zero(struct vec *v)
{
    vec_init(v, "RAM zero", VMIG_MP_RAM);
    P32(&v->p, 0);
    P32(&v->p, VMIG_MP_RAM_ZERO);
    P64(&v->p, 0);
    P32(&v->p, 1024);
    P32(&v->p, 1);
    v->m.ram = (struct vmig_mp_ram){
        .flags = VMIG_MP_RAM_ZERO, .npages = 1024, .pass = 1};
}

static void
v_pass_end(struct vec *v)
{
    vec_init(v, "RAM_PASS_END", VMIG_MP_RAM_PASS_END);
    P32(&v->p, 4);
    P32(&v->p, VMIG_MP_PASS_LAST);
    P64(&v->p, 99);
    v->m.pass_end = (struct vmig_mp_pass_end){4, VMIG_MP_PASS_LAST, 99};
}

static void
v_dev_config(struct vec *v)
{
    vec_init(v, "DEV_CONFIG", VMIG_MP_DEV_CONFIG);
    P32(&v->p, 2);
    P32(&v->p, 0);
    v->head = v->p.n;
    pdata(&v->p, 300, 9);
    v->free_data = true;
    v->m.dev_config.dev = 2;
    v->m.dev_config.data = (struct vmig_mp_data){v->p.b + 8, 300};
}

static void
v_dev_data(struct vec *v)
{
    vec_init(v, "DEV_DATA", VMIG_MP_DEV_DATA);
    P32(&v->p, 1);
    P32(&v->p, VMIG_MP_DEV_PRECOPY);
    P64(&v->p, 1000);
    v->head = v->p.n;
    pdata(&v->p, 100, 1);
    v->free_data = true;
    v->m.dev_data = (struct vmig_mp_dev_data){
        1, VMIG_MP_DEV_PRECOPY, 1000, {v->p.b + 16, 100}};
}

static void
v_dev_end(struct vec *v)
{
    vec_init(v, "DEV_END", VMIG_MP_DEV_END);
    P32(&v->p, 3);
    P32(&v->p, 0);
    P64(&v->p, 5000);
    P64(&v->p, 0xfeedfacecafebeefull);
    /* field by field: the struct has padding a literal need not zero */
    v->m.dev_end.dev = 3;
    v->m.dev_end.total = 5000;
    v->m.dev_end.digest = 0xfeedfacecafebeefull;
}

static void
v_vcpu(struct vec *v)
{
    vec_init(v, "VCPU", VMIG_MP_VCPU);
    P32(&v->p, 0);
    P32(&v->p, 0);
    v->head = v->p.n;
    pdata(&v->p, 40, 5);
    v->free_data = true;
    v->m.vcpu.data = (struct vmig_mp_data){v->p.b + 8, 40};
}

static void
v_switchover(struct vec *v)
{
    vec_init(v, "SWITCHOVER", VMIG_MP_SWITCHOVER);
    P64(&v->p, 1ull << 30);
    P32(&v->p, 2);
    P32(&v->p, VMIG_MP_SW_VCPU);
    P64(&v->p, 1700000000123456789ull);
    P64(&v->p, 0);
    v->m.switchover = (struct vmig_mp_switchover){
        1ull << 30, 2, VMIG_MP_SW_VCPU, 1700000000123456789ull};
}

static void
v_abort(struct vec *v)
{
    vec_init(v, "ABORT", VMIG_MP_ABORT);
    P32(&v->p, ECANCELED);
    pstr(&v->p, "cancelled by the source");
    v->m.abort.err = ECANCELED;
    strcpy(v->m.abort.reason, "cancelled by the source");
}

static void
v_swreq(struct vec *v)
{
    vec_init(v, "SWITCHOVER_REQ", VMIG_MP_SWITCHOVER_REQ);
    P32(&v->p, 7);
    P32(&v->p, 0);
    v->m.switchover_req.id = 7;
}

static void
v_restart(struct vec *v)
{
    vec_init(v, "DEV_RESTART", VMIG_MP_DEV_RESTART);
    P32(&v->p, 4);
    P32(&v->p, 0);
    v->m.dev_restart.dev = 4;
}

static void
v_setup_ack(struct vec *v)
{
    vec_init(v, "SETUP_ACK", VMIG_MP_SETUP_ACK);
    P32(&v->p, 0);
    pstr(&v->p, "");
}

static void
v_setup_nak(struct vec *v)
{
    vec_init(v, "SETUP_ACK refusing", VMIG_MP_SETUP_ACK);
    P32(&v->p, EIO);
    pstr(&v->p, "cannot enter RESUMING: Input/output error");
    v->m.setup_ack.err = EIO;
    strcpy(v->m.setup_ack.reason, "cannot enter RESUMING: Input/output error");
}

static void
v_ack(struct vec *v)
{
    vec_init(v, "ACK", VMIG_MP_ACK);
    P32(&v->p, VMIG_MP_DEV_END);
    P32(&v->p, 12);
    P64(&v->p, 4096);
    v->m.ack = (struct vmig_mp_ack){VMIG_MP_DEV_END, 12, 4096};
}

static void
v_error(struct vec *v)
{
    vec_init(v, "ERROR", VMIG_MP_ERROR);
    P32(&v->p, EBADMSG);
    P32(&v->p, 0xffffffffu);
    pstr(&v->p, "malformed RAM frame");
    v->m.error.err = EBADMSG;
    v->m.error.dev = VMIG_MP_NO_DEVICE;
    strcpy(v->m.error.reason, "malformed RAM frame");
}

static void
v_confirm(struct vec *v)
{
    vec_init(v, "CONFIRM", VMIG_MP_CONFIRM);
    P64(&v->p, 11);
    P64(&v->p, 22);
    P64(&v->p, 33);
    P64(&v->p, 44);
    v->m.confirm = (struct vmig_mp_confirm){11, 22, 33, 44};
}

static void
v_swack(struct vec *v)
{
    vec_init(v, "SWITCHOVER_ACK", VMIG_MP_SWITCHOVER_ACK);
    P32(&v->p, 1);
    P32(&v->p, 0);
    v->m.switchover_ack.id = 1;
}

/* The commit frames (feature COMMIT): READY, GO, DONE, RECOVER and
 * RECOVER_REPLY, written from the table of docs/migration-protocol.md. */
static void
v_ready(struct vec *v)
{
    vec_init(v, "READY", VMIG_MP_READY);
    P64(&v->p, 0x9abcdef0ull);
    P64(&v->p, 123456);
    v->m.ready = (struct vmig_mp_ready){0x9abcdef0ull, 123456};
}

static void
v_go(struct vec *v)
{
    vec_init(v, "GO", VMIG_MP_GO);
    P64(&v->p, 0x9abcdef0ull);
    P64(&v->p, 0);
    v->m.go.id = 0x9abcdef0ull;
}

static void
v_done(struct vec *v)
{
    vec_init(v, "DONE", VMIG_MP_DONE);
    P64(&v->p, 9);
    P64(&v->p, 0);
    v->m.done.id = 9;
}

static void
v_recover(struct vec *v)
{
    vec_init(v, "RECOVER", VMIG_MP_RECOVER);
    P64(&v->p, 1ull << 63);
    P64(&v->p, 0);
    v->m.recover.id = 1ull << 63;
}

static void
v_recover_reply(struct vec *v)
{
    vec_init(v, "RECOVER_REPLY", VMIG_MP_RECOVER_REPLY);
    P64(&v->p, 5);
    P32(&v->p, VMIG_MP_REC_DISCARDED);
    P32(&v->p, 0);
    pstr(&v->p, "no GO within 30000 ms");
    v->m.recover_reply.id = 5;
    v->m.recover_reply.state = VMIG_MP_REC_DISCARDED;
    strcpy(v->m.recover_reply.reason, "no GO within 30000 ms");
}

static void
v_channels(struct vec *v)
{
    vec_init(v, "CHANNELS", VMIG_MP_CHANNELS);
    P32(&v->p, 4);
    P32(&v->p, 0);
    v->m.channels.count = 4;
}

static void
v_channels_ack(struct vec *v)
{
    vec_init(v, "CHANNELS_ACK", VMIG_MP_CHANNELS_ACK);
    P32(&v->p, 3);
    P32(&v->p, 0);
    P64(&v->p, 0x0123456789abcdefull);
    P64(&v->p, 0xfedcba9876543210ull);
    v->m.channels = (struct vmig_mp_channels){3, 0x0123456789abcdefull,
                                              0xfedcba9876543210ull};
}

static void
v_channel_hello(struct vec *v)
{
    vec_init(v, "CHANNEL_HELLO", VMIG_MP_CHANNEL_HELLO);
    P64(&v->p, 0x1111222233334444ull);
    P64(&v->p, 0x5555666677778888ull);
    P32(&v->p, 2);
    P32(&v->p, 4);
    v->m.channel = (struct vmig_mp_channel){.id_hi = 0x1111222233334444ull,
                                            .id_lo = 0x5555666677778888ull,
                                            .index = 2,
                                            .count = 4};
}

static void
v_channel_ready(struct vec *v)
{
    vec_init(v, "CHANNEL_READY", VMIG_MP_CHANNEL_READY);
    P32(&v->p, 3);
    P32(&v->p, 0);
    v->m.channel.index = 3;
}

static void
v_channel_sync(struct vec *v)
{
    vec_init(v, "CHANNEL_SYNC", VMIG_MP_CHANNEL_SYNC);
    P64(&v->p, 0);
}

static void
v_channel_end(struct vec *v)
{
    vec_init(v, "CHANNEL_END", VMIG_MP_CHANNEL_END);
    P32(&v->p, 1);
    P32(&v->p, 0);
    P64(&v->p, 9);
    v->m.channel.index = 1;
    v->m.channel.frames = 9;
}

static void
v_zdata(struct vec *v)
{
    vec_init(v, "ZDATA", VMIG_MP_ZDATA);
    P32(&v->p, VMIG_MP_RAM);
    P32(&v->p, 4120);
    v->head = v->p.n;
    pdata(&v->p, 60, 3);
    v->free_data = true;
    v->m.zdata = (struct vmig_mp_zdata){VMIG_MP_RAM, 4120, {v->p.b + 8, 60}};
}

static void (*const vectors[])(struct vec *) = {
    v_setup,        v_ram,           v_ram_zero,      v_pass_end,
    v_dev_config,   v_dev_data,      v_dev_end,       v_vcpu,
    v_switchover,   v_abort,         v_swreq,         v_restart,
    v_setup_ack,    v_setup_nak,     v_ack,           v_error,
    v_confirm,      v_swack,         v_ready,         v_go,
    v_done,         v_recover,       v_recover_reply, v_channels,
    v_channels_ack, v_channel_hello, v_channel_ready, v_channel_sync,
    v_channel_end,  v_zdata,
};
#define NVEC (sizeof(vectors) / sizeof(vectors[0]))

static struct vec *
vec_get(size_t i)
{
    static struct vec v;

    vectors[i](&v);
    if (v.head == 0) {
        v.head = v.p.n;
    }
    return &v;
}

/* ------------------------------------------------ the tests */

static void
test_every_type_has_a_vector(void **state)
{
    bool seen[256] = {false};

    (void)state;
    for (size_t i = 0; i < NVEC; i++) {
        seen[vec_get(i)->m.type] = true;
    }
    for (unsigned int t = 0; t < 256; t++) {
        bool fixed = vmig_mp_type_known(t) && t != VMIG_MP_HELLO &&
                     t != VMIG_MP_HELLO_REPLY;

        if (fixed && !seen[t]) {
            fail_msg("frame type %#x (%s) has no test vector", t,
                     vmig_mp_type_name(t));
        }
    }
}

static void
test_decode_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < NVEC; i++) {
        struct vec *v = vec_get(i);
        struct vmig_mp_msg m;

        print_message("%s\n", v->name);
        memset(&m, 0, sizeof(m));
        assert_int_equal(vmig_mp_msg_decode(v->m.type, v->p.b, v->p.n, &m), 0);
        assert_memory_equal(&m, &v->m, sizeof(m));
    }
}

static void
test_encode_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < NVEC; i++) {
        struct vec *v = vec_get(i);
        uint8_t out[VMIG_MP_MSG_HEAD_MAX];
        ssize_t n;

        print_message("%s\n", v->name);
        n = vmig_mp_msg_encode(&v->m, out, sizeof(out));
        assert_int_equal(n, (ssize_t)v->head);
        assert_memory_equal(out, v->p.b, v->head);
        /* too small a buffer: -E2BIG, nothing written past it */
        assert_int_equal(vmig_mp_msg_encode(&v->m, out, v->head - 1), -E2BIG);
    }
}

static void
test_truncated_and_trailing(void **state)
{
    (void)state;
    for (size_t i = 0; i < NVEC; i++) {
        struct vec *v = vec_get(i);
        struct vmig_mp_msg m, orig;

        print_message("%s\n", v->name);
        memset(&orig, 0x5a, sizeof(orig));
        for (size_t cut = 0; cut < v->p.n; cut++) {
            int ret;

            memcpy(&m, &orig, sizeof(m));
            ret = vmig_mp_msg_decode(v->m.type, v->p.b, cut, &m);
            if (v->free_data && cut >= v->head) {
                /* less data is still a frame (DEV_DATA and ZDATA need
                 * one byte) */
                assert_int_equal(ret, (v->m.type == VMIG_MP_DEV_DATA ||
                                       v->m.type == VMIG_MP_ZDATA) &&
                                              cut == v->head
                                          ? -EBADMSG
                                          : 0);
                continue;
            }
            assert_int_equal(ret, -EBADMSG);
            assert_memory_equal(&m, &orig, sizeof(m));
        }
        v->p.b[v->p.n] = 0;
        memcpy(&m, &orig, sizeof(m));
        if (v->free_data) {
            assert_int_equal(
                vmig_mp_msg_decode(v->m.type, v->p.b, v->p.n + 1, &m), 0);
        } else {
            assert_int_equal(
                vmig_mp_msg_decode(v->m.type, v->p.b, v->p.n + 1, &m),
                -EBADMSG);
            assert_memory_equal(&m, &orig, sizeof(m));
        }
    }
}

/* A vector with the u32 at payload offset @off set to @val must fail. */
struct bad {
    void (*vec)(struct vec *);
    size_t off;
    uint32_t val;
    const char *why;
};

static const struct bad bads[] = {
    {v_ram, 4, 2, "RAM: unknown flag"},
    {v_ram, 8, 100, "RAM: unaligned offset"},
    {v_ram, 16, 0, "RAM: no pages"},
    {v_ram, 16, 2, "RAM: 2 pages, data for 1"},
    {v_ram_zero, 16, 1025, "RAM: over 4 MiB of pages"},
    {v_ram, 20, 0, "RAM: pass 0"},
    {v_ram, 4, VMIG_MP_RAM_ZERO, "RAM: ZERO with data"},
    {v_pass_end, 0, 0, "RAM_PASS_END: pass 0"},
    {v_pass_end, 4, 2, "RAM_PASS_END: unknown flag"},
    {v_dev_config, 4, 1, "DEV_CONFIG: reserved not 0"},
    {v_dev_data, 4, 2, "DEV_DATA: unknown flag"},
    {v_dev_end, 4, 1, "DEV_END: flags not 0"},
    {v_vcpu, 4, 1, "VCPU: reserved not 0"},
    {v_switchover, 12, 2, "SWITCHOVER: unknown flag"},
    {v_switchover, 24, 1, "SWITCHOVER: reserved not 0"},
    {v_switchover, 28, 1, "SWITCHOVER: reserved (high half) not 0"},
    {v_abort, 0, 0, "ABORT: errno 0"},
    {v_abort, 0, 4096, "ABORT: errno 4096"},
    {v_swreq, 0, 0, "SWITCHOVER_REQ: id 0"},
    {v_swreq, 4, 1, "SWITCHOVER_REQ: flags not 0"},
    {v_restart, 4, 1, "DEV_RESTART: flags not 0"},
    {v_setup_ack, 0, 4096, "SETUP_ACK: status 4096"},
    {v_error, 0, 0, "ERROR: errno 0"},
    {v_error, 0, 70000, "ERROR: errno 70000"},
    {v_swack, 0, 0, "SWITCHOVER_ACK: id 0"},
    {v_swack, 4, 1, "SWITCHOVER_ACK: flags not 0"},
    {v_ready, 0, 0, "READY: id 0"},
    {v_go, 0, 0, "GO: id 0"},
    {v_go, 8, 1, "GO: reserved not 0"},
    {v_go, 12, 1, "GO: reserved (high half) not 0"},
    {v_done, 0, 0, "DONE: id 0"},
    {v_done, 8, 1, "DONE: reserved not 0"},
    {v_recover, 4, 0, "RECOVER: id 0"},
    {v_recover, 8, 1, "RECOVER: reserved not 0"},
    {v_recover_reply, 0, 0, "RECOVER_REPLY: id 0"},
    {v_recover_reply, 8, 4, "RECOVER_REPLY: state 4"},
    {v_recover_reply, 12, 1, "RECOVER_REPLY: reserved not 0"},
    {v_channels, 0, 1, "CHANNELS: one channel"},
    {v_channels, 0, 17, "CHANNELS: over 16 channels"},
    {v_channels, 4, 1, "CHANNELS: flags not 0"},
    {v_channels_ack, 0, 0, "CHANNELS_ACK: no channel"},
    {v_channels_ack, 0, 17, "CHANNELS_ACK: over 16 channels"},
    {v_channels_ack, 4, 1, "CHANNELS_ACK: flags not 0"},
    {v_channel_hello, 16, 0, "CHANNEL_HELLO: index 0 (the main one)"},
    {v_channel_hello, 16, 4, "CHANNEL_HELLO: index not below the count"},
    {v_channel_hello, 20, 17, "CHANNEL_HELLO: over 16 channels"},
    {v_channel_ready, 0, 0, "CHANNEL_READY: index 0"},
    {v_channel_ready, 4, 1, "CHANNEL_READY: flags not 0"},
    {v_channel_sync, 0, 1, "CHANNEL_SYNC: reserved not 0"},
    {v_channel_sync, 4, 1, "CHANNEL_SYNC: reserved (high half) not 0"},
    {v_channel_end, 0, 0, "CHANNEL_END: index 0"},
    {v_channel_end, 4, 1, "CHANNEL_END: flags not 0"},
    {v_zdata, 0, VMIG_MP_SETUP, "ZDATA: carries a SETUP"},
    {v_zdata, 0, VMIG_MP_ZDATA, "ZDATA: carries a ZDATA"},
    {v_zdata, 4, 0, "ZDATA: raw length 0"},
    {v_zdata, 4, VMIG_MP_RAM_HDR_LEN + VMIG_MP_CHUNK_MAX + 1,
     "ZDATA: raw length over RAM's limit"},
};

static void
test_forbidden_values(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        static struct vec v;
        struct vmig_mp_msg m, orig;

        print_message("%s\n", bads[i].why);
        bads[i].vec(&v);
        for (int k = 0; k < 4; k++) {
            v.p.b[bads[i].off + k] = (uint8_t)(bads[i].val >> (8 * k));
        }
        memset(&orig, 0x5a, sizeof(orig));
        memcpy(&m, &orig, sizeof(m));
        assert_int_equal(vmig_mp_msg_decode(v.m.type, v.p.b, v.p.n, &m),
                         -EBADMSG);
        assert_memory_equal(&m, &orig, sizeof(m));
    }
}

static void
test_encoder_refuses(void **state)
{
    struct vec *v;
    struct vmig_mp_msg m;
    uint8_t out[VMIG_MP_MSG_HEAD_MAX];

    (void)state;
    v = vec_get(1); /* RAM */
    m = v->m;
    m.ram.npages = 2; /* data for one page */
    assert_int_equal(vmig_mp_msg_encode(&m, out, sizeof(out)), -EINVAL);
    m = v->m;
    m.ram.flags = 4;
    assert_int_equal(vmig_mp_msg_encode(&m, out, sizeof(out)), -EINVAL);
    m = v->m;
    m.ram.data.ptr = NULL;
    assert_int_equal(vmig_mp_msg_encode(&m, out, sizeof(out)), -EINVAL);
    memset(&m, 0, sizeof(m));
    m.type = VMIG_MP_ERROR; /* errno 0 */
    assert_int_equal(vmig_mp_msg_encode(&m, out, sizeof(out)), -EINVAL);
    m.type = VMIG_MP_HELLO;
    assert_int_equal(vmig_mp_msg_encode(&m, out, sizeof(out)), -EINVAL);
    m.type = 0x30;
    assert_int_equal(vmig_mp_msg_encode(&m, out, sizeof(out)), -EINVAL);
    /* a reason longer than the limit is cut at VMIG_MP_REASON_MAX */
    memset(&m, 0, sizeof(m));
    m.type = VMIG_MP_ABORT;
    m.abort.err = EIO;
    memset(m.abort.reason, 'x', VMIG_MP_REASON_MAX);
    assert_int_equal(vmig_mp_msg_encode(&m, out, sizeof(out)),
                     4 + 2 + VMIG_MP_REASON_MAX);
}

static void
test_strings(void **state)
{
    struct buf b = {.n = 0};
    struct vmig_mp_msg m;

    (void)state;
    /* control characters become '?' */
    P32(&b, EIO);
    P32(&b, 0);
    pstr(&b, "bad\ndevice\x1b[0m");
    assert_int_equal(vmig_mp_msg_decode(VMIG_MP_ERROR, b.b, b.n, &m), 0);
    assert_string_equal(m.error.reason, "bad?device?[0m");
    /* a length beyond the payload */
    b.n = 0;
    P32(&b, EIO);
    put(&b, 200, 2);
    pdata(&b, 20, 0x41);
    assert_int_equal(vmig_mp_msg_decode(VMIG_MP_ABORT, b.b, b.n, &m), -EBADMSG);
    /* 256 bytes: over the limit although the payload holds them */
    b.n = 0;
    P32(&b, EIO);
    put(&b, 256, 2);
    memset(b.b + b.n, 'a', 256);
    b.n += 256;
    assert_int_equal(vmig_mp_msg_decode(VMIG_MP_SETUP_ACK, b.b, b.n, &m),
                     -EBADMSG);
}

static void
test_not_fixed_layout(void **state)
{
    uint8_t b[64] = {0};
    struct vmig_mp_msg m;

    (void)state;
    assert_int_equal(vmig_mp_msg_decode(VMIG_MP_HELLO, b, 40, &m), -EINVAL);
    assert_int_equal(vmig_mp_msg_decode(VMIG_MP_HELLO_REPLY, b, 40, &m),
                     -EINVAL);
    assert_int_equal(vmig_mp_msg_decode(0x30, b, 8, &m), -EINVAL);
    assert_int_equal(vmig_mp_msg_decode(0x1234, b, 8, &m), -EINVAL);
    assert_true(vmig_mp_type_known(VMIG_MP_SWITCHOVER_ACK));
    assert_false(vmig_mp_type_known(0x30));
    assert_false(vmig_mp_type_known(0x10000));
}

static void
test_decode_head(void **state)
{
    struct vec *v = vec_get(1); /* RAM with one page */
    struct vmig_mp_msg m;

    (void)state;
    /* the fields only: data elsewhere, its length from the whole */
    assert_int_equal(
        vmig_mp_msg_decode_head(VMIG_MP_RAM, v->p.b, 24, v->p.n, &m), 0);
    assert_null(m.ram.data.ptr);
    assert_int_equal(m.ram.data.len, 4096);
    /* the whole length must still match the page count */
    assert_int_equal(
        vmig_mp_msg_decode_head(VMIG_MP_RAM, v->p.b, 24, v->p.n - 1, &m),
        -EBADMSG);
    /* a head shorter than the fields */
    assert_int_equal(
        vmig_mp_msg_decode_head(VMIG_MP_RAM, v->p.b, 20, v->p.n, &m), -EBADMSG);
    /* a frame without data has nothing to leave elsewhere */
    v = vec_get(0);
    assert_int_equal(
        vmig_mp_msg_decode_head(VMIG_MP_SETUP, v->p.b, 8, v->p.n, &m),
        -EBADMSG);
}

/* Over a connection: vmig_mp_send_msg() then vmig_mp_frame_decode(). */
static void
test_send_and_receive(void **state)
{
    int sv[2];
    struct vmig_mp_conn *a, *b;
    struct vmig_mp_frame f;
    struct vmig_mp_msg m;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(vmig_mp_conn_new(NULL, sv[0], &a), 0);
    assert_int_equal(vmig_mp_conn_new(NULL, sv[1], &b), 0);
    vmig_mp_conn_set_timeout(a, 5000);
    vmig_mp_conn_set_timeout(b, 5000);
    for (size_t i = 0; i < NVEC; i++) {
        struct vec *v = vec_get(i);

        print_message("%s\n", v->name);
        if (v->m.type == VMIG_MP_ZDATA) {
            continue; /* only with compression: test_migproto_zstd.c */
        }
        assert_int_equal(vmig_mp_send_msg(a, &v->m), 0);
        assert_int_equal(vmig_mp_recv(b, &f), 0);
        assert_int_equal(f.hdr.type, v->m.type);
        assert_int_equal(f.hdr.flags, 0);
        /* the bytes on the wire are the vector's */
        assert_int_equal(f.hdr.len, v->p.n);
        assert_memory_equal(f.payload, v->p.b, v->p.n);
        assert_int_equal(vmig_mp_frame_decode(&f, &m), 0);
        assert_int_equal(m.type, v->m.type);
    }
    vmig_mp_conn_free(a);
    vmig_mp_conn_free(b);
    close(sv[0]);
    close(sv[1]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_type_has_a_vector),
        cmocka_unit_test(test_decode_vectors),
        cmocka_unit_test(test_encode_vectors),
        cmocka_unit_test(test_truncated_and_trailing),
        cmocka_unit_test(test_forbidden_values),
        cmocka_unit_test(test_encoder_refuses),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_not_fixed_layout),
        cmocka_unit_test(test_decode_head),
        cmocka_unit_test(test_send_and_receive),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
