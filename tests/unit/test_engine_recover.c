/* SPDX-License-Identifier: MIT */
/*
 * test_engine_recover.c - the source's recovery loop of the commit
 * protocol (docs/migration-protocol.md section 6): a source that sent GO
 * and lost the destination's answer asks again on new connections
 * (RECOVER) and ends as the destination says.
 *
 * A real source engine migrates to a real destination engine through a
 * frame-aware relay that cuts both connections at one frame type: GO on
 * its way (the destination never got it and holds the loaded VM) or
 * CONFIRM on its way back (the destination runs the VM).  The source's
 * reconnect hook then reaches either the real destination again or a
 * scripted one answering what a test needs: busy, discarded, unknown,
 * running.  Each test asserts the states the source went through (from
 * its event hook), its outcome and where the VM runs: the source never
 * resumes once GO went out unless the destination says it discarded the
 * VM or the operator overrides.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include "../loopback.h"
#include <vmig/chan.h>
#include <vmig/engine.h>
#include <vmig/migproto.h>

#define RAM_SIZE (1u << 20)

struct rvm {
    vmig_ctx_t *ctx;
    uint8_t *ram;
    struct vmig_engine *eng;
    int pauses, resumes; /* atomic */
    unsigned int seen;   /* atomic: bit per status reported */
    int rec_port;        /* where reconnect goes; 0: refused */
    int reconnects;      /* atomic */
};

static int
vm_pause(void *o)
{
    __atomic_add_fetch(&((struct rvm *)o)->pauses, 1, __ATOMIC_RELAXED);
    return 0;
}

static int
vm_resume(void *o)
{
    __atomic_add_fetch(&((struct rvm *)o)->resumes, 1, __ATOMIC_RELAXED);
    return 0;
}

static void
vm_event(void *o, enum vmig_engine_event_kind kind,
         const struct vmig_engine_stats *st)
{
    if (kind == VMIG_ENGINE_EV_STATUS) {
        __atomic_or_fetch(&((struct rvm *)o)->seen, 1u << st->status,
                          __ATOMIC_RELAXED);
    }
}

static int
vm_reconnect(void *o, struct vmig_chan **out, char *why, size_t len)
{
    struct rvm *vm = o;
    int port = __atomic_load_n(&vm->rec_port, __ATOMIC_ACQUIRE);
    int fd, ret;

    __atomic_add_fetch(&vm->reconnects, 1, __ATOMIC_RELAXED);
    fd = port != 0 ? lb_connect(port) : -ECONNREFUSED;
    if (fd < 0) {
        snprintf(why, len, "connect: %s", strerror(-fd));
        return fd;
    }
    ret = vmig_chan_plain(vm->ctx, fd, out);
    if (ret < 0) {
        close(fd);
    }
    return ret;
}

static void
vm_disconnect(void *o, struct vmig_chan *ch)
{
    (void)o;
    lb_chan_close(ch);
}

static const struct vmig_engine_vm_ops vm_ops = {
    .vcpu_pause = vm_pause,
    .vcpu_resume = vm_resume,
    .event = vm_event,
    .reconnect = vm_reconnect,
    .disconnect = vm_disconnect,
};

static struct rvm *
rvm_new(const char *name, uint8_t fill)
{
    struct rvm *vm = calloc(1, sizeof(*vm));
    struct vmig_engine_region rg;
    struct vmig_engine_params p;

    assert_non_null(vm);
    assert_int_equal(
        vmig_ctx_new(name, getenv("VMIG_TEST_LOG") ? vmig_log_stderr : NULL,
                     NULL, &vm->ctx),
        0);
    vm->ram = malloc(RAM_SIZE);
    assert_non_null(vm->ram);
    for (size_t i = 0; i < RAM_SIZE; i++) {
        vm->ram[i] = (uint8_t)(fill + i * 7);
    }
    rg.name = "ram0";
    rg.host = vm->ram;
    rg.size = RAM_SIZE;
    assert_int_equal(vmig_engine_new(vm->ctx, &rg, 1, &vm_ops, vm, &vm->eng),
                     0);
    vmig_engine_get_params(vm->eng, &p);
    p.timeout_ms = 20000;
    p.recover_timeout_ms = 20000;
    vmig_engine_set_params(vm->eng, &p);
    return vm;
}

static void
rvm_free(struct rvm *vm)
{
    vmig_engine_free(vm->eng);
    free(vm->ram);
    vmig_ctx_free(vm->ctx);
    free(vm);
}

static bool
saw(struct rvm *vm, enum vmig_engine_status s)
{
    return (__atomic_load_n(&vm->seen, __ATOMIC_RELAXED) & (1u << s)) != 0;
}

static enum vmig_engine_status
status_of(struct rvm *vm)
{
    struct vmig_engine_stats st;

    vmig_engine_stats(vm->eng, &st);
    return st.status;
}

/* ------------------------------------------------ the real destination */

/* Runs vmig_engine_incoming() on @n connections accepted on @lfd. */
struct dst_srv {
    struct rvm *vm;
    int lfd, port;
    int n;
    int ret[4];
    pthread_t th;
};

static void *
dst_main(void *arg)
{
    struct dst_srv *d = arg;

    for (int i = 0; i < d->n; i++) {
        int fd = accept(d->lfd, NULL, NULL);

        if (fd < 0) {
            d->ret[i] = -errno;
            break;
        }
        d->ret[i] = vmig_engine_incoming(d->vm->eng, fd);
        close(fd);
    }
    return NULL;
}

static void
dst_start(struct dst_srv *d, struct rvm *vm, int n)
{
    d->vm = vm;
    d->n = n;
    d->lfd = lb_listen(&d->port);
    assert_true(d->lfd >= 0);
    assert_int_equal(pthread_create(&d->th, NULL, dst_main, d), 0);
}

static void
dst_join(struct dst_srv *d)
{
    pthread_join(d->th, NULL);
    close(d->lfd);
}

/* ------------------------------------------- the frame-cutting relay */

/*
 * Relays one connection to @port; cuts both sides (and ends) at the first
 * frame of type @cut_type going in direction @cut_back (false: source to
 * destination), before any byte of it is passed on.
 */
struct relay {
    int lfd, port, to_port;
    unsigned int cut_type;
    bool cut_back;
    int a, b; /* the source's and the destination's sockets */
    int cut;  /* atomic: the frame was seen */
    pthread_t th, back;
};

struct pipe_arg {
    struct relay *r;
    bool back;
};

static bool
read_full(int fd, uint8_t *p, size_t n)
{
    while (n != 0) {
        ssize_t k = read(fd, p, n);

        if (k <= 0) {
            return false;
        }
        p += k;
        n -= (size_t)k;
    }
    return true;
}

static bool
write_full(int fd, const uint8_t *p, size_t n)
{
    while (n != 0) {
        ssize_t k = write(fd, p, n);

        if (k <= 0) {
            return false;
        }
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* One direction: the preamble, then frame by frame. */
static void
pipe_frames(struct relay *r, bool back)
{
    int from = back ? r->b : r->a, to = back ? r->a : r->b;
    static __thread uint8_t buf[64 << 10];
    struct vmig_mp_hdr h;

    if (!read_full(from, buf, VMIG_MP_PREAMBLE_LEN) ||
        !write_full(to, buf, VMIG_MP_PREAMBLE_LEN)) {
        goto out;
    }
    for (;;) {
        uint32_t left;

        if (!read_full(from, buf, VMIG_MP_HDR_LEN) ||
            vmig_mp_hdr_decode(buf, &h) < 0) {
            break;
        }
        if (h.type == r->cut_type && back == r->cut_back) {
            __atomic_store_n(&r->cut, 1, __ATOMIC_RELEASE);
            shutdown(r->a, SHUT_RDWR);
            shutdown(r->b, SHUT_RDWR);
            return;
        }
        if (!write_full(to, buf, VMIG_MP_HDR_LEN)) {
            break;
        }
        for (left = h.len; left != 0;) {
            uint32_t k = left < sizeof(buf) ? left : (uint32_t)sizeof(buf);

            if (!read_full(from, buf, k) || !write_full(to, buf, k)) {
                goto out;
            }
            left -= k;
        }
    }
out:
    shutdown(to, SHUT_WR);
}

static void *
back_main(void *arg)
{
    pipe_frames(arg, true);
    return NULL;
}

static void *
relay_main(void *arg)
{
    struct relay *r = arg;

    r->a = accept(r->lfd, NULL, NULL);
    if (r->a < 0) {
        return NULL;
    }
    r->b = lb_connect(r->to_port);
    if (r->b < 0) {
        close(r->a);
        return NULL;
    }
    if (pthread_create(&r->back, NULL, back_main, r) != 0) {
        close(r->a);
        close(r->b);
        return NULL; /* relay_join() finds nothing cut */
    }
    pipe_frames(r, false);
    pthread_join(r->back, NULL);
    close(r->a);
    close(r->b);
    return NULL;
}

static void
relay_start(struct relay *r, int to_port, unsigned int type, bool back)
{
    r->to_port = to_port;
    r->cut_type = type;
    r->cut_back = back;
    r->lfd = lb_listen(&r->port);
    assert_true(r->lfd >= 0);
    assert_int_equal(pthread_create(&r->th, NULL, relay_main, r), 0);
}

static void
relay_join(struct relay *r)
{
    pthread_join(r->th, NULL);
    close(r->lfd);
    assert_int_equal(__atomic_load_n(&r->cut, __ATOMIC_ACQUIRE), 1);
}

/* ------------------------------------------ a scripted destination */

/*
 * Answers each recovery connection with the next of @answers: a
 * RECOVER_REPLY state, or ANSWER_BUSY (ERROR EBUSY, as a destination
 * still serving another connection).  After ANSWER_RUNNING it waits for
 * DONE (@done_seen).  @ids records the migration id each RECOVER named.
 */
#define ANSWER_BUSY 100u

struct script {
    vmig_ctx_t *ctx;
    int lfd, port;
    unsigned int answers[4];
    int n;
    uint64_t ids[4];
    int done_seen;
    pthread_t th;
};

static void
script_one(struct script *sc, int i, int fd)
{
    struct vmig_mp_conn *c;
    struct vmig_mp_frame f;
    struct vmig_mp_msg in, out = {0};

    if (vmig_mp_conn_new(sc->ctx, fd, &c) < 0) {
        return;
    }
    vmig_mp_conn_set_timeout(c, 20000);
    if (vmig_mp_handshake(c) == 0 && vmig_mp_recv(c, &f) == 0 &&
        f.hdr.type == VMIG_MP_RECOVER && vmig_mp_frame_decode(&f, &in) == 0) {
        sc->ids[i] = in.recover.id;
        if (sc->answers[i] == ANSWER_BUSY) {
            out.type = VMIG_MP_ERROR;
            out.error.err = EBUSY;
            out.error.dev = VMIG_MP_NO_DEVICE;
            snprintf(out.error.reason, sizeof(out.error.reason),
                     "destination busy: another connection");
        } else {
            out.type = VMIG_MP_RECOVER_REPLY;
            out.recover_reply.id = in.recover.id;
            out.recover_reply.state = sc->answers[i];
            snprintf(out.recover_reply.reason, sizeof(out.recover_reply.reason),
                     "scripted");
        }
        if (vmig_mp_send_msg(c, &out) == 0 &&
            sc->answers[i] == VMIG_MP_REC_RUNNING && vmig_mp_recv(c, &f) == 0 &&
            f.hdr.type == VMIG_MP_DONE) {
            sc->done_seen++;
        }
    }
    vmig_mp_conn_free(c);
}

static void *
script_main(void *arg)
{
    struct script *sc = arg;

    for (int i = 0; i < sc->n; i++) {
        int fd = accept(sc->lfd, NULL, NULL);

        if (fd < 0) {
            break;
        }
        script_one(sc, i, fd);
        close(fd);
    }
    return NULL;
}

static void
script_start(struct script *sc, vmig_ctx_t *ctx)
{
    sc->ctx = ctx;
    sc->lfd = lb_listen(&sc->port);
    assert_true(sc->lfd >= 0);
    assert_int_equal(pthread_create(&sc->th, NULL, script_main, sc), 0);
}

static void
script_join(struct script *sc)
{
    pthread_join(sc->th, NULL);
    close(sc->lfd);
}

/* ------------------------------------------------------------ runs */

/* Migrate @src through @r; the source's result. */
static int
migrate_via(struct rvm *src, struct relay *r)
{
    int fd = lb_connect(r->port), ret;

    assert_true(fd >= 0);
    ret = vmig_engine_migrate(src->eng, fd);
    close(fd);
    relay_join(r);
    return ret;
}

/* The source paused once, committed, never resumed; the VM is there. */
static void
assert_landed(struct rvm *src, struct rvm *dst)
{
    assert_int_equal(status_of(src), VMIG_ENGINE_COMPLETED);
    assert_true(saw(src, VMIG_ENGINE_RECOVERING));
    assert_int_equal(src->pauses, 1);
    assert_int_equal(src->resumes, 0);
    assert_int_equal(dst->resumes, 1);
    assert_memory_equal(src->ram, dst->ram, RAM_SIZE);
}

/*
 * GO lost on its way: the destination holds the loaded VM; the source
 * asks again, learns "ready", sends GO again on the recovery connection,
 * gets CONFIRM and completes.
 */
static void
test_go_lost_sent_again(void **state)
{
    struct rvm *src = rvm_new("src", 1), *dst = rvm_new("dst", 2);
    struct dst_srv d = {0};
    struct relay r = {0};

    (void)state;
    dst_start(&d, dst, 2);
    relay_start(&r, d.port, VMIG_MP_GO, false);
    src->rec_port = d.port;
    assert_int_equal(migrate_via(src, &r), 0);
    dst_join(&d);
    assert_int_equal(d.ret[0], -EINPROGRESS); /* held, waiting for GO */
    assert_int_equal(d.ret[1], 0);            /* GO, CONFIRM, DONE */
    assert_landed(src, dst);
    assert_int_equal(src->reconnects, 1);
    assert_int_equal(status_of(dst), VMIG_ENGINE_COMPLETED);
    rvm_free(src);
    rvm_free(dst);
}

/*
 * CONFIRM lost on its way back: the destination runs the VM; the source
 * asks again, learns "running", sends DONE and completes.
 */
static void
test_confirm_lost_running(void **state)
{
    struct rvm *src = rvm_new("src", 1), *dst = rvm_new("dst", 2);
    struct dst_srv d = {0};
    struct relay r = {0};

    (void)state;
    dst_start(&d, dst, 2);
    relay_start(&r, d.port, VMIG_MP_CONFIRM, true);
    src->rec_port = d.port;
    assert_int_equal(migrate_via(src, &r), 0);
    dst_join(&d);
    assert_int_equal(d.ret[0], 0); /* it resumed the VM on GO */
    assert_int_equal(d.ret[1], 1); /* answered a RECOVER */
    assert_landed(src, dst);
    assert_int_equal(src->reconnects, 1);
    /* the recovery window ended with DONE */
    assert_int_equal(vmig_engine_recovery_ms(dst->eng), 0);
    rvm_free(src);
    rvm_free(dst);
}

/*
 * A destination busy (ERROR) is asked again; one that says it discarded
 * the VM without running it sends the source back to running it: the
 * migration fails, the VM resumes on the source, the reason says why.
 */
static void
test_busy_then_discarded(void **state)
{
    struct rvm *src = rvm_new("src", 1), *dst = rvm_new("dst", 2);
    struct script sc = {.answers = {ANSWER_BUSY, VMIG_MP_REC_DISCARDED},
                        .n = 2};
    struct vmig_engine_stats st;
    struct dst_srv d = {0};
    struct relay r = {0};
    int ret;

    (void)state;
    dst_start(&d, dst, 1);
    relay_start(&r, d.port, VMIG_MP_GO, false);
    script_start(&sc, src->ctx);
    src->rec_port = sc.port;
    ret = migrate_via(src, &r);
    script_join(&sc);
    dst_join(&d);
    assert_true(ret < 0);
    vmig_engine_stats(src->eng, &st);
    assert_int_equal(st.status, VMIG_ENGINE_FAILED);
    assert_non_null(strstr(st.error, "discarded"));
    assert_true(saw(src, VMIG_ENGINE_RECOVERING));
    assert_int_equal(src->reconnects, 2);
    assert_true(sc.ids[0] != 0 && sc.ids[0] == sc.ids[1]);
    assert_int_equal(src->resumes, 1);
    /* the real destination never got GO: it holds, then discards */
    assert_int_equal(d.ret[0], -EINPROGRESS);
    assert_int_equal(vmig_engine_recovery_expire(dst->eng), 1);
    assert_int_equal(dst->resumes, 0);
    rvm_free(src);
    rvm_free(dst);
}

/*
 * A destination that does not know the migration (restarted): asking
 * again cannot help, so the source stops at once in UNKNOWN with the VM
 * paused; vmig_engine_recover() asks again later and learns it runs
 * there.  A destination that cannot be reached at all leaves it UNKNOWN
 * when the recovery window ends, until the operator's override resumes
 * it on the source.
 */
static void
test_unknown_then_recovered(void **state)
{
    struct rvm *src = rvm_new("src", 1), *dst = rvm_new("dst", 2);
    struct script sc = {.answers = {VMIG_MP_REC_UNKNOWN, VMIG_MP_REC_RUNNING},
                        .n = 2};
    struct vmig_engine_stats st;
    struct dst_srv d = {0};
    struct relay r = {0};

    (void)state;
    dst_start(&d, dst, 1);
    relay_start(&r, d.port, VMIG_MP_GO, false);
    script_start(&sc, src->ctx);
    src->rec_port = sc.port;
    assert_int_equal(migrate_via(src, &r), -EINPROGRESS);
    vmig_engine_stats(src->eng, &st);
    assert_int_equal(st.status, VMIG_ENGINE_UNKNOWN);
    assert_non_null(strstr(st.error, "outcome unknown"));
    assert_true(saw(src, VMIG_ENGINE_RECOVERING));
    assert_true(saw(src, VMIG_ENGINE_UNKNOWN));
    assert_int_equal(src->reconnects, 1); /* hopeless: not asked again */
    assert_int_equal(src->resumes, 0);
    /* the operator asks again: it runs there */
    assert_int_equal(vmig_engine_recover(src->eng), 0);
    script_join(&sc);
    assert_int_equal(status_of(src), VMIG_ENGINE_COMPLETED);
    assert_int_equal(sc.done_seen, 1);
    assert_int_equal(src->resumes, 0);
    assert_int_equal(vmig_engine_recover(src->eng), -EINVAL);
    dst_join(&d);
    assert_int_equal(vmig_engine_recovery_expire(dst->eng), 1);
    rvm_free(src);
    rvm_free(dst);
}

static void
test_unreachable_then_override(void **state)
{
    struct rvm *src = rvm_new("src", 1), *dst = rvm_new("dst", 2);
    struct vmig_engine_params p;
    struct vmig_engine_stats st;
    struct dst_srv d = {0};
    struct relay r = {0};

    (void)state;
    vmig_engine_get_params(src->eng, &p);
    p.recover_timeout_ms = 1000;
    vmig_engine_set_params(src->eng, &p);
    dst_start(&d, dst, 1);
    relay_start(&r, d.port, VMIG_MP_GO, false);
    src->rec_port = 0; /* every reconnect refused */
    assert_int_equal(migrate_via(src, &r), -EINPROGRESS);
    vmig_engine_stats(src->eng, &st);
    assert_int_equal(st.status, VMIG_ENGINE_UNKNOWN);
    assert_true(src->reconnects >= 2); /* asked until the window ended */
    assert_int_equal(src->resumes, 0);
    /* still unreachable when asked again: unknown again */
    assert_int_equal(vmig_engine_recover(src->eng), -EINPROGRESS);
    assert_int_equal(status_of(src), VMIG_ENGINE_UNKNOWN);
    assert_int_equal(src->resumes, 0);
    /* the operator knows the destination is gone */
    assert_int_equal(vmig_engine_resume_source(src->eng), 0);
    assert_int_equal(src->resumes, 1);
    assert_int_equal(status_of(src), VMIG_ENGINE_FAILED);
    assert_int_equal(vmig_engine_resume_source(src->eng), -EINVAL);
    dst_join(&d);
    assert_int_equal(vmig_engine_recovery_expire(dst->eng), 1);
    assert_int_equal(dst->resumes, 0);
    rvm_free(src);
    rvm_free(dst);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_go_lost_sent_again),
        cmocka_unit_test(test_confirm_lost_running),
        cmocka_unit_test(test_busy_then_discarded),
        cmocka_unit_test(test_unknown_then_recovered),
        cmocka_unit_test(test_unreachable_then_override),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
