/* SPDX-License-Identifier: MIT */
/*
 * flowtab_testlib.c - see flowtab_testlib.h.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "flowtab_testlib.h"

int
ft_ram_new(struct ft_ram *r, size_t len)
{
    r->fd = memfd_create("ft-guest-ram", MFD_CLOEXEC);
    if (r->fd < 0) {
        return -errno;
    }
    if (ftruncate(r->fd, (off_t)len) != 0) {
        close(r->fd);
        return -errno;
    }
    r->base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
    if (r->base == MAP_FAILED) {
        close(r->fd);
        return -errno;
    }
    r->len = len;
    return 0;
}

void
ft_ram_free(struct ft_ram *r)
{
    munmap(r->base, r->len);
    close(r->fd);
}

static void *
ram_translate(void *opaque, uint64_t iova, size_t len, bool write)
{
    struct ft_ram *r = opaque;

    (void)write;
    if (iova > r->len || len > r->len - iova) {
        return NULL;
    }
    return r->base + iova;
}

const struct ft_dma_ops ft_ram_dma = {.translate = ram_translate};

static int
peer_write(void *opaque, uint64_t off, const void *buf, size_t len)
{
    return ft_model_p2p_write(opaque, off, buf, len);
}

const struct ft_peer_ops ft_model_peer = {.write = peer_write};

static int
reg_read(void *opaque, uint32_t off, uint32_t *val)
{
    return ft_model_reg_read(opaque, off, val);
}

static int
reg_write(void *opaque, uint32_t off, uint32_t val)
{
    return ft_model_reg_write(opaque, off, val);
}

struct ft_guest_regs
ft_regs_of(struct ft_model *d)
{
    struct ft_guest_regs r = {
        .read = reg_read, .write = reg_write, .opaque = d};

    return r;
}

static void *
vcpu_main(void *arg)
{
    struct ft_vcpu *v = arg;

    while (!__atomic_load_n(&v->stop, __ATOMIC_ACQUIRE)) {
        for (unsigned int i = 0; i < v->ng; i++) {
            long r = ft_guest_post(v->g[i], v->burst, v->fwd_every);

            if (r >= 0) {
                r = ft_guest_reap(v->g[i]);
            }
            if (r < 0 && v->err == 0) {
                v->err = r;
            }
        }
        sched_yield();
    }
    return NULL;
}

int
ft_vcpu_start(struct ft_vcpu *v)
{
    v->stop = false;
    v->err = 0;
    if (v->burst == 0) {
        v->burst = 8;
    }
    return -pthread_create(&v->thread, NULL, vcpu_main, v);
}

long
ft_vcpu_stop(struct ft_vcpu *v)
{
    __atomic_store_n(&v->stop, true, __ATOMIC_RELEASE);
    pthread_join(v->thread, NULL);
    return v->err;
}

int
ft_drain(struct ft_guest *g, unsigned int timeout_ms)
{
    struct timespec t0, t;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        long r = ft_guest_reap(g);

        if (r < 0) {
            return (int)r;
        }
        if (ft_guest_outstanding(g) == 0) {
            return 0;
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >
            timeout_ms) {
            return -ETIMEDOUT;
        }
        usleep(200);
    }
}

int
ft_copy(struct ft_model *src, uint64_t sgen, struct ft_model *dst,
        uint64_t dgen, uint64_t max, uint64_t *moved)
{
    static uint8_t buf[256 << 10];

    while (max > 0) {
        size_t want = max < sizeof(buf) ? (size_t)max : sizeof(buf);
        ssize_t n = ft_read_gen(src, sgen, buf, want);
        ssize_t w;

        if (n == -ENOMSG || n == 0) {
            return 0;
        }
        if (n < 0) {
            return (int)n;
        }
        w = ft_write_gen(dst, dgen, buf, (size_t)n);
        if (w < 0) {
            return (int)w;
        }
        *moved += (uint64_t)n;
        max -= (uint64_t)n;
    }
    return 0;
}

uint64_t
ft_gen(struct ft_model *d)
{
    struct vmig_session_info si;

    vmig_dev_session(ft_model_dev(d), &si);
    return si.generation;
}

ssize_t
ft_read_gen(struct ft_model *d, uint64_t gen, void *buf, size_t len)
{
    int ret = vmig_dev_session_check(ft_model_dev(d), gen, VMIG_SESSION_SAVE);

    return ret < 0 ? ret : vmig_dev_read(ft_model_dev(d), buf, len, NULL);
}

ssize_t
ft_write_gen(struct ft_model *d, uint64_t gen, const void *buf, size_t len)
{
    int ret = vmig_dev_session_check(ft_model_dev(d), gen, VMIG_SESSION_RESUME);

    if (ret == 0) {
        ret = vmig_dev_write(ft_model_dev(d), buf, len);
    }
    return ret < 0 ? ret : (ssize_t)len;
}

int
ft_read_all(struct ft_model *d, uint64_t gen, uint8_t **buf, size_t *len)
{
    size_t cap = 1 << 20, used = 0;
    uint8_t *b = malloc(cap);

    if (b == NULL) {
        return -ENOMEM;
    }
    for (;;) {
        ssize_t n;

        if (cap - used < (64 << 10)) {
            uint8_t *nb = realloc(b, cap * 2);

            if (nb == NULL) {
                free(b);
                return -ENOMEM;
            }
            b = nb;
            cap *= 2;
        }
        n = ft_read_gen(d, gen, b + used, cap - used);
        if (n == 0) {
            break;
        }
        if (n < 0) {
            free(b);
            return (int)n;
        }
        used += (size_t)n;
    }
    *buf = b;
    *len = used;
    return 0;
}
