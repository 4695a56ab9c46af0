/* SPDX-License-Identifier: MIT */
/*
 * engine_vfu_cfg.c - what the VMM owns of a vfio-user device, kept by its
 * engine backend: guest RAM it may map, DMA mappings, IRQ wiring and the
 * config-space bytes the VMM wrote; saved as the device's config section
 * and, on the destination, checked whole and then applied before the
 * device leaves STOP.
 *
 * Config section (little endian), written by config_save, checked whole
 * by config_load before anything is applied:
 *
 *   u32 magic "VFUC"  u32 version 1  u32 nmaps  u32 nirqs  u32 has_cfg  u32 0
 *   nmaps x {u64 iova, u64 size, u32 prot, u32 0}
 *   nirqs x {u32 index, u32 vector}
 *   has_cfg: u8 mask[256], u8 value[256]   (config bytes the VMM wrote)
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/byteorder.h>
#include <vmig/log.h>
#include "engine_vfu_priv.h"

#define VFUC_MAGIC 0x43554656u /* "VFUC" */
#define VFUC_VERSION 1u
#define VFUC_HDR 24u
#define VFUC_MAP 24u
#define VFUC_IRQ 8u

int
vmig_engine_vfu_add_ram(struct vmig_engine_vfu *b, uint64_t iova, uint64_t size,
                        int fd, uint64_t fd_off, void *vaddr)
{
    int ret = 0;

    if (size == 0 || iova + size < iova || (fd < 0 && vaddr == NULL)) {
        return -EINVAL;
    }
    pthread_mutex_lock(&b->lock);
    for (unsigned int i = 0; i < b->nram; i++) {
        if (iova < b->ram[i].iova + b->ram[i].size &&
            b->ram[i].iova < iova + size) {
            ret = -EINVAL;
        }
    }
    if (ret == 0 && b->nram == MAX_RAM) {
        ret = -E2BIG;
    }
    if (ret == 0) {
        b->ram[b->nram++] = (struct ram_range){.iova = iova,
                                               .size = size,
                                               .fd_off = fd_off,
                                               .fd = fd,
                                               .vaddr = vaddr};
    }
    pthread_mutex_unlock(&b->lock);
    return ret;
}

static const struct ram_range *
find_ram_locked(struct vmig_engine_vfu *b, uint64_t iova, uint64_t size)
{
    for (unsigned int i = 0; i < b->nram; i++) {
        const struct ram_range *r = &b->ram[i];

        if (iova >= r->iova && size <= r->size &&
            iova - r->iova <= r->size - size) {
            return r;
        }
    }
    return NULL;
}

static int
map_locked(struct vmig_engine_vfu *b, uint64_t iova, uint64_t size,
           uint32_t prot)
{
    const struct ram_range *r = find_ram_locked(b, iova, size);
    uint64_t off;
    int ret;

    if (r == NULL || size == 0 ||
        (prot & ~(VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE)) != 0) {
        return -EINVAL;
    }
    if (b->nmaps == VMIG_ENGINE_VFU_MAX_MAPS) {
        return -E2BIG;
    }
    off = iova - r->iova;
    ret = vmig_vfu_client_dma_map(
        b->c, iova, size, prot, r->fd, r->fd_off + off,
        r->vaddr != NULL ? (uint8_t *)r->vaddr + off : NULL);
    if (ret < 0) {
        vmig_log(b->ctx, VMIG_LOG_ERR, "%s: DMA_MAP of %#llx+%#llx failed: %s",
                 b->name, (unsigned long long)iova, (unsigned long long)size,
                 strerror(-ret));
        return ret;
    }
    b->maps[b->nmaps++] = (struct dma_rec){iova, size, prot};
    return 0;
}

int
vmig_engine_vfu_dma_map(struct vmig_engine_vfu *b, uint64_t iova, uint64_t size,
                        uint32_t prot)
{
    int ret;

    pthread_mutex_lock(&b->lock);
    ret = map_locked(b, iova, size, prot);
    pthread_mutex_unlock(&b->lock);
    return ret;
}

static int
wire_locked(struct vmig_engine_vfu *b, unsigned int index, unsigned int vector,
            int efd)
{
    unsigned int k;
    int ret;

    for (k = 0; k < b->nirqs; k++) {
        if (b->irqs[k].index == index && b->irqs[k].vector == vector) {
            break;
        }
    }
    if (k == VMIG_ENGINE_VFU_MAX_IRQS) {
        return -E2BIG;
    }
    ret = vmig_vfu_client_set_irqs(b->c, index, vector, 1, &efd);
    if (ret < 0) {
        vmig_log(b->ctx, VMIG_LOG_ERR, "%s: wiring IRQ %u vector %u failed: %s",
                 b->name, index, vector, strerror(-ret));
        return ret;
    }
    if (k == b->nirqs) {
        b->irqs[b->nirqs++] = (struct irq_rec){index, vector};
    }
    return 0;
}

int
vmig_engine_vfu_set_irq(struct vmig_engine_vfu *b, unsigned int index,
                        unsigned int vector, int efd)
{
    int ret;

    if (efd < 0) {
        return -EINVAL;
    }
    pthread_mutex_lock(&b->lock);
    ret = wire_locked(b, index, vector, efd);
    pthread_mutex_unlock(&b->lock);
    return ret;
}

int
vmig_engine_vfu_config_write(struct vmig_engine_vfu *b, unsigned int offset,
                             const void *buf, size_t len)
{
    int ret;

    if (buf == NULL || len == 0 || offset >= CFG_SPACE ||
        len > CFG_SPACE - offset) {
        return -EINVAL;
    }
    pthread_mutex_lock(&b->lock);
    ret =
        vmig_vfu_client_region_write(b->c, PCI_CONFIG_REGION, offset, buf, len);
    if (ret == 0) {
        memcpy(b->cfg_val + offset, buf, len);
        memset(b->cfg_mask + offset, 0xff, len);
        b->has_cfg = true;
    }
    pthread_mutex_unlock(&b->lock);
    return ret;
}

ssize_t
vmig__evfu_config_save(void *o, void *buf, size_t cap)
{
    struct vmig_engine_vfu *b = o;
    uint8_t *p = buf;
    size_t need;

    pthread_mutex_lock(&b->lock);
    need = VFUC_HDR + (size_t)b->nmaps * VFUC_MAP +
           (size_t)b->nirqs * VFUC_IRQ + (b->has_cfg ? 2u * CFG_SPACE : 0u);
    if (need > cap) {
        pthread_mutex_unlock(&b->lock);
        return -E2BIG;
    }
    vmig_put_le32(p, VFUC_MAGIC);
    vmig_put_le32(p + 4, VFUC_VERSION);
    vmig_put_le32(p + 8, b->nmaps);
    vmig_put_le32(p + 12, b->nirqs);
    vmig_put_le32(p + 16, b->has_cfg ? 1u : 0u);
    vmig_put_le32(p + 20, 0);
    p += VFUC_HDR;
    for (unsigned int i = 0; i < b->nmaps; i++, p += VFUC_MAP) {
        vmig_put_le64(p, b->maps[i].iova);
        vmig_put_le64(p + 8, b->maps[i].size);
        vmig_put_le32(p + 16, b->maps[i].prot);
        vmig_put_le32(p + 20, 0);
    }
    for (unsigned int i = 0; i < b->nirqs; i++, p += VFUC_IRQ) {
        vmig_put_le32(p, b->irqs[i].index);
        vmig_put_le32(p + 4, b->irqs[i].vector);
    }
    if (b->has_cfg) {
        memcpy(p, b->cfg_mask, CFG_SPACE);
        memcpy(p + CFG_SPACE, b->cfg_val, CFG_SPACE);
    }
    pthread_mutex_unlock(&b->lock);
    return (ssize_t)need;
}

struct vfuc {
    unsigned int nmaps, nirqs;
    bool has_cfg;
    struct dma_rec maps[VMIG_ENGINE_VFU_MAX_MAPS];
    struct irq_rec irqs[VMIG_ENGINE_VFU_MAX_IRQS];
    const uint8_t *mask, *val;
};

/* Parse and check the whole section (hostile input) against what this
 * VMM can provide; nothing is applied here. */
static int
config_parse_locked(struct vmig_engine_vfu *b, const uint8_t *p, size_t len,
                    struct vfuc *c)
{
    size_t need;

    if (len < VFUC_HDR || vmig_get_le32(p) != VFUC_MAGIC) {
        vmig_log(b->ctx, VMIG_LOG_ERR, "%s: config section is not VFUC",
                 b->name);
        return -EBADMSG;
    }
    if (vmig_get_le32(p + 4) != VFUC_VERSION) {
        vmig_log(b->ctx, VMIG_LOG_ERR, "%s: config section version %u unknown",
                 b->name, vmig_get_le32(p + 4));
        return -EOPNOTSUPP;
    }
    c->nmaps = vmig_get_le32(p + 8);
    c->nirqs = vmig_get_le32(p + 12);
    if (c->nmaps > VMIG_ENGINE_VFU_MAX_MAPS ||
        c->nirqs > VMIG_ENGINE_VFU_MAX_IRQS || vmig_get_le32(p + 16) > 1 ||
        vmig_get_le32(p + 20) != 0) {
        return -EBADMSG;
    }
    c->has_cfg = vmig_get_le32(p + 16) == 1;
    need = VFUC_HDR + (size_t)c->nmaps * VFUC_MAP +
           (size_t)c->nirqs * VFUC_IRQ + (c->has_cfg ? 2u * CFG_SPACE : 0u);
    if (len != need) {
        return -EBADMSG;
    }
    p += VFUC_HDR;
    for (unsigned int i = 0; i < c->nmaps; i++, p += VFUC_MAP) {
        struct dma_rec *m = &c->maps[i];

        m->iova = vmig_get_le64(p);
        m->size = vmig_get_le64(p + 8);
        m->prot = vmig_get_le32(p + 16);
        if (vmig_get_le32(p + 20) != 0 ||
            (m->prot & ~(VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE)) != 0) {
            return -EBADMSG;
        }
        if (find_ram_locked(b, m->iova, m->size) == NULL || m->size == 0) {
            vmig_log(b->ctx, VMIG_LOG_ERR,
                     "%s: the source mapped %#llx+%#llx for DMA; this VMM "
                     "has no guest RAM there",
                     b->name, (unsigned long long)m->iova,
                     (unsigned long long)m->size);
            return -EINVAL;
        }
        for (unsigned int k = 0; k < i; k++) {
            if (m->iova < c->maps[k].iova + c->maps[k].size &&
                c->maps[k].iova < m->iova + m->size) {
                return -EBADMSG;
            }
        }
    }
    for (unsigned int i = 0; i < c->nirqs; i++, p += VFUC_IRQ) {
        c->irqs[i].index = vmig_get_le32(p);
        c->irqs[i].vector = vmig_get_le32(p + 4);
    }
    c->mask = p;
    c->val = p + CFG_SPACE;
    return 0;
}

static bool
irq_wired_locked(struct vmig_engine_vfu *b, const struct irq_rec *r)
{
    for (unsigned int k = 0; k < b->nirqs; k++) {
        if (b->irqs[k].index == r->index && b->irqs[k].vector == r->vector) {
            return true;
        }
    }
    return false;
}

static int
config_apply_locked(struct vmig_engine_vfu *b, const struct vfuc *c)
{
    unsigned int i = 0;
    int ret;

    /* mappings: drop ours that the source did not have, add the rest */
    while (i < b->nmaps) {
        const struct dma_rec *m = &b->maps[i];
        bool keep = false;

        for (unsigned int k = 0; k < c->nmaps; k++) {
            keep |= c->maps[k].iova == m->iova && c->maps[k].size == m->size &&
                    c->maps[k].prot == m->prot;
        }
        if (keep) {
            i++;
            continue;
        }
        ret = vmig_vfu_client_dma_unmap(b->c, m->iova, m->size);
        if (ret < 0) {
            return ret;
        }
        b->maps[i] = b->maps[--b->nmaps];
    }
    for (unsigned int k = 0; k < c->nmaps; k++) {
        bool have = false;

        for (i = 0; i < b->nmaps; i++) {
            have |= b->maps[i].iova == c->maps[k].iova;
        }
        if (!have) {
            ret = map_locked(b, c->maps[k].iova, c->maps[k].size,
                             c->maps[k].prot);
            if (ret < 0) {
                return ret;
            }
        }
    }
    for (unsigned int k = 0; k < c->nirqs; k++) {
        int efd;

        if (irq_wired_locked(b, &c->irqs[k])) {
            continue;
        }
        efd = b->irq_fd(b->opaque, c->irqs[k].index, c->irqs[k].vector);
        if (efd < 0) {
            return efd;
        }
        ret = wire_locked(b, c->irqs[k].index, c->irqs[k].vector, efd);
        if (ret < 0) {
            return ret;
        }
    }
    for (unsigned int off = 0; c->has_cfg && off < CFG_SPACE;) {
        unsigned int end = off;

        while (end < CFG_SPACE && c->mask[end] != 0) {
            end++;
        }
        if (end > off) {
            ret = vmig_vfu_client_region_write(b->c, PCI_CONFIG_REGION, off,
                                               c->val + off, end - off);
            if (ret < 0) {
                vmig_log(b->ctx, VMIG_LOG_ERR,
                         "%s: restoring PCI config [%#x, %#x) failed: %s",
                         b->name, off, end, strerror(-ret));
                return ret;
            }
            memcpy(b->cfg_val + off, c->val + off, end - off);
            memset(b->cfg_mask + off, 0xff, end - off);
            b->has_cfg = true;
        }
        off = end + 1;
    }
    return 0;
}

int
vmig__evfu_config_load(void *o, const void *buf, size_t len)
{
    struct vmig_engine_vfu *b = o;
    struct vfuc *c = calloc(1, sizeof(*c));
    int ret;

    if (c == NULL) {
        return -ENOMEM;
    }
    pthread_mutex_lock(&b->lock);
    ret = config_parse_locked(b, buf, len, c);
    for (unsigned int k = 0; ret == 0 && k < c->nirqs; k++) {
        if (b->irq_fd == NULL && !irq_wired_locked(b, &c->irqs[k])) {
            vmig_log(b->ctx, VMIG_LOG_ERR,
                     "%s: the source wired IRQ %u vector %u; this VMM did "
                     "not, and gives no eventfds",
                     b->name, c->irqs[k].index, c->irqs[k].vector);
            ret = -EINVAL;
        }
    }
    if (ret == 0) {
        ret = config_apply_locked(b, c);
    } else if (ret == -EBADMSG) {
        vmig_log(b->ctx, VMIG_LOG_ERR, "%s: config section malformed", b->name);
    }
    pthread_mutex_unlock(&b->lock);
    free(c);
    return ret;
}
