/* SPDX-License-Identifier: MIT */
/*
 * acc_rig.c - in-process test rig for the accelerator.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "acc_rig.h"

static uint32_t
bar_read(void *opaque, uint32_t off)
{
    struct acc_rig *r = opaque;

    return acc_model_mmio_read(r->m, off);
}

static void
bar_write(void *opaque, uint32_t off, uint32_t val)
{
    struct acc_rig *r = opaque;

    acc_model_mmio_write(r->m, off, val);
}

const struct acc_bar_ops acc_rig_bar_ops = {
    .read32 = bar_read,
    .write32 = bar_write,
};

static void
rig_irq(void *opaque, unsigned int vector)
{
    struct acc_rig *r = opaque;
    uint64_t one = 1;

    __atomic_add_fetch(&r->irq_count[vector], 1, __ATOMIC_RELAXED);
    if (write(r->irq_fd[vector], &one, sizeof(one)) < 0) {
        abort();
    }
}

static void
rig_reset(void *opaque, bool guest)
{
    struct acc_rig *r = opaque;

    __atomic_store_n(&r->last_reset_guest, guest, __ATOMIC_RELAXED);
    __atomic_add_fetch(&r->resets, 1, __ATOMIC_RELAXED);
}

const struct acc_model_ops acc_rig_model_ops = {
    .irq = rig_irq,
    .reset = rig_reset,
};

static void
rig_log(void *opaque, int level, const char *msg)
{
    struct acc_rig *r = opaque;
    size_t have, n = strlen(msg) + 1;

    (void)level;
    if (n >= sizeof(r->log)) {
        return;
    }
    pthread_mutex_lock(&r->log_lock);
    have = strlen(r->log);
    if (have + n >= sizeof(r->log)) {
        memset(r->log, 0, sizeof(r->log)); /* keep the newest */
        have = 0;
    }
    memcpy(r->log + have, msg, n - 1);
    r->log[have + n - 1] = '\n';
    r->log[have + n] = '\0';
    pthread_mutex_unlock(&r->log_lock);
}

bool
acc_rig_log_has(struct acc_rig *r, const char *needle)
{
    bool found;

    pthread_mutex_lock(&r->log_lock);
    found = strstr(r->log, needle) != NULL;
    pthread_mutex_unlock(&r->log_lock);
    return found;
}

int
acc_rig_new_model(struct acc_rig *r, uint32_t qp_count, uint32_t isolation,
                  struct acc_model **out)
{
    struct acc_model_config cfg = {
        .name = "acc-test",
        .ctx = r->ctx,
        .qp_count = qp_count,
        .isolation = isolation,
        .dma = &acc_flatmem_dma_ops,
        .dma_opaque = &r->mem,
        .ops = &acc_rig_model_ops,
        .opaque = r,
    };

    return acc_model_new(&cfg, out);
}

int
acc_rig_init(struct acc_rig *r, uint64_t ram_size, uint32_t qp_count,
             uint32_t isolation)
{
    int ret;

    memset(r, 0, sizeof(*r));
    r->irq_fd[0] = r->irq_fd[1] = -1;
    r->qp_count = qp_count;
    r->isolation = isolation;
    pthread_mutex_init(&r->log_lock, NULL);
    ret = vmig_ctx_new("acc-test", rig_log, r, &r->ctx);
    if (ret < 0) {
        return ret;
    }
    vmig_ctx_set_level(r->ctx, VMIG_LOG_DEBUG);
    ret = acc_flatmem_new(ram_size, &r->mem);
    if (ret < 0) {
        goto err_ctx;
    }
    for (int i = 0; i < ACC_IRQ__COUNT; i++) {
        r->irq_fd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (r->irq_fd[i] < 0) {
            ret = -errno;
            goto err_fds;
        }
    }
    ret = acc_rig_new_model(r, qp_count, isolation, &r->m);
    if (ret < 0) {
        goto err_fds;
    }
    return 0;

err_fds:
    for (int i = 0; i < ACC_IRQ__COUNT; i++) {
        if (r->irq_fd[i] >= 0) {
            close(r->irq_fd[i]);
        }
    }
    acc_flatmem_free(&r->mem);
err_ctx:
    vmig_ctx_free(r->ctx);
    return ret;
}

void
acc_rig_fini(struct acc_rig *r)
{
    acc_model_free(r->m);
    r->m = NULL;
    for (int i = 0; i < ACC_IRQ__COUNT; i++) {
        close(r->irq_fd[i]);
    }
    acc_flatmem_free(&r->mem);
    vmig_ctx_free(r->ctx);
    pthread_mutex_destroy(&r->log_lock);
}

int
acc_rig_migrate(struct acc_rig *r)
{
    struct acc_model *dst;
    size_t cap = acc_model_state_size(r->m), len = 0;
    uint8_t *buf = malloc(cap);
    char why[256];
    int ret;

    if (buf == NULL) {
        return -ENOMEM;
    }
    acc_model_stop(r->m);
    ret = acc_model_save(r->m, buf, cap, &len);
    if (ret < 0) {
        goto out;
    }
    ret = acc_rig_new_model(r, r->qp_count, r->isolation, &dst);
    if (ret < 0) {
        goto out;
    }
    acc_model_stop(dst);
    ret = acc_model_load(dst, buf, len, why, sizeof(why));
    if (ret < 0) {
        acc_model_free(dst);
        goto out;
    }
    acc_model_free(r->m);
    r->m = dst;
    acc_model_resume(dst);
    ret = (int)len;
out:
    free(buf);
    return ret;
}

uint32_t
acc_rig_crc32c_ref(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint32_t c = 0xffffffffu;

    for (size_t i = 0; i < n; i++) {
        c ^= s[i];
        for (int b = 0; b < 8; b++) {
            c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
        }
    }
    return ~c;
}
