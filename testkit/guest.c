/* SPDX-License-Identifier: MIT */
/*
 * guest.c - the ledger guest program and the vCPU thread (see guest.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>
#include <vmig_testkit/guest.h>

#define GUEST_MAGIC 0x3154534747494d56ull /* "VMIGGST1" */
#define GUEST_LEDGER_OFF 4096u

struct guest_hdr {
    uint64_t magic;
    uint64_t seed;
    uint64_t steps;
    uint64_t chain;
    uint64_t ledger_cap;
    uint64_t scratch_off;
    uint64_t scratch_len;
};

static struct guest_hdr *
hdr_of(void *ram, size_t size)
{
    struct guest_hdr *h = ram;

    if (size < VMIG_GUEST_MIN_RAM || h->magic != GUEST_MAGIC ||
        h->scratch_off > size || h->scratch_len > size - h->scratch_off ||
        h->scratch_len < 8 ||
        h->ledger_cap > (h->scratch_off - GUEST_LEDGER_OFF) / 16) {
        return NULL;
    }
    return h;
}

int
vmig_guest_init(void *ram, size_t size, uint64_t seed)
{
    struct guest_hdr *h = ram;

    if (ram == NULL || size < VMIG_GUEST_MIN_RAM || size % 4096 != 0) {
        return -EINVAL;
    }
    memset(ram, 0, size);
    h->magic = GUEST_MAGIC;
    h->seed = seed;
    h->scratch_off = size / 2;
    h->scratch_len = size - h->scratch_off;
    h->ledger_cap = (h->scratch_off - GUEST_LEDGER_OFF) / 16;
    h->chain = seed;
    return 0;
}

int
vmig_guest_step(void *ram, size_t size)
{
    struct guest_hdr *h = hdr_of(ram, size);
    uint64_t in[3], *slot, at;

    if (h == NULL) {
        return -EINVAL;
    }
    if (h->steps >= h->ledger_cap) {
        return -ENOSPC;
    }
    in[0] = h->chain;
    in[1] = h->steps;
    in[2] = h->seed;
    h->chain = XXH3_64bits(in, sizeof(in));
    slot = (uint64_t *)((uint8_t *)ram + GUEST_LEDGER_OFF) + 2 * h->steps;
    slot[0] = h->steps + 1;
    slot[1] = h->chain;
    at = (h->chain % (h->scratch_len / 8)) * 8;
    memcpy((uint8_t *)ram + h->scratch_off + at, &h->chain, 8);
    /* the VMM may watch progress while the vCPU runs */
    __atomic_store_n(&h->steps, h->steps + 1, __ATOMIC_RELEASE);
    return 0;
}

uint64_t
vmig_guest_steps(const void *ram)
{
    return __atomic_load_n(&((const struct guest_hdr *)ram)->steps,
                           __ATOMIC_ACQUIRE);
}

uint64_t
vmig_guest_capacity(const void *ram, size_t size)
{
    const struct guest_hdr *h = hdr_of((void *)ram, size);

    return h == NULL ? 0 : h->ledger_cap;
}

int
vmig_guest_verify(const void *ram, size_t size, char *why, size_t len)
{
    struct guest_hdr *h = hdr_of((void *)ram, size);
    uint8_t *ref;
    uint64_t steps;
    int ret = 0;

    if (h == NULL) {
        if (why != NULL) {
            snprintf(why, len, "no guest program in RAM");
        }
        return -EINVAL;
    }
    steps = h->steps;
    if (steps > h->ledger_cap) {
        if (why != NULL) {
            snprintf(why, len, "step counter %llu beyond the ledger",
                     (unsigned long long)steps);
        }
        return -EBADMSG;
    }
    ref = malloc(size);
    if (ref == NULL) {
        return -ENOMEM;
    }
    if (vmig_guest_init(ref, size, h->seed) < 0) {
        free(ref);
        return -EINVAL;
    }
    for (uint64_t i = 0; i < steps; i++) {
        if (vmig_guest_step(ref, size) < 0) {
            ret = -EBADMSG;
            break;
        }
    }
    if (ret == 0 && memcmp(ref, ram, size) != 0) {
        size_t off = 0;

        while (off < size && ((const uint8_t *)ram)[off] == ref[off]) {
            off++;
        }
        if (why != NULL) {
            snprintf(why, len,
                     "RAM differs from the replay at byte %zu "
                     "(after %llu steps)",
                     off, (unsigned long long)steps);
        }
        ret = -EBADMSG;
    }
    free(ref);
    return ret;
}

/* ------------------------------------------------------------ vCPU */

#define VCPU_MAGIC 0x55504356474d56ull /* "VMGVCPU" */
#define VCPU_BLOB 24

struct vmig_vcpu {
    void *ram;
    size_t size;
    struct vmig_vcpu_params p;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* guarded by lock: */
    bool want_run;
    bool running; /* the thread is between steps of a running batch */
    bool quit;
    uint64_t hook_errors;
    /* registers, valid while paused: */
    uint64_t pc;
    uint64_t acc;
};

static void *
vcpu_main(void *arg)
{
    struct vmig_vcpu *v = arg;
    uint64_t batch =
        v->p.steps_per_sec == 0 ? 4096 : (v->p.steps_per_sec + 999) / 1000;
    struct timespec next;

    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&v->lock);
    for (;;) {
        uint64_t steps = 0;
        bool done = false;

        while (!v->quit && !v->want_run) {
            if (v->running) {
                const struct guest_hdr *h = v->ram;

                v->pc = h->steps;
                v->acc = h->chain;
                v->running = false;
                pthread_cond_broadcast(&v->cond);
            }
            pthread_cond_wait(&v->cond, &v->lock);
            clock_gettime(CLOCK_MONOTONIC, &next);
        }
        if (v->quit) {
            break;
        }
        v->running = true;
        pthread_mutex_unlock(&v->lock);
        for (uint64_t i = 0; i < batch; i++) {
            if (vmig_guest_step(v->ram, v->size) < 0) {
                done = true;
                break;
            }
            steps++;
        }
        /* also once the program has filled its RAM and idles: the guest
         * still drives its devices (an accelerator workload may well
         * outlast the ledger program on a loaded machine) */
        if (v->p.hook != NULL && (steps > 0 || done) &&
            v->p.hook(v->p.opaque, vmig_guest_steps(v->ram)) < 0) {
            __atomic_add_fetch(&v->hook_errors, 1, __ATOMIC_RELAXED);
        }
        /* 1 ms per batch keeps the rate; a finished program idles */
        next.tv_nsec += 1000000;
        if (next.tv_nsec >= 1000000000) {
            next.tv_nsec -= 1000000000;
            next.tv_sec++;
        }
        pthread_mutex_lock(&v->lock);
        /* a pause (or the end) cuts the wait short: pausing waits for
         * the step that runs, not for the rest of its millisecond */
        while ((v->p.steps_per_sec != 0 || done) && !v->quit && v->want_run) {
            if (pthread_cond_timedwait(&v->cond, &v->lock, &next) != 0) {
                break; /* its time came */
            }
        }
    }
    v->running = false;
    pthread_cond_broadcast(&v->cond);
    pthread_mutex_unlock(&v->lock);
    return NULL;
}

int
vmig_vcpu_new(void *ram, size_t size, const struct vmig_vcpu_params *p,
              struct vmig_vcpu **out)
{
    struct vmig_vcpu *v;
    pthread_condattr_t ca;
    int ret;

    if (ram == NULL || p == NULL || out == NULL || size < VMIG_GUEST_MIN_RAM) {
        return -EINVAL;
    }
    v = calloc(1, sizeof(*v));
    if (v == NULL) {
        return -ENOMEM;
    }
    v->ram = ram;
    v->size = size;
    v->p = *p;
    if (hdr_of(ram, size) != NULL) {
        v->pc = ((struct guest_hdr *)ram)->steps;
        v->acc = ((struct guest_hdr *)ram)->chain;
    }
    pthread_mutex_init(&v->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&v->cond, &ca);
    pthread_condattr_destroy(&ca);
    ret = pthread_create(&v->thread, NULL, vcpu_main, v);
    if (ret != 0) {
        pthread_cond_destroy(&v->cond);
        pthread_mutex_destroy(&v->lock);
        free(v);
        return -ret;
    }
    *out = v;
    return 0;
}

void
vmig_vcpu_free(struct vmig_vcpu *v)
{
    if (v == NULL) {
        return;
    }
    pthread_mutex_lock(&v->lock);
    v->quit = true;
    pthread_cond_broadcast(&v->cond);
    pthread_mutex_unlock(&v->lock);
    pthread_join(v->thread, NULL);
    pthread_cond_destroy(&v->cond);
    pthread_mutex_destroy(&v->lock);
    free(v);
}

int
vmig_vcpu_pause(struct vmig_vcpu *v)
{
    pthread_mutex_lock(&v->lock);
    v->want_run = false;
    pthread_cond_broadcast(&v->cond);
    while (v->running) {
        pthread_cond_wait(&v->cond, &v->lock);
    }
    pthread_mutex_unlock(&v->lock);
    return 0;
}

int
vmig_vcpu_resume(struct vmig_vcpu *v)
{
    pthread_mutex_lock(&v->lock);
    v->want_run = true;
    pthread_cond_broadcast(&v->cond);
    pthread_mutex_unlock(&v->lock);
    return 0;
}

bool
vmig_vcpu_running(struct vmig_vcpu *v)
{
    bool r;

    pthread_mutex_lock(&v->lock);
    r = v->want_run;
    pthread_mutex_unlock(&v->lock);
    return r;
}

uint64_t
vmig_vcpu_hook_errors(struct vmig_vcpu *v)
{
    return __atomic_load_n(&v->hook_errors, __ATOMIC_RELAXED);
}

ssize_t
vmig_vcpu_save(struct vmig_vcpu *v, void *buf, size_t cap)
{
    uint64_t regs[3];

    pthread_mutex_lock(&v->lock);
    if (v->want_run || v->running) {
        pthread_mutex_unlock(&v->lock);
        return -EBUSY;
    }
    regs[0] = VCPU_MAGIC;
    regs[1] = v->pc;
    regs[2] = v->acc;
    pthread_mutex_unlock(&v->lock);
    if (cap < sizeof(regs)) {
        return (ssize_t)sizeof(regs);
    }
    memcpy(buf, regs, sizeof(regs));
    return (ssize_t)sizeof(regs);
}

int
vmig_vcpu_load(struct vmig_vcpu *v, const void *buf, size_t len)
{
    const struct guest_hdr *h = hdr_of(v->ram, v->size);
    uint64_t regs[3];
    int ret = 0;

    if (len != VCPU_BLOB) {
        return -EBADMSG;
    }
    memcpy(regs, buf, sizeof(regs));
    /* registers must agree with RAM; with no program loaded, the only
     * consistent registers are the reset values */
    if (regs[0] != VCPU_MAGIC ||
        (h != NULL && (regs[1] != h->steps || regs[2] != h->chain)) ||
        (h == NULL && (regs[1] != 0 || regs[2] != 0))) {
        return -EBADMSG;
    }
    pthread_mutex_lock(&v->lock);
    if (v->want_run || v->running) {
        ret = -EBUSY;
    } else {
        v->pc = regs[1];
        v->acc = regs[2];
    }
    pthread_mutex_unlock(&v->lock);
    return ret;
}
