/* SPDX-License-Identifier: MIT */
/*
 * engine_chan_vm.c - the parallel-channel tests' fixture (engine_chan_vm.h).
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
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "../loopback.h"
#include "engine_vm.h"
#include <vmig/engine.h>
#include <vmig/engine_chan.h>
#include <vmig_testkit/guest.h>
#include <vmig_testkit/memdev.h>
#include "engine_chan.h"
#include "engine_priv.h"
#include "engine_chan_vm.h"

/* ------------------------------------------------------------ cut proxy */

struct cut {
    int a, b;
    uint64_t after;
};

/* Forward a -> b (and b -> a) until @after bytes went a -> b, then cut. */
static void *
cut_main(void *arg)
{
    struct cut *x = arg;
    uint64_t fwd = 0;
    static uint8_t buf[1 << 16];

    for (;;) {
        struct pollfd pf[2] = {{.fd = x->a, .events = POLLIN},
                               {.fd = x->b, .events = POLLIN}};
        ssize_t n;

        if (poll(pf, 2, CHAN_PEER_TIMEOUT_MS) <= 0) {
            break;
        }
        if (pf[0].revents) {
            size_t want = sizeof(buf);

            if (x->after - fwd < want) {
                want = (size_t)(x->after - fwd);
            }
            n = read(x->a, buf, want);
            if (n <= 0 || write(x->b, buf, (size_t)n) != n) {
                break;
            }
            fwd += (uint64_t)n;
            if (fwd >= x->after) {
                break;
            }
        }
        if (pf[1].revents) {
            n = read(x->b, buf, sizeof(buf));
            if (n <= 0 || write(x->a, buf, (size_t)n) != n) {
                break;
            }
        }
    }
    shutdown(x->a, SHUT_RDWR);
    shutdown(x->b, SHUT_RDWR);
    close(x->a);
    close(x->b);
    free(x);
    return NULL;
}

/* ------------------------------------------------------------ chan ops */

static int
ops_open(void *opaque, unsigned int index, const int *cancel,
         struct vmig_chan **out)
{
    struct tvm *vm = opaque;
    int fd, ret;

    (void)cancel;
    if (CHX(vm)->pre_open != NULL) {
        ret = CHX(vm)->pre_open(vm, index);
        if (ret < 0) {
            return ret;
        }
    }
    fd = lb_connect(CHX(vm)->port);
    if (fd < 0) {
        return fd;
    }
    if (CHX(vm)->sndbuf != 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE,
                                           &CHX(vm)->sndbuf, sizeof(int)) < 0) {
        /* not privileged: as much as the system allows */
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &CHX(vm)->sndbuf,
                         sizeof(int));
    }
    if (CHX(vm)->cut_after != 0 && index == CHX(vm)->cut_index) {
        /* a proxy in the middle: the source talks to it */
        struct cut *x = calloc(1, sizeof(*x));
        int port, lfd = lb_listen(&port);

        assert_non_null(x);
        assert_true(lfd >= 0);
        x->b = fd;
        x->after = CHX(vm)->cut_after;
        fd = lb_connect(port);
        assert_true(fd >= 0);
        x->a = accept(lfd, NULL, NULL);
        assert_true(x->a >= 0);
        close(lfd);
        assert_int_equal(pthread_create(&CHX(vm)->cut_th, NULL, cut_main, x),
                         0);
        CHX(vm)->cut_live = true;
    }
    ret = vmig_chan_plain(vm->ctx, fd, out);
    if (ret < 0) {
        close(fd);
        return ret;
    }
    CHX(vm)->opened++;
    return 0;
}

static void
ops_release(void *opaque, struct vmig_chan *ch)
{
    (void)opaque;
    lb_chan_close(ch);
}

static const struct vmig_engine_chan_ops chan_ops = {
    .open = ops_open,
    .release = ops_release,
};

/* ------------------------------------------------------------ VMs */

void
set_channels(struct tvm *vm, unsigned int n)
{
    struct vmig_engine_params p;

    vmig_engine_get_params(vm->eng, &p);
    p.channels = n;
    p.timeout_ms = CHAN_PEER_TIMEOUT_MS;
    vmig_engine_set_params(vm->eng, &p);
}

struct tvm *
tvm_new_ops(const char *name, bool program, uint64_t seed,
            unsigned int channels, const struct vmig_engine_dev_ops *dev_ops,
            const struct vmig_engine_vm_ops *vm_ops)
{
    static const char *const names[NDEV] = {"acc0", "nic0", "gpu0"};
    static const uint64_t flags[NDEV] = {
        VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_P2P,
        VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_P2P,
        VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_P2P};
    struct tvm_cfg cfg = {.ram_size = RAM_SIZE,
                          .dev_state = DEV_STATE,
                          .ndev = NDEV,
                          .names = names,
                          .flags = flags,
                          .revision = 1,
                          .vm_ops = vm_ops,
                          .dev_ops = dev_ops};
    struct tvm *vm = tvm_make(name, program, seed, &cfg);

    vm->ext = calloc(1, sizeof(struct chx));
    assert_non_null(vm->ext);
    assert_int_equal(vmig_engine_set_chan_ops(vm->eng, &chan_ops, vm), 0);
    set_channels(vm, channels);
    return vm;
}

struct tvm *
tvm_new(const char *name, bool program, uint64_t seed, unsigned int channels)
{
    return tvm_new_ops(name, program, seed, channels, NULL, NULL);
}

/* The peer timeout of @vm's engine. */
void
set_peer_timeout(struct tvm *vm, unsigned int ms)
{
    struct vmig_engine_params p;

    vmig_engine_get_params(vm->eng, &p);
    p.timeout_ms = ms;
    vmig_engine_set_params(vm->eng, &p);
}

/* ------------------------------------------------------------ destination */

/* Accepts the main connection, runs the engine on it, and hands every
 * further connection to vmig_engine_accept_chan() meanwhile. */
static void *
dst_incoming(void *arg)
{
    struct dst_side *j = arg;

    j->ret = vmig_engine_incoming(j->vm->eng, j->main_fd);
    __atomic_store_n(&j->in_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void *
dst_main(void *arg)
{
    struct dst_side *j = arg;

    j->main_fd = accept(j->lfd, NULL, NULL);
    if (j->main_fd < 0) {
        j->ret = -errno;
        return NULL;
    }
    assert_int_equal(pthread_create(&j->in_th, NULL, dst_incoming, j), 0);
    while (!__atomic_load_n(&j->in_done, __ATOMIC_ACQUIRE)) {
        struct pollfd pf = {.fd = j->lfd, .events = POLLIN};
        struct vmig_chan *ch;
        int fd, ret;

        if (poll(&pf, 1, 20) <= 0) {
            continue;
        }
        fd = accept(j->lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        assert_int_equal(vmig_chan_plain(j->vm->ctx, fd, &ch), 0);
        ret =
            vmig_engine_accept_chan(j->vm->eng, ch, NULL, CHAN_PEER_TIMEOUT_MS);
        if (j->naccept < MAX_ACCEPTS) {
            j->accept_ret[j->naccept++] = ret;
        }
        if (ret < 0) {
            lb_chan_close(ch);
        }
    }
    pthread_join(j->in_th, NULL);
    close(j->main_fd);
    return NULL;
}

static const struct vmig_engine_chan_ops dst_ops = {.release = ops_release};

/* Migrate @src to @dst; the destination's side in @j (its result, the
 * accept results). */
int
migrate(struct tvm *src, struct tvm *dst, struct dst_side *j)
{
    int fd, ret;

    memset(j, 0, sizeof(*j));
    j->vm = dst;
    assert_int_equal(vmig_engine_set_chan_ops(dst->eng, &dst_ops, dst), 0);
    j->lfd = lb_listen(&CHX(src)->port);
    assert_true(j->lfd >= 0);
    assert_int_equal(pthread_create(&j->th, NULL, dst_main, j), 0);
    fd = lb_connect(CHX(src)->port);
    assert_true(fd >= 0);
    CHX(src)->opened = 0;
    ret = vmig_engine_migrate(src->eng, fd);
    close(fd);
    pthread_join(j->th, NULL);
    close(j->lfd);
    if (CHX(src)->cut_live) {
        pthread_join(CHX(src)->cut_th, NULL);
        CHX(src)->cut_live = false;
    }
    /* the source side's ops again, for a migration back */
    assert_int_equal(vmig_engine_set_chan_ops(dst->eng, &chan_ops, dst), 0);
    return ret;
}

void
check_landed(struct tvm *src, struct tvm *dst)
{
    struct vmig_engine_stats st;

    tvm_check_moved(src, dst);
    vmig_engine_stats(src->eng, &st);
    assert_int_equal(st.status, VMIG_ENGINE_COMPLETED);
    assert_int_equal(st.ram_transferred, RAM_SIZE);
    vmig_engine_stats(dst->eng, &st);
    assert_int_equal(st.status, VMIG_ENGINE_COMPLETED);
    assert_int_equal(st.ram_transferred, RAM_SIZE);
    for (int i = 0; i < NDEV; i++) {
        assert_true(st.dev[i].bytes >= DEV_STATE);
    }
    dst->resumes = 0;
}

void
migrate_lands(struct tvm *src, struct tvm *dst, struct vmig_engine_stats *st)
{
    struct vmig_engine_stats s, d;
    struct dst_side j;
    int ret = migrate(src, dst, &j);

    vmig_engine_stats(src->eng, &s);
    vmig_engine_stats(dst->eng, &d);
    if (ret != 0 || j.ret != 0) {
        print_message("source: %s\ndestination: %s\n", s.error, d.error);
    }
    assert_int_equal(ret, 0);
    assert_int_equal(j.ret, 0);
    check_landed(src, dst);
    if (st != NULL) {
        *st = s;
    }
}

void
check_discarded(const struct tvm *dst)
{
    assert_int_equal(dst->resumes, 0);
    for (int i = 0; i < NDEV; i++) {
        assert_int_equal(vmig_memdev_state(dst->dev[i]), VMIG_STATE_RUNNING);
    }
}
