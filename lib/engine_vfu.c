/* SPDX-License-Identifier: MIT */
/*
 * engine_vfu.c - the engine's vfio-user device backend (<vmig/engine_vfu.h>).
 *
 * Ops map one to one onto the client; what this file adds is the device's
 * identity for HELLO, the VMM-owned config section, and the shape of
 * reads: bounded bursts in PRE_COPY / PRE_COPY_P2P (sized by PRECOPY_INFO
 * when each burst starts), to the end in STOP_COPY.  Every read is one
 * bounded pull straight into the engine's buffer (over the bulk channel
 * when negotiated): the backend holds no device data of its own, so a
 * device's state streams device -> wire one engine chunk at a time.
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
#include <xxhash.h>
#include <vmig/byteorder.h>
#include <vmig/compat.h>
#include <vmig/engine_vfu.h>
#include <vmig/log.h>
#include <vmig/stream.h>

#define VFUC_MAGIC 0x43554656u /* "VFUC" */
#define VFUC_VERSION 1u
#define VFUC_HDR 24u
#define VFUC_MAP 24u
#define VFUC_IRQ 8u
#define CFG_SPACE VMIG_ENGINE_VFU_CONFIG_SPACE
#define PCI_CONFIG_REGION 7u
#define MAX_RAM 8
#define PROBE_HDR (VMIG_STREAM_HEADER_SIZE + VMIG_STREAM_REC_HEADER_SIZE)
/* The first STOP_COPY pull is this small, and each next one twice the
 * last, up to what the engine asks: the first bytes go on the wire while
 * the device still produces the rest, without a round trip per 256 KiB
 * after that. */
#define FIRST_PULL (256u << 10)
/* PRE_COPY bytes per read burst when the device gives no sizing. */
#define PRECOPY_BURST_MAX (64ull << 20)

struct ram_range {
    uint64_t iova, size, fd_off;
    int fd;
    void *vaddr;
};

struct dma_rec {
    uint64_t iova, size;
    uint32_t prot;
};

struct irq_rec {
    unsigned int index, vector;
};

struct vmig_engine_vfu {
    vmig_ctx_t *ctx;
    struct vmig_vfu_client *c;
    char name[64];
    vmig_engine_vfu_irq_fn *irq_fd;
    void *opaque;
    uint64_t flags;
    struct vmig_pci_ids ids;
    uint8_t *desc; /* binary descriptor, or NULL */
    size_t desc_len;
    struct vmig_compat_desc *cdesc; /* decoded @desc */

    pthread_mutex_t lock; /* guards everything below */
    unsigned int nram, nmaps, nirqs;
    struct ram_range ram[MAX_RAM];
    struct dma_rec maps[VMIG_ENGINE_VFU_MAX_MAPS];
    struct irq_rec irqs[VMIG_ENGINE_VFU_MAX_IRQS];
    uint8_t cfg_mask[CFG_SPACE], cfg_val[CFG_SPACE];
    bool has_cfg;

    bool send;       /* the saving session reached its end (engine thread) */
    size_t pull_max; /* the next STOP_COPY pull's limit; 0: first */

    /* PRE_COPY read burst (engine thread only): set_state's target (the
     * state the backend believes the device is in), whether a burst is
     * running and how many bytes it may still return */
    enum vmig_state state;
    bool burst;
    bool dry; /* this burst's last save found nothing more for now */
    uint64_t budget;

    /* sizing without the device's help (a server without x-vmig): bytes
     * read in this PRE_COPY session, in the running burst, and in the
     * last burst that ended (engine thread only) */
    uint64_t pc_read, burst_bytes, last_burst;
    bool have_last;
    bool xvmig; /* the server negotiated vmig's extensions */
};

static void
save_drop(struct vmig_engine_vfu *b)
{
    b->send = false;
    b->pull_max = 0;
    b->burst = false;
    b->budget = 0;
    b->pc_read = 0;
    b->burst_bytes = 0;
    b->last_burst = 0;
    b->have_last = false;
}

/* Read exactly @len bytes of the PRE_COPY session; -ENOMSG if it has
 * fewer. */
static int
probe_read(struct vmig_engine_vfu *b, uint8_t *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        long n = vmig_vfu_client_mig_read(b->c, buf + got, len - got);

        if (n <= 0) {
            return n == 0 ? -ENOMSG : (int)n;
        }
        got += (size_t)n;
    }
    return 0;
}

/* The envelope's header and DESCRIPTOR record, checked (docs/stream-format.md
 * §3, §4); 0 with b->desc set, or -errno (no descriptor). */
static int
probe_envelope(struct vmig_engine_vfu *b)
{
    static const uint8_t magic[8] = {'V', 'M', 'I', 'G', 'D', 'E', 'V', 1};
    uint8_t h[PROBE_HDR], tail[8];
    uint64_t len;
    uint8_t *d;
    int ret;

    ret = probe_read(b, h, sizeof(h));
    if (ret < 0) {
        return ret;
    }
    if (memcmp(h, magic, sizeof(magic)) != 0 ||
        XXH3_64bits_withSeed(h, 24, 0) != vmig_get_le64(h + 24) ||
        vmig_get_le32(h + 32) != VMIG_REC_DESCRIPTOR ||
        XXH3_64bits_withSeed(h + 32, 16, 0) != vmig_get_le64(h + 48)) {
        return -EBADMSG;
    }
    len = vmig_get_le64(h + 40);
    if (len == 0 || len > VMIG_COMPAT_BIN_MAX || len > VMIG_MP_DESC_MAX) {
        return -EBADMSG;
    }
    d = malloc((size_t)len);
    if (d == NULL) {
        return -ENOMEM;
    }
    ret = probe_read(b, d, (size_t)len);
    if (ret == 0) {
        ret = probe_read(b, tail, sizeof(tail));
    }
    if (ret == 0 &&
        XXH3_64bits_withSeed(d, (size_t)len, 0) != vmig_get_le64(tail)) {
        ret = -EBADMSG;
    }
    if (ret == 0) {
        ret = vmig_compat_desc_from_bin(d, (size_t)len, &b->cdesc, NULL, 0);
    }
    if (ret < 0) {
        free(d);
        return ret;
    }
    b->desc = d;
    b->desc_len = (size_t)len;
    return 0;
}

/*
 * Open a PRE_COPY session, look for a descriptor, close it again.  Only
 * for a server that negotiated vmig's extensions (vmig's own devices put
 * their descriptor first in the state for this) and advertised PRE_COPY:
 * any other server is never moved to a state a migration did not ask
 * for - real servers assert on that.
 */
static int
probe_desc(struct vmig_engine_vfu *b)
{
    enum vmig_state st;
    int ret, ret2;

    if ((b->flags & VMIG_MIGRATION_PRE_COPY) == 0 || !b->xvmig) {
        return 0;
    }
    ret = vmig_vfu_client_get_state(b->c, &st);
    if (ret < 0 || st != VMIG_STATE_RUNNING) {
        return ret < 0 ? ret : 0;
    }
    ret = vmig_vfu_client_set_state(b->c, VMIG_STATE_PRE_COPY);
    if (ret < 0) {
        vmig_log(b->ctx, VMIG_LOG_DEBUG,
                 "%s: no PRE_COPY session to read a descriptor from: %s",
                 b->name, strerror(-ret));
        return 0;
    }
    ret = probe_envelope(b);
    if (ret < 0) {
        vmig_log(b->ctx, VMIG_LOG_INFO,
                 "%s: no vmig descriptor in its state (%s); identified by "
                 "its PCI ids if it has them, data carried opaque",
                 b->name, strerror(-ret));
    }
    ret2 = vmig_vfu_client_set_state(b->c, VMIG_STATE_RUNNING);
    if (ret2 < 0) {
        vmig_log(b->ctx, VMIG_LOG_WARNING,
                 "%s: leaving the probe session failed (%s); resetting",
                 b->name, strerror(-ret2));
        return vmig_vfu_client_reset(b->c);
    }
    return ret == -ENOMEM ? ret : 0;
}

static void
probe_ids(struct vmig_engine_vfu *b)
{
    struct vmig_vfu_device_info di;
    struct vmig_vfu_region_info ri;
    uint8_t cfg[0x30];

    if (vmig_vfu_client_device_info(b->c, &di) < 0 ||
        di.num_regions <= PCI_CONFIG_REGION ||
        vmig_vfu_client_region_info(b->c, PCI_CONFIG_REGION, &ri, NULL) < 0 ||
        ri.size < sizeof(cfg) || (ri.flags & VMIG_VFU_REGION_READ) == 0 ||
        vmig_vfu_client_region_read(b->c, PCI_CONFIG_REGION, 0, cfg,
                                    sizeof(cfg)) < 0) {
        return;
    }
    b->ids.vendor = (uint16_t)(cfg[0] | cfg[1] << 8);
    b->ids.device = (uint16_t)(cfg[2] | cfg[3] << 8);
    b->ids.revision = cfg[8];
    b->ids.subsys_vendor = (uint16_t)(cfg[0x2c] | cfg[0x2d] << 8);
    b->ids.subsys_device = (uint16_t)(cfg[0x2e] | cfg[0x2f] << 8);
    b->ids.valid = b->ids.vendor != 0 && b->ids.vendor != 0xffff;
}

/*
 * The device's migration flags: the one source of truth for the states
 * this backend may ever ask for.  Bits the kernel's uAPI does not define
 * (yet) are dropped with a warning - they can only name states vmig does
 * not know, which it never asks for; a device without STOP_COPY cannot
 * migrate (the spec: "at least VFIO_MIGRATION_STOP_COPY must be set").
 */
static int
read_flags(struct vmig_engine_vfu *b)
{
    char fl[64];
    int ret = vmig_vfu_client_mig_flags(b->c, &b->flags);

    if (ret < 0) {
        vmig_log(b->ctx, VMIG_LOG_ERR,
                 "%s: cannot read its migration flags (DEVICE_FEATURE "
                 "MIGRATION GET): %s%s",
                 b->name, strerror(-ret),
                 ret == -EOPNOTSUPP || ret == -EINVAL || ret == -ENOTTY
                     ? "; the device does not support migration"
                     : "");
        return ret == -EINVAL || ret == -ENOTTY ? -EOPNOTSUPP : ret;
    }
    if (b->flags & ~(uint64_t)VMIG_MIGRATION__ALL) {
        vmig_log(b->ctx, VMIG_LOG_WARNING,
                 "%s: migration flags %s carry bits vmig does not know; "
                 "they are ignored (no state they might name is ever asked "
                 "for)",
                 b->name, vmig_flags_format(b->flags, fl, sizeof(fl)));
        b->flags &= VMIG_MIGRATION__ALL;
    }
    if (!(b->flags & VMIG_MIGRATION_STOP_COPY)) {
        vmig_log(b->ctx, VMIG_LOG_ERR,
                 "%s: migration flags %s lack STOP_COPY; the vfio-user "
                 "specification says at least VFIO_MIGRATION_STOP_COPY must "
                 "be set: the device cannot migrate",
                 b->name, vmig_flags_format(b->flags, fl, sizeof(fl)));
        return -EOPNOTSUPP;
    }
    return 0;
}

int
vmig_engine_vfu_new(vmig_ctx_t *ctx, struct vmig_vfu_client *c,
                    const struct vmig_engine_vfu_params *p,
                    struct vmig_engine_vfu **out)
{
    struct vmig_engine_vfu *b;
    struct vmig_vfu_caps caps;
    int ret;

    if (ctx == NULL || c == NULL || p == NULL || out == NULL) {
        return -EINVAL;
    }
    b = calloc(1, sizeof(*b));
    if (b == NULL) {
        return -ENOMEM;
    }
    b->ctx = ctx;
    b->c = c;
    snprintf(b->name, sizeof(b->name), "%s",
             p->name != NULL ? p->name : "vfio-user");
    b->irq_fd = p->irq_fd;
    b->opaque = p->opaque;
    pthread_mutex_init(&b->lock, NULL);
    vmig_vfu_client_set_name(c, b->name);
    vmig_vfu_client_caps(c, &caps);
    b->xvmig = caps.ext != 0;
    ret = read_flags(b);
    if (ret < 0) {
        goto err;
    }
    probe_ids(b);
    if (!p->no_probe) {
        ret = probe_desc(b);
        if (ret < 0) {
            goto err;
        }
    }
    if (vmig_vfu_client_get_state(c, &b->state) < 0) {
        b->state = VMIG_STATE_RUNNING; /* as documented for a new backend */
    }
    vmig_log(ctx, VMIG_LOG_DEBUG,
             "%s: flags %#llx, %s descriptor, PCI ids %s %04x:%04x", b->name,
             (unsigned long long)b->flags, b->desc ? "vmig" : "no",
             b->ids.valid ? "valid" : "none", b->ids.vendor, b->ids.device);
    *out = b;
    return 0;
err:
    vmig_engine_vfu_free(b);
    return ret;
}

void
vmig_engine_vfu_free(struct vmig_engine_vfu *b)
{
    if (b == NULL) {
        return;
    }
    vmig_compat_desc_free(b->cdesc);
    free(b->desc);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

void
vmig_engine_vfu_identity(struct vmig_engine_vfu *b, struct vmig_pci_ids *ids,
                         size_t *desc_len)
{
    if (ids != NULL) {
        *ids = b->ids;
    }
    if (desc_len != NULL) {
        *desc_len = b->desc_len;
    }
}

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

/* ---- backend ops ---- */

static int
op_get_flags(void *o, uint64_t *flags)
{
    struct vmig_engine_vfu *b = o;

    *flags = b->flags;
    return 0;
}

static bool
precopy_state(enum vmig_state st)
{
    return st == VMIG_STATE_PRE_COPY || st == VMIG_STATE_PRE_COPY_P2P;
}

static int
op_get_state(void *o, enum vmig_state *st)
{
    struct vmig_engine_vfu *b = o;
    int ret = vmig_vfu_client_get_state(b->c, st);

    if (ret == 0 && *st != b->state) {
        /* changed behind our back (a reset): no burst of ours survives */
        save_drop(b);
        b->state = *st;
    }
    return ret;
}

static int
op_set_state(void *o, enum vmig_state target)
{
    struct vmig_engine_vfu *b = o;
    enum vmig_state now;
    char fl[64];
    int ret;

    /* only states the device advertised, whatever asks */
    if (!vmig_state_supported(b->flags, target)) {
        vmig_log(b->ctx, VMIG_LOG_ERR,
                 "%s: %s is not a state this device has (its migration "
                 "flags: %s); not asked for",
                 b->name, vmig_state_name(target),
                 vmig_flags_format(b->flags, fl, sizeof(fl)));
        return -EOPNOTSUPP;
    }
    if (precopy_state(b->state) &&
        (precopy_state(target) || target == VMIG_STATE_STOP_COPY)) {
        /* the saving session goes on */
        b->burst = false;
        b->budget = 0;
    } else {
        save_drop(b);
    }
    ret = vmig_vfu_client_set_state(b->c, target);
    if (ret == 0) {
        b->state = target;
    } else if (vmig_vfu_client_get_state(b->c, &now) == 0) {
        b->state = now; /* anywhere along the path: ask */
    } else {
        b->state = VMIG_STATE_ERROR;
    }
    return ret;
}

/*
 * How many bytes a PRE_COPY read burst may return: what the device says
 * is pending when the burst starts (PRECOPY_INFO initial + dirty, the
 * bound VFIO_MIG_GET_PRECOPY_INFO gives a VMM), else its stop-copy size
 * estimate, else PRECOPY_BURST_MAX.  A device that keeps dirtying its
 * state faster than it is read therefore still ends each burst, and
 * what it dirtied meanwhile goes in the next one.  A failing query
 * (e.g. -EINVAL because a reset took the device out of PRE_COPY) is not
 * reported here: the read that follows returns the session's own error.
 */
static uint64_t
burst_budget(struct vmig_engine_vfu *b)
{
    uint64_t initial = 0, dirty = 0, size = 0;
    int ret = vmig_vfu_client_precopy_info(b->c, &initial, &dirty);

    if (ret == 0) {
        return initial + dirty < initial ? UINT64_MAX : initial + dirty;
    }
    if (ret == -EOPNOTSUPP && vmig_vfu_client_data_size(b->c, &size) == 0 &&
        size > 0) {
        return size < PRECOPY_BURST_MAX ? size : PRECOPY_BURST_MAX;
    }
    return PRECOPY_BURST_MAX;
}

/* A PRE_COPY burst ended: remember its size for op_data_size(). */
static void
burst_end(struct vmig_engine_vfu *b)
{
    b->burst = false;
    b->last_burst = b->burst_bytes;
    b->have_last = true;
    b->burst_bytes = 0;
}

/*
 * PRE_COPY: a burst is at most its budget; each read pulls at most what
 * the engine asked for (and the budget leaves) straight into its buffer.
 * -ENOMSG ends the burst (the device has nothing now, or the budget is
 * spent) and the next read starts a new one.  After a reset the pull
 * fails with the server's -ENODEV and the engine restarts the whole
 * stream.
 */
static ssize_t
read_precopy(struct vmig_engine_vfu *b, void *buf, size_t cap)
{
    size_t want, got = 0;
    int ret;

    if (!b->burst) {
        b->burst = true;
        b->dry = false;
        b->budget = burst_budget(b);
    }
    if (b->budget == 0 || b->dry) {
        burst_end(b);
        return -ENOMSG;
    }
    want = b->budget < cap ? (size_t)b->budget : cap;
    ret = vmig_vfu_client_mig_pull(b->c, buf, want, &got);
    if (ret == -ENOMSG || ret == 0) {
        b->dry = true; /* an end outside STOP_COPY reads as "for now" */
    } else if (ret != -EAGAIN) {
        if (ret == -ENODEV) {
            vmig_log(b->ctx, VMIG_LOG_WARNING,
                     "%s: its PRE_COPY session ended by a device reset; "
                     "the engine restarts this device's precopy or aborts",
                     b->name);
        } else {
            vmig_log(b->ctx, VMIG_LOG_ERR,
                     "%s: reading its PRE_COPY data failed: %s", b->name,
                     strerror(-ret));
        }
        save_drop(b);
        return ret;
    }
    b->budget -= got < b->budget ? got : b->budget;
    b->pc_read += got;
    b->burst_bytes += got;
    if (got == 0) {
        burst_end(b);
        return -ENOMSG;
    }
    return (ssize_t)got;
}

/*
 * STOP_COPY (and any other state): each read pulls at most @cap bytes of
 * the session straight into the engine's buffer, so the first bytes go
 * on the wire while the device still produces the rest, and the VMM
 * never holds more than one engine chunk of the device's state.  The
 * first pull is FIRST_PULL, the next ones double up to @cap.
 */
static ssize_t
op_read(void *o, void *buf, size_t cap)
{
    struct vmig_engine_vfu *b = o;
    size_t got = 0;
    int ret;

    if (cap == 0) {
        return -EINVAL;
    }
    if (precopy_state(b->state)) {
        return read_precopy(b, buf, cap);
    }
    if (b->send) {
        save_drop(b); /* the end was reached with the last bytes */
        return 0;
    }
    if (b->pull_max == 0) {
        b->pull_max = FIRST_PULL;
    } else if (b->pull_max < cap) {
        b->pull_max *= 2;
    }
    if (b->pull_max < cap) {
        cap = b->pull_max;
    }
    ret = vmig_vfu_client_mig_pull(b->c, buf, cap, &got);
    if (ret == 0) {
        if (got == 0) {
            save_drop(b);
            return 0;
        }
        b->send = true;
    } else if (ret == -ENOMSG) {
        /* "nothing now" outside PRE_COPY: the engine decides */
        if (got == 0) {
            return -ENOMSG;
        }
    } else if (ret != -EAGAIN) {
        vmig_log(b->ctx, VMIG_LOG_ERR, "%s: reading its state failed: %s",
                 b->name, strerror(-ret));
        save_drop(b);
        return ret;
    }
    return (ssize_t)got;
}

static int
op_write(void *o, const void *buf, size_t len)
{
    return vmig_vfu_client_mig_write(((struct vmig_engine_vfu *)o)->c, buf,
                                     len);
}

static ssize_t
op_describe(void *o, struct vmig_pci_ids *ids, void *buf, size_t cap)
{
    struct vmig_engine_vfu *b = o;

    *ids = b->ids;
    if (b->desc_len > cap) {
        return -E2BIG;
    }
    if (b->desc_len > 0) {
        memcpy(buf, b->desc, b->desc_len);
    }
    return (ssize_t)b->desc_len;
}

static bool
ids_equal(const struct vmig_pci_ids *a, const struct vmig_pci_ids *b)
{
    return a->vendor == b->vendor && a->device == b->device &&
           a->subsys_vendor == b->subsys_vendor &&
           a->subsys_device == b->subsys_device && a->revision == b->revision;
}

static int
op_compat(void *o, const struct vmig_mp_dev *src, char *reason, size_t rlen)
{
    struct vmig_engine_vfu *b = o;
    const struct vmig_pci_ids *s = &src->ids, *d = &b->ids;

    if (b->cdesc != NULL && src->desc_len > 0) {
        struct vmig_compat_desc *sd = NULL;
        struct vmig_compat_result res;
        int ret =
            vmig_compat_desc_from_bin(src->desc, src->desc_len, &sd, NULL, 0);

        if (ret < 0) {
            snprintf(reason, rlen, "the source's descriptor is malformed: %s",
                     strerror(-ret));
            return 0;
        }
        ret = vmig_compat_check(b->cdesc, sd, NULL, NULL, &res);
        vmig_compat_desc_free(sd);
        if (ret < 0) {
            snprintf(reason, rlen, "%s", res.reason);
            return 0;
        }
        if (!res.compatible) {
            snprintf(reason, rlen, "%s", res.reason);
        }
        return res.compatible ? 1 : 0;
    }
    if (b->cdesc != NULL || src->desc_len > 0) {
        snprintf(reason, rlen,
                 "%s carries a vmig compatibility descriptor and the %s "
                 "does not: different devices",
                 b->cdesc != NULL ? "this device" : "the source device",
                 b->cdesc != NULL ? "source" : "device here");
        return 0;
    }
    if (s->valid != d->valid || (s->valid && !ids_equal(s, d))) {
        snprintf(reason, rlen,
                 "PCI ids differ: source %04x:%04x %04x:%04x rev %u%s, here "
                 "%04x:%04x %04x:%04x rev %u%s",
                 s->vendor, s->device, s->subsys_vendor, s->subsys_device,
                 s->revision, s->valid ? "" : " (none)", d->vendor, d->device,
                 d->subsys_vendor, d->subsys_device, d->revision,
                 d->valid ? "" : " (none)");
        return 0;
    }
    if ((src->mig_flags & VMIG_MIGRATION_P2P) != 0 &&
        (b->flags & VMIG_MIGRATION_P2P) == 0) {
        snprintf(reason, rlen, "the source device has P2P, this one not");
        return 0;
    }
    return 1;
}

static ssize_t
op_config_save(void *o, void *buf, size_t cap)
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

static int
op_config_load(void *o, const void *buf, size_t len)
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

/*
 * DEVICE_RESET.  Some servers refuse it in some states (STOP, say),
 * although the spec makes it the way back to RUNNING from anywhere: the
 * client logs the refusal with the state; the backend then walks the
 * device to RUNNING through its own states (which ends any data session,
 * as a reset would) and resets it there, once.  If that fails too, the
 * backend believes what the device says it is in.
 */
static int
op_reset(void *o)
{
    struct vmig_engine_vfu *b = o;
    enum vmig_state now = VMIG_STATE_ERROR;
    int ret;

    save_drop(b);
    ret = vmig_vfu_client_reset(b->c);
    if (ret < 0 && ret != -ENOTCONN && ret != -ECONNRESET &&
        ret != -ETIMEDOUT && vmig_vfu_client_get_state(b->c, &now) == 0 &&
        now != VMIG_STATE_ERROR && now != VMIG_STATE_RUNNING) {
        vmig_log(b->ctx, VMIG_LOG_WARNING,
                 "%s: reset refused in %s; moving it to RUNNING through its "
                 "states instead (its session, if any, ends) and resetting "
                 "it there",
                 b->name, vmig_state_name(now));
        ret = vmig_vfu_client_set_state(b->c, VMIG_STATE_RUNNING);
        if (ret == 0) {
            ret = vmig_vfu_client_reset(b->c);
        }
    }
    if (ret == 0) {
        b->state = VMIG_STATE_RUNNING;
    } else if (vmig_vfu_client_get_state(b->c, &now) == 0) {
        b->state = now;
    } else {
        b->state = VMIG_STATE_ERROR;
    }
    return ret;
}

static int
op_precopy_info(void *o, uint64_t *initial, uint64_t *dirty)
{
    return vmig_vfu_client_precopy_info(((struct vmig_engine_vfu *)o)->c,
                                        initial, dirty);
}

/*
 * MIG_DATA_SIZE when the server negotiated vmig's extensions.  Without
 * them the device gives no sizing, so during PRE_COPY the estimate comes
 * from what was read: the bytes of its last burst (what it produced in
 * one iteration, which is what a switchover would still have to move),
 * or all bytes read so far before any burst ended.  Outside PRE_COPY
 * nothing is known: -EOPNOTSUPP.
 */
static int
op_data_size(void *o, uint64_t *bytes)
{
    struct vmig_engine_vfu *b = o;
    int ret = vmig_vfu_client_data_size(b->c, bytes);

    if (ret != -EOPNOTSUPP || !precopy_state(b->state)) {
        return ret;
    }
    if (b->have_last) {
        *bytes = b->last_burst;
        return 0;
    }
    if (b->pc_read > 0) {
        *bytes = b->pc_read;
        return 0;
    }
    return -EOPNOTSUPP;
}

static const struct vmig_engine_dev_ops vfu_ops = {
    .get_flags = op_get_flags,
    .get_state = op_get_state,
    .set_state = op_set_state,
    .read = op_read,
    .write = op_write,
    .describe = op_describe,
    .compat = op_compat,
    .config_save = op_config_save,
    .config_load = op_config_load,
    .reset = op_reset,
    .precopy_info = op_precopy_info,
    .data_size = op_data_size,
};

const struct vmig_engine_dev_ops *
vmig_engine_vfu_ops(void)
{
    return &vfu_ops;
}
