/* SPDX-License-Identifier: MIT */
/*
 * acc_server.c - the accelerator served over vfio-user: BAR0 and the
 * config space go to the model, migration is acc_mig's framework object.
 *
 * Resets, two ways in, both ending in the framework (acc_mig.h): the
 * client's DEVICE_RESET is a host reset, which resets the model; the
 * guest's RESET register resets the model first, whose callback reports a
 * guest reset to the framework (session ended, back to RUNNING).
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/ctx.h>
#include <vmig/vfu_server.h>
#include "acc_mig.h"
#include "acc_model.h"
#include "acc_server.h"

struct accsrv {
    vmig_ctx_t *ctx;
    struct vmig_vfu_server *s;
    struct acc_model *m;
    struct acc_mig *am;
};

static void *
srv_translate(void *opaque, uint64_t iova, uint64_t len, bool write)
{
    struct accsrv *a = opaque;
    void *p = NULL;
    uint32_t prot = VMIG_VFU_DMA_READ | (write ? VMIG_VFU_DMA_WRITE : 0);

    if (vmig_vfu_dma_get(a->s, iova, len, prot, &p) < 0) {
        return NULL;
    }
    return p;
}

static void
srv_release(void *opaque, uint64_t iova, uint64_t len, bool written)
{
    struct accsrv *a = opaque;

    vmig_vfu_dma_put(a->s, iova, len, written);
}

static const struct acc_dma_ops srv_dma = {
    .translate = srv_translate,
    .release = srv_release,
};

static void
srv_irq(void *opaque, unsigned int vector)
{
    struct accsrv *a = opaque;

    /* -EAGAIN: masked or not wired; the framework latches masked ones. */
    if (vmig_vfu_irq_trigger(a->s, ACC_VFU_IRQ_INDEX, vector) == -EINVAL) {
        vmig_log(a->ctx, VMIG_LOG_DEBUG, "irq vector %u not declared", vector);
    }
}

static void
srv_model_reset(void *opaque, bool guest)
{
    struct accsrv *a = opaque;

    acc_mig_model_reset(a->am, guest);
}

static const struct acc_model_ops srv_model_ops = {
    .irq = srv_irq,
    .reset = srv_model_reset,
};

static int
config_read(uint64_t off, void *buf, uint32_t len)
{
    uint8_t cfg[ACC_VFU_CONFIG_SIZE] = {0};

    cfg[0] = (uint8_t)ACC_PCI_VENDOR_ID;
    cfg[1] = (uint8_t)(ACC_PCI_VENDOR_ID >> 8);
    cfg[2] = (uint8_t)ACC_PCI_DEVICE_ID;
    cfg[3] = (uint8_t)(ACC_PCI_DEVICE_ID >> 8);
    cfg[8] = (uint8_t)ACC_HW_REVISION;
    cfg[9] = (uint8_t)ACC_PCI_CLASS;
    cfg[10] = (uint8_t)(ACC_PCI_CLASS >> 8);
    cfg[11] = (uint8_t)(ACC_PCI_CLASS >> 16);
    memcpy(buf, cfg + off, len); /* bounds checked by the framework */
    return 0;
}

static int
srv_region(void *opaque, unsigned int region, uint64_t offset, void *buf,
           uint32_t len, bool is_write)
{
    struct accsrv *a = opaque;
    uint8_t *p = buf;

    if (region == ACC_VFU_CONFIG) {
        return is_write ? 0 : config_read(offset, buf, len);
    }
    if (region != ACC_VFU_BAR0 || (offset & 3u) != 0 ||
        (len != 4 && len != 8)) {
        return -EINVAL;
    }
    for (uint32_t i = 0; i < len; i += 4) {
        uint32_t v;

        if (is_write) {
            memcpy(&v, p + i, 4);
            acc_model_mmio_write(a->m, (uint32_t)offset + i, v);
        } else {
            v = acc_model_mmio_read(a->m, (uint32_t)offset + i);
            memcpy(p + i, &v, 4);
        }
    }
    return 0;
}

static const struct vmig_vfu_dev_ops srv_ops = {
    .region_access = srv_region,
};

int
acc_serve(const struct acc_server_cfg *cfg)
{
    struct accsrv a = {0};
    struct acc_model_config mc = {
        .name = "acc",
        .qp_count = cfg->qp_count,
        .isolation = cfg->isolation,
        .dma = &srv_dma,
        .dma_opaque = &a,
        .ops = &srv_model_ops,
        .opaque = &a,
    };
    int ret;

    ret = vmig_ctx_new("vmig-acc", cfg->log, NULL, &a.ctx);
    if (ret < 0) {
        return ret;
    }
    vmig_ctx_set_level(a.ctx, cfg->level);
    mc.ctx = a.ctx;
    ret = acc_model_new(&mc, &a.m);
    if (ret < 0) {
        goto err_ctx;
    }
    ret = acc_mig_new(a.ctx, a.m, &a.am);
    if (ret < 0) {
        goto err_model;
    }
    ret = vmig_vfu_server_new(a.ctx, &srv_ops, &a, acc_mig_dev(a.am), &a.s);
    if (ret < 0) {
        goto err_mig;
    }
    ret = vmig_vfu_server_add_region(
        a.s, ACC_VFU_BAR0, ACC_BAR0_SIZE,
        VMIG_VFU_REGION_READ | VMIG_VFU_REGION_WRITE, -1, 0);
    if (ret == 0) {
        ret = vmig_vfu_server_add_region(
            a.s, ACC_VFU_CONFIG, ACC_VFU_CONFIG_SIZE,
            VMIG_VFU_REGION_READ | VMIG_VFU_REGION_WRITE, -1, 0);
    }
    if (ret == 0) {
        ret = vmig_vfu_server_add_irq(a.s, ACC_VFU_IRQ_INDEX, ACC_IRQ__COUNT);
    }
    if (ret < 0) {
        goto err_server;
    }
    ret = cfg->path != NULL ? vmig_vfu_server_listen(a.s, cfg->path)
                            : vmig_vfu_server_adopt(a.s, cfg->fd);
    if (ret < 0) {
        vmig_log(a.ctx, VMIG_LOG_ERR, "cannot serve %s: %s",
                 cfg->path != NULL ? cfg->path : "the given socket",
                 strerror(-ret));
        goto err_server;
    }
    vmig_log(a.ctx, VMIG_LOG_INFO,
             "accelerator %04x:%04x, %u queue pairs, isolation %s: serving",
             ACC_PCI_VENDOR_ID, ACC_PCI_DEVICE_ID, cfg->qp_count,
             cfg->isolation == ACC_ISO_QP ? "queue-pair" : "device");
    ret = vmig_vfu_server_run(a.s);
    if (ret == -ESHUTDOWN) {
        ret = 0;
    }

err_server:
    /* The model's worker may hold DMA windows: stop it before the server. */
    acc_model_stop(a.m);
    vmig_vfu_server_free(a.s);
err_mig:
    acc_mig_free(a.am);
err_model:
    acc_model_free(a.m);
err_ctx:
    vmig_ctx_free(a.ctx);
    return ret;
}
