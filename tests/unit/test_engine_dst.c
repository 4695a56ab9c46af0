/* SPDX-License-Identifier: MIT */
/*
 * test_engine_dst.c - the destination engine against a hand-driven
 * (hostile) source: every malformed, misplaced or inconsistent frame ends
 * the migration with a specific errno, the destination's device reset to
 * its previous state and its vCPU never resumed.  A well-formed stream
 * with an unknown optional frame in it is accepted.  With the commit
 * protocol the destination answers SWITCHOVER with READY and resumes
 * only on GO; a source lost after READY can come back (RECOVER) on a new
 * connection, and one that never does has the VM discarded.
 */
#include <errno.h>
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
#include <xxhash.h>
#include <vmig/engine.h>
#include <vmig_testkit/memdev.h>
#include "migproto_priv.h"

#define RAM (64u << 10)
#define DEV 4096u

struct dst {
    vmig_ctx_t *ctx;
    uint8_t *ram;
    struct vmig_memdev *dev;
    struct vmig_engine *eng;
    int resumes;
    int fd;
    int ret;
    uint64_t digest0;
};

static int
nop(void *o)
{
    (void)o;
    return 0;
}

static int
resume(void *o)
{
    ((struct dst *)o)->resumes++;
    return 0;
}

static const struct vmig_engine_vm_ops ops = {.vcpu_pause = nop,
                                              .vcpu_resume = resume};

/* A VMM that writes guest RAM itself (e.g. through its own mapping). */
static int ram_writes;

static int
ram_write(void *o, unsigned int region, uint64_t off, const void *data,
          size_t len)
{
    struct dst *d = o;

    ram_writes++;
    if (region != 0 || off + len > RAM) {
        return -EINVAL;
    }
    if (data == NULL) {
        memset(d->ram + off, 0, len);
    } else {
        memcpy(d->ram + off, data, len);
    }
    return 0;
}

static const struct vmig_engine_vm_ops ops_rw = {
    .vcpu_pause = nop, .vcpu_resume = resume, .ram_write = ram_write};
static bool use_rw;

static struct dst *
dst_new(void)
{
    struct dst *d = calloc(1, sizeof(*d));
    struct vmig_engine_region rg = {.name = "ram0", .size = RAM};
    struct vmig_memdev_params p = {.state_size = DEV,
                                   .flags = VMIG_MIGRATION_STOP_COPY,
                                   .seed = 9,
                                   .revision = 1};
    struct vmig_engine_params ep = {.timeout_ms = 3000};

    assert_non_null(d);
    assert_int_equal(vmig_ctx_new("dst", NULL, NULL, &d->ctx), 0);
    d->ram = calloc(1, RAM);
    rg.host = d->ram;
    assert_int_equal(
        vmig_engine_new(d->ctx, &rg, 1, use_rw ? &ops_rw : &ops, d, &d->eng),
        0);
    vmig_engine_set_params(d->eng, &ep);
    assert_int_equal(vmig_memdev_new(d->ctx, &p, &d->dev), 0);
    assert_int_equal(
        vmig_engine_add_device(d->eng, "dev0", vmig_memdev_ops(), d->dev), 0);
    d->digest0 = vmig_memdev_digest(d->dev);
    return d;
}

static void
dst_free(struct dst *d)
{
    vmig_engine_free(d->eng);
    vmig_memdev_free(d->dev);
    free(d->ram);
    vmig_ctx_free(d->ctx);
    free(d);
}

static void *
dst_main(void *arg)
{
    struct dst *d = arg;

    d->ret = vmig_engine_incoming(d->eng, d->fd);
    return NULL;
}

/* A source's saved device state, from a memdev like the destination's. */
static uint8_t src_state[DEV + 64];
static size_t src_state_len;

static void
make_src_state(void)
{
    struct vmig_memdev_params p = {.state_size = DEV,
                                   .flags = VMIG_MIGRATION_STOP_COPY,
                                   .seed = 77,
                                   .revision = 1};
    const struct vmig_engine_dev_ops *o = vmig_memdev_ops();
    struct vmig_memdev *m;
    ssize_t n;

    assert_int_equal(vmig_memdev_new(NULL, &p, &m), 0);
    assert_int_equal(vmig_memdev_work(m, 10), 0);
    assert_int_equal(o->set_state(m, VMIG_STATE_STOP_COPY), 0);
    src_state_len = 0;
    while ((n = o->read(m, src_state + src_state_len,
                        sizeof(src_state) - src_state_len)) > 0) {
        src_state_len += (size_t)n;
    }
    assert_int_equal(n, 0);
    vmig_memdev_free(m);
}

struct session {
    struct dst *d;
    int fd;
    struct vmig_mp_conn *c;
    pthread_t th;
};

/* The features HELLO offers. */
static uint64_t hello_features = VMIG_MP_FEAT_ZERO_PAGES;

/* Preamble, HELLO (optionally with a RAM size of @ram), SETUP. */
static bool
session_open(struct session *s, uint64_t ram)
{
    struct vmig_mp_hello *h = calloc(1, sizeof(*h));
    struct vmig_mp_frame f;
    uint8_t buf[4096], desc[256];
    int sv[2];
    ssize_t n;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    s->d = dst_new();
    s->d->fd = sv[1];
    s->fd = sv[0];
    assert_int_equal(pthread_create(&s->th, NULL, dst_main, s->d), 0);
    assert_int_equal(vmig_mp_conn_new(NULL, sv[0], &s->c), 0);
    vmig_mp_conn_set_timeout(s->c, 3000);
    assert_int_equal(vmig_mp_handshake(s->c), 0);
    h->version_min = 1;
    h->version_max = 1;
    h->features = hello_features;
    h->page_size = 4096;
    h->nregions = 1;
    strcpy(h->region[0].name, "ram0");
    h->region[0].size = ram;
    h->ndevices = 1;
    strcpy(h->dev[0].name, "dev0");
    h->dev[0].mig_flags = VMIG_MIGRATION_STOP_COPY;
    n = vmig_memdev_ops()->describe(s->d->dev, &h->dev[0].ids, desc,
                                    sizeof(desc));
    assert_true(n > 0);
    h->dev[0].desc = desc;
    h->dev[0].desc_len = (uint32_t)n;
    n = vmig_mp_hello_encode(h, buf, sizeof(buf));
    free(h);
    assert_true(n > 0);
    assert_int_equal(vmig_mp_send1(s->c, VMIG_MP_HELLO, 0, buf, (size_t)n), 0);
    assert_int_equal(vmig_mp_recv(s->c, &f), 0);
    assert_int_equal(f.hdr.type, VMIG_MP_HELLO_REPLY);
    if (ram != RAM) {
        return false;
    }
    memset(buf, 0, 16);
    assert_int_equal(vmig_mp_send1(s->c, VMIG_MP_SETUP, 0, buf, 16), 0);
    assert_int_equal(vmig_mp_recv(s->c, &f), 0);
    assert_int_equal(f.hdr.type, VMIG_MP_SETUP_ACK);
    assert_int_equal(vmig_memdev_state(s->d->dev), VMIG_STATE_RESUMING);
    return true;
}

/* Close our side, collect the destination's result, check it discarded. */
static int
session_close(struct session *s, bool expect_ok)
{
    int ret;

    shutdown(s->fd, SHUT_WR);
    pthread_join(s->th, NULL);
    ret = s->d->ret;
    if (!expect_ok) {
        assert_int_equal(s->d->resumes, 0);
        assert_int_equal(vmig_memdev_state(s->d->dev), VMIG_STATE_RUNNING);
        assert_true(vmig_memdev_digest(s->d->dev) == s->d->digest0);
    }
    vmig_mp_conn_free(s->c);
    close(s->fd);
    close(s->d->fd);
    dst_free(s->d);
    return ret;
}

static int
send_ram(struct session *s, uint32_t region, uint32_t flags, uint64_t off,
         uint32_t np, size_t data)
{
    static uint8_t page[2 * 4096];
    uint8_t hdr[24];
    struct mp_w w = {.p = hdr, .cap = sizeof(hdr)};
    const void *pl[2] = {hdr, page};
    size_t len[2] = {sizeof(hdr), data};

    memset(page, 0x5a, sizeof(page));
    mp_w_u32(&w, region);
    mp_w_u32(&w, flags);
    mp_w_u64(&w, off);
    mp_w_u32(&w, np);
    mp_w_u32(&w, 1);
    return vmig_mp_send(s->c, VMIG_MP_RAM, 0, pl, len, data ? 2 : 1);
}

static int
send_dev_data(struct session *s, uint32_t dev, uint64_t off, const void *p,
              size_t n)
{
    uint8_t hdr[16];
    struct mp_w w = {.p = hdr, .cap = sizeof(hdr)};
    const void *pl[2] = {hdr, p};
    size_t len[2] = {sizeof(hdr), n};

    mp_w_u32(&w, dev);
    mp_w_u32(&w, 0);
    mp_w_u64(&w, off);
    return vmig_mp_send(s->c, VMIG_MP_DEV_DATA, 0, pl, len, 2);
}

static int
send_dev_end(struct session *s, uint32_t dev, uint64_t total, uint64_t dig)
{
    uint8_t b[24];
    struct mp_w w = {.p = b, .cap = sizeof(b)};

    mp_w_u32(&w, dev);
    mp_w_u32(&w, 0);
    mp_w_u64(&w, total);
    mp_w_u64(&w, dig);
    return vmig_mp_send1(s->c, VMIG_MP_DEV_END, 0, b, sizeof(b));
}

static int
send_switchover(struct session *s)
{
    uint8_t b[32];
    struct mp_w w = {.p = b, .cap = sizeof(b)};

    mp_w_u64(&w, RAM);
    mp_w_u32(&w, 1);
    mp_w_u32(&w, 0);
    mp_w_u64(&w, 0);
    mp_w_u64(&w, 0);
    return vmig_mp_send1(s->c, VMIG_MP_SWITCHOVER, 0, b, sizeof(b));
}

/* The next return-path frame that is not an ACK; checks ACKs are sane. */
static void
recv_no_ack(struct session *s, struct vmig_mp_frame *f)
{
    do {
        assert_int_equal(vmig_mp_recv(s->c, f), 0);
        if (f->hdr.type == VMIG_MP_ACK) {
            assert_int_equal(f->hdr.len, 16);
            assert_int_equal(f->payload[0], VMIG_MP_DEV_END);
        }
    } while (f->hdr.type == VMIG_MP_ACK);
}

/* Every frame the destination sees before our close; ignore send errors
 * (the destination may hang up first). */
#define SEND(x) ((void)((x) == 0))

static void
test_valid_stream_with_optional_frame(void **state)
{
    struct session s;
    struct vmig_mp_frame f;

    (void)state;
    make_src_state();
    assert_true(session_open(&s, RAM));
    assert_int_equal(send_ram(&s, 0, 0, 0, 1, 4096), 0);
    assert_int_equal(send_ram(&s, 0, VMIG_MP_RAM_ZERO, 4096, 15, 0), 0);
    /* a future optional frame: skipped */
    assert_int_equal(vmig_mp_send1(s.c, 0x30, VMIG_MP_F_OPTIONAL, "x", 1), 0);
    assert_int_equal(send_dev_data(&s, 0, 0, src_state, 100), 0);
    assert_int_equal(
        send_dev_data(&s, 0, 100, src_state + 100, src_state_len - 100), 0);
    assert_int_equal(send_dev_end(&s, 0, src_state_len,
                                  XXH3_64bits(src_state, src_state_len)),
                     0);
    assert_int_equal(send_switchover(&s), 0);
    recv_no_ack(&s, &f);
    assert_int_equal(f.hdr.type, VMIG_MP_CONFIRM);
    assert_int_equal(s.d->resumes, 1);
    assert_int_equal(s.d->ram[0], 0x5a);
    assert_int_equal(vmig_memdev_state(s.d->dev), VMIG_STATE_RUNNING);
    assert_int_equal(vmig_memdev_work_done(s.d->dev), 10);
    assert_int_equal(session_close(&s, true), 0);
}

static void
test_ram_write_hook(void **state)
{
    struct session s;
    struct vmig_mp_frame f;

    (void)state;
    make_src_state();
    use_rw = true;
    ram_writes = 0;
    assert_true(session_open(&s, RAM));
    use_rw = false;
    assert_int_equal(send_ram(&s, 0, 0, 0, 1, 4096), 0);
    assert_int_equal(send_ram(&s, 0, VMIG_MP_RAM_ZERO, 4096, 15, 0), 0);
    assert_int_equal(send_dev_data(&s, 0, 0, src_state, src_state_len), 0);
    assert_int_equal(send_dev_end(&s, 0, src_state_len,
                                  XXH3_64bits(src_state, src_state_len)),
                     0);
    assert_int_equal(send_switchover(&s), 0);
    recv_no_ack(&s, &f);
    assert_int_equal(f.hdr.type, VMIG_MP_CONFIRM);
    assert_int_equal(ram_writes, 2);
    assert_int_equal(s.d->ram[4095], 0x5a);
    assert_int_equal(session_close(&s, true), 0);
}

static void
test_hostile_frames(void **state)
{
    struct session s;

    (void)state;
    make_src_state();

    /* RAM beyond the region */
    session_open(&s, RAM);
    SEND(send_ram(&s, 0, 0, RAM - 4096, 2, 8192));
    assert_int_equal(session_close(&s, false), -EBADMSG);

    /* RAM: a region that does not exist */
    session_open(&s, RAM);
    SEND(send_ram(&s, 1, 0, 0, 1, 4096));
    assert_int_equal(session_close(&s, false), -EBADMSG);

    /* RAM: page count and length disagree */
    session_open(&s, RAM);
    SEND(send_ram(&s, 0, 0, 0, 2, 4096));
    assert_int_equal(session_close(&s, false), -EBADMSG);

    /* RAM: unaligned offset */
    session_open(&s, RAM);
    SEND(send_ram(&s, 0, 0, 100, 1, 4096));
    assert_int_equal(session_close(&s, false), -EBADMSG);

    /* device data with a gap */
    session_open(&s, RAM);
    SEND(send_dev_data(&s, 0, 0, src_state, 100));
    SEND(send_dev_data(&s, 0, 200, src_state + 200, 100));
    assert_int_equal(session_close(&s, false), -EBADMSG);

    /* device data for a device the source never announced */
    session_open(&s, RAM);
    SEND(send_dev_data(&s, 5, 0, src_state, 100));
    assert_int_equal(session_close(&s, false), -EBADMSG);

    /* more device data than the device has: the device refuses it */
    session_open(&s, RAM);
    {
        static uint8_t big[DEV + 4096];

        SEND(send_dev_data(&s, 0, 0, big, sizeof(big)));
    }
    assert_int_equal(session_close(&s, false), -E2BIG);

    /* DEV_END whose digest does not match */
    session_open(&s, RAM);
    SEND(send_dev_data(&s, 0, 0, src_state, src_state_len));
    SEND(send_dev_end(&s, 0, src_state_len, 1234));
    assert_int_equal(session_close(&s, false), -EBADMSG);

    /* DEV_END with a short total */
    session_open(&s, RAM);
    SEND(send_dev_data(&s, 0, 0, src_state, src_state_len));
    SEND(send_dev_end(&s, 0, 10, XXH3_64bits(src_state, src_state_len)));
    assert_int_equal(session_close(&s, false), -EBADMSG);

    /* SWITCHOVER before the device's data ended */
    session_open(&s, RAM);
    SEND(send_dev_data(&s, 0, 0, src_state, 100));
    SEND(send_switchover(&s));
    assert_int_equal(session_close(&s, false), -EPROTO);

    /* truncated device state: checksums fine, the device's validation
     * at RESUMING -> STOP refuses it */
    session_open(&s, RAM);
    SEND(send_dev_data(&s, 0, 0, src_state, 100));
    SEND(send_dev_end(&s, 0, 100, XXH3_64bits(src_state, 100)));
    SEND(send_switchover(&s));
    assert_int_equal(session_close(&s, false), -EBADMSG);

    /* a return-path frame on the main direction */
    session_open(&s, RAM);
    SEND(vmig_mp_send1(s.c, VMIG_MP_CONFIRM, 0, NULL, 0));
    assert_int_equal(session_close(&s, false), -EPROTO);

    /* a second HELLO */
    session_open(&s, RAM);
    SEND(vmig_mp_send1(s.c, VMIG_MP_HELLO, 0, NULL, 0));
    assert_int_equal(session_close(&s, false), -EPROTO);

    /* an unknown mandatory frame */
    session_open(&s, RAM);
    SEND(vmig_mp_send1(s.c, 0x30, 0, "x", 1));
    assert_int_equal(session_close(&s, false), -EOPNOTSUPP);

    /* precopy data that was never negotiated */
    session_open(&s, RAM);
    {
        uint8_t hdr[16 + 4];
        struct mp_w w = {.p = hdr, .cap = sizeof(hdr)};

        mp_w_u32(&w, 0);
        mp_w_u32(&w, VMIG_MP_DEV_PRECOPY);
        mp_w_u64(&w, 0);
        mp_w_u32(&w, 0);
        SEND(vmig_mp_send1(s.c, VMIG_MP_DEV_DATA, 0, hdr, sizeof(hdr)));
    }
    assert_int_equal(session_close(&s, false), -EOPNOTSUPP);

    /* a header announcing more than the type's limit: refused before the
     * payload is read */
    session_open(&s, RAM);
    {
        uint8_t raw[24];
        struct mp_w w = {.p = raw, .cap = sizeof(raw)};

        mp_w_u32(&w, VMIG_MP_FRAME_MAGIC);
        mp_w_u16(&w, VMIG_MP_RAM);
        mp_w_u16(&w, 0);
        mp_w_u32(&w, 7u << 20);
        mp_w_u32(&w, 2);
        mp_w_u64(&w, 0);
        assert_int_equal(write(s.fd, raw, sizeof(raw)), (ssize_t)sizeof(raw));
    }
    assert_int_equal(session_close(&s, false), -E2BIG);

    /* the source disappears mid-stream */
    session_open(&s, RAM);
    SEND(send_ram(&s, 0, 0, 0, 1, 4096));
    assert_int_equal(session_close(&s, false), -ECONNRESET);

    /* the source aborts */
    session_open(&s, RAM);
    SEND(vmig_mp_send1(s.c, VMIG_MP_ABORT, 0, "\x7d\0\0\0\0\0", 6));
    assert_int_equal(session_close(&s, false), -ECANCELED);
}

static void
test_refused_layout(void **state)
{
    struct session s;

    (void)state;
    /* a RAM size that differs: refused in HELLO, nothing touched */
    assert_false(session_open(&s, RAM * 2));
    assert_int_equal(session_close(&s, false), -EOPNOTSUPP);
}

/* ------------------------------------------------ the commit protocol */

/* Send the state and SWITCHOVER of a COMMIT session; READY's id. */
static uint64_t
commit_to_ready(struct session *s)
{
    struct vmig_mp_frame f;
    struct vmig_mp_msg m;

    make_src_state();
    hello_features = VMIG_MP_FEAT_ZERO_PAGES | VMIG_MP_FEAT_COMMIT;
    assert_true(session_open(s, RAM));
    hello_features = VMIG_MP_FEAT_ZERO_PAGES;
    assert_int_equal(send_ram(s, 0, 0, 0, 1, 4096), 0);
    assert_int_equal(send_dev_data(s, 0, 0, src_state, src_state_len), 0);
    assert_int_equal(send_dev_end(s, 0, src_state_len,
                                  XXH3_64bits(src_state, src_state_len)),
                     0);
    assert_int_equal(send_switchover(s), 0);
    recv_no_ack(s, &f);
    assert_int_equal(f.hdr.type, VMIG_MP_READY);
    assert_int_equal(vmig_mp_frame_decode(&f, &m), 0);
    /* loaded, validated, not running */
    assert_int_equal(s->d->resumes, 0);
    assert_int_equal(vmig_memdev_state(s->d->dev), VMIG_STATE_STOP);
    return m.ready.id;
}

static int
send_id(struct vmig_mp_conn *c, unsigned int type, uint64_t id)
{
    struct vmig_mp_msg m = {.type = type};

    m.go.id = id;
    return vmig_mp_send_msg(c, &m);
}

/* The first connection ends; the destination's result. */
static int
first_ends(struct session *s)
{
    shutdown(s->fd, SHUT_RDWR);
    pthread_join(s->th, NULL);
    vmig_mp_conn_free(s->c);
    close(s->fd);
    close(s->d->fd);
    return s->d->ret;
}

/* A new connection to the same destination engine. */
static void
reconnect(struct session *s)
{
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    s->d->fd = sv[1];
    s->fd = sv[0];
    assert_int_equal(pthread_create(&s->th, NULL, dst_main, s->d), 0);
    assert_int_equal(vmig_mp_conn_new(NULL, sv[0], &s->c), 0);
    vmig_mp_conn_set_timeout(s->c, 3000);
    assert_int_equal(vmig_mp_handshake(s->c), 0);
}

/* RECOVER @id on a new connection: the answer's state. */
static unsigned int
ask(struct session *s, uint64_t id)
{
    struct vmig_mp_frame f;
    struct vmig_mp_msg m;

    reconnect(s);
    assert_int_equal(send_id(s->c, VMIG_MP_RECOVER, id), 0);
    assert_int_equal(vmig_mp_recv(s->c, &f), 0);
    assert_int_equal(f.hdr.type, VMIG_MP_RECOVER_REPLY);
    assert_int_equal(vmig_mp_frame_decode(&f, &m), 0);
    assert_true(m.recover_reply.id == id);
    return m.recover_reply.state;
}

static void
test_commit_go(void **state)
{
    struct session s;
    struct vmig_mp_frame f;
    uint64_t id;

    (void)state;
    id = commit_to_ready(&s);
    /* GO for another migration: refused, discarded (the device, whose
     * state was applied in STOP, is reset to RUNNING), never run */
    assert_int_equal(send_id(s.c, VMIG_MP_GO, id + 1), 0);
    assert_int_equal(first_ends(&s), -EPROTO);
    assert_int_equal(s.d->resumes, 0);
    assert_int_equal(vmig_memdev_state(s.d->dev), VMIG_STATE_RUNNING);
    dst_free(s.d);

    id = commit_to_ready(&s);
    assert_int_equal(send_id(s.c, VMIG_MP_GO, id), 0);
    assert_int_equal(vmig_mp_recv(s.c, &f), 0);
    assert_int_equal(f.hdr.type, VMIG_MP_CONFIRM);
    assert_int_equal(s.d->resumes, 1);
    assert_int_equal(vmig_memdev_state(s.d->dev), VMIG_STATE_RUNNING);
    assert_int_equal(send_id(s.c, VMIG_MP_DONE, id), 0);
    assert_int_equal(first_ends(&s), 0);
    /* the source said it knows: no recovery window */
    assert_int_equal(vmig_engine_recovery_ms(s.d->eng), 0);
    /* asked later all the same: it runs here */
    assert_int_equal(ask(&s, id), VMIG_MP_REC_RUNNING);
    assert_int_equal(send_id(s.c, VMIG_MP_DONE, id), 0);
    assert_int_equal(first_ends(&s), 1);
    assert_int_equal(ask(&s, id + 1), VMIG_MP_REC_UNKNOWN);
    assert_int_equal(first_ends(&s), 1);
    dst_free(s.d);
}

static void
test_commit_abort(void **state)
{
    struct session s;
    uint64_t id;

    (void)state;
    id = commit_to_ready(&s);
    SEND(vmig_mp_send1(s.c, VMIG_MP_ABORT, 0, "\x7d\0\0\0\0\0", 6));
    assert_int_equal(first_ends(&s), -ECANCELED);
    assert_int_equal(s.d->resumes, 0);
    assert_int_equal(vmig_memdev_state(s.d->dev), VMIG_STATE_RUNNING);
    /* a source asking afterwards learns it was discarded */
    assert_int_equal(ask(&s, id), VMIG_MP_REC_DISCARDED);
    assert_int_equal(first_ends(&s), 1);
    dst_free(s.d);
}

static void
test_commit_recover(void **state)
{
    struct session s;
    struct vmig_mp_frame f;
    uint64_t id;

    (void)state;
    id = commit_to_ready(&s);
    /* the connection is lost: the loaded VM is held, paused */
    assert_int_equal(first_ends(&s), -EINPROGRESS);
    assert_true(vmig_engine_recovery_ms(s.d->eng) > 0);
    assert_int_equal(s.d->resumes, 0);
    assert_int_equal(vmig_memdev_state(s.d->dev), VMIG_STATE_STOP);
    /* another source is turned away; the VM stays held */
    reconnect(&s);
    assert_int_equal(vmig_mp_send1(s.c, VMIG_MP_HELLO, 0, "x", 1), 0);
    assert_int_equal(vmig_mp_recv(s.c, &f), 0);
    assert_int_equal(f.hdr.type, VMIG_MP_ERROR);
    assert_int_equal(first_ends(&s), -EINPROGRESS);
    /* someone asking about another migration learns nothing */
    assert_int_equal(ask(&s, id ^ 1), VMIG_MP_REC_UNKNOWN);
    assert_int_equal(first_ends(&s), -EINPROGRESS);
    /* its source comes back: still waiting for GO; GO; CONFIRM */
    assert_int_equal(ask(&s, id), VMIG_MP_REC_READY);
    assert_int_equal(s.d->resumes, 0);
    assert_int_equal(send_id(s.c, VMIG_MP_GO, id), 0);
    assert_int_equal(vmig_mp_recv(s.c, &f), 0);
    assert_int_equal(f.hdr.type, VMIG_MP_CONFIRM);
    assert_int_equal(send_id(s.c, VMIG_MP_DONE, id), 0);
    assert_int_equal(first_ends(&s), 0);
    assert_int_equal(s.d->resumes, 1);
    assert_int_equal(vmig_memdev_state(s.d->dev), VMIG_STATE_RUNNING);
    assert_int_equal(vmig_memdev_work_done(s.d->dev), 10);
    assert_int_equal(vmig_engine_recovery_ms(s.d->eng), 0);
    dst_free(s.d);
}

static void
test_commit_expire(void **state)
{
    struct session s;
    struct vmig_engine_stats st;
    uint64_t id;

    (void)state;
    id = commit_to_ready(&s);
    assert_int_equal(first_ends(&s), -EINPROGRESS);
    /* the window ends without its source: discarded, never run */
    assert_int_equal(vmig_engine_recovery_expire(s.d->eng), 1);
    assert_int_equal(vmig_engine_recovery_expire(s.d->eng), 0);
    assert_int_equal(s.d->resumes, 0);
    assert_int_equal(vmig_memdev_state(s.d->dev), VMIG_STATE_RUNNING);
    vmig_engine_stats(s.d->eng, &st);
    assert_int_equal(st.status, VMIG_ENGINE_FAILED);
    assert_non_null(strstr(st.error, "source gone"));
    assert_int_equal(ask(&s, id), VMIG_MP_REC_DISCARDED);
    assert_int_equal(first_ends(&s), 1);
    /* the failure stays what query-migrate shows */
    vmig_engine_stats(s.d->eng, &st);
    assert_int_equal(st.status, VMIG_ENGINE_FAILED);
    dst_free(s.d);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_stream_with_optional_frame),
        cmocka_unit_test(test_ram_write_hook),
        cmocka_unit_test(test_hostile_frames),
        cmocka_unit_test(test_refused_layout),
        cmocka_unit_test(test_commit_go),
        cmocka_unit_test(test_commit_abort),
        cmocka_unit_test(test_commit_recover),
        cmocka_unit_test(test_commit_expire),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
