/* SPDX-License-Identifier: MIT */
/*
 * engine_dst_frames.c - the destination's handling of each frame of the
 * main direction between SETUP and SWITCHOVER: RAM (placed straight into
 * guest RAM when its header is sound), device config and data, device
 * ends and restarts, vCPU state, switchover-ack requests, ABORT.  A table
 * maps each frame type to its handler; a frame is decoded strictly
 * (vmig_mp_frame_decode()) before its handler checks it against this
 * migration (the region, the device, the offset, the features) and acts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <vmig/engine.h>
#include "engine_chan.h"
#include "engine_dst_state.h"
#include "engine_priv.h"
#include "internal.h"

/* Our device for the source's device @src_index, or NULL. */
static struct eng_dst_dev *
dst_dev(struct eng_dst *d, uint32_t src_index, const struct eng_dev **ed)
{
    if (src_index >= d->src_ndev || d->map[src_index] < 0) {
        return NULL;
    }
    *ed = &d->e->dev[d->map[src_index]];
    return &d->dev[d->map[src_index]];
}

/*
 * Zero pages: on a shared mapping (a memfd the VMM also hands to device
 * servers) punching a hole zeroes them without allocating memory, which
 * matters because most of a fresh guest's RAM is zero.  Anything else
 * (private memory, a kernel that refuses) gets a memset.  Once the hole
 * punch is refused for a region it is not tried again.
 */
void
vmig__dst_zero(struct vmig_engine *e, unsigned int region, uint8_t *p,
               size_t len)
{
    if (!e->region[region].no_punch) {
        if (madvise(p, len, MADV_REMOVE) == 0) {
            return;
        }
        e->region[region].no_punch = true;
    }
    memset(p, 0, len);
}

/*
 * Where RAM pages at @off of region @region land, or NULL when the range
 * is not inside the region.  The codec checked the page count and
 * alignment.
 */
uint8_t *
vmig__dst_ram_at(const struct vmig_engine *e, uint32_t region, uint64_t off,
                 uint64_t len)
{
    const struct eng_region *rg;

    if (region >= e->nregions) {
        return NULL;
    }
    rg = &e->region[region];
    if (off > rg->size || len > rg->size - off) {
        return NULL;
    }
    return (uint8_t *)rg->host + off;
}

void *
vmig__dst_place(void *opaque, const struct vmig_mp_hdr *hdr,
                const uint8_t *head, size_t tail_len)
{
    struct eng_dst *d = opaque;
    struct vmig_mp_msg m;

    if (hdr->type != VMIG_MP_RAM || d->e->ops->ram_write != NULL ||
        vmig_mp_msg_decode_head(VMIG_MP_RAM, head, VMIG_MP_RAM_HDR_LEN,
                                hdr->len, &m) < 0 ||
        m.ram.data.len != tail_len) {
        return NULL;
    }
    return vmig__dst_ram_at(d->e, m.ram.region, m.ram.offset, m.ram.data.len);
}

/*
 * After CHANNEL_SYNC a device's data, end and restart travel on the extra
 * channels only: the main connection carrying them too would race with
 * the channel that owns the device.
 */
static int
dst_main_after_sync(struct eng_dst *d, uint32_t idx, const char *what)
{
    if (!d->chan_sync) {
        return 0;
    }
    vmig__dst_fail(d, idx < d->src_ndev ? (int)idx : -1,
                   "%s on the main connection after CHANNEL_SYNC (device "
                   "data goes on the extra channels then)",
                   what);
    return -EPROTO;
}

/*
 * ACK on the return path: {u32 type acked, u32 its sequence number, u64
 * value} - the pass number for RAM_PASS_END, the device bytes for DEV_END.
 * The source may use them as progress and liveness.
 */
static int
dst_ack(struct eng_dst *d, const struct vmig_mp_frame *f, uint64_t value)
{
    struct vmig_mp_msg m = {.type = VMIG_MP_ACK,
                            .ack = {f->hdr.type, f->hdr.seq, value}};

    return vmig_mp_send_msg(d->c, &m);
}

int
vmig__dst_apply_ram(struct eng_dst *d, const struct vmig_mp_frame *f,
                    const struct vmig_mp_ram *m, pthread_mutex_t *lock,
                    char *why, size_t wl)
{
    struct vmig_engine *e = d->e;
    uint64_t len = (uint64_t)m->npages * VMIG_MP_PAGE_SIZE;
    bool zero = (m->flags & VMIG_MP_RAM_ZERO) != 0;
    uint8_t *at = vmig__dst_ram_at(e, m->region, m->offset, len);
    int ret = 0;

    if (at == NULL) {
        snprintf(why, wl, "RAM frame beyond region %u (%llu pages at %#llx)",
                 m->region, (unsigned long long)m->npages,
                 (unsigned long long)m->offset);
        return -EBADMSG;
    }
    if (zero && !(d->features & VMIG_MP_FEAT_ZERO_PAGES)) {
        snprintf(why, wl, "zero-page RAM frame without the feature");
        return -EPROTO;
    }
    if (e->ops->ram_write != NULL || zero) {
        if (lock != NULL) {
            pthread_mutex_lock(lock);
        }
        if (e->ops->ram_write != NULL) {
            ret = e->ops->ram_write(e->opaque, m->region, m->offset,
                                    zero ? NULL : m->data.ptr, (size_t)len);
        } else {
            vmig__dst_zero(e, m->region, at, (size_t)len);
        }
        if (lock != NULL) {
            pthread_mutex_unlock(lock);
        }
    } else if (!f->placed) {
        memcpy(at, m->data.ptr, (size_t)len);
    }
    if (ret < 0) {
        snprintf(why, wl, "cannot write guest RAM: %s", strerror(-ret));
    }
    return ret;
}

static int
dst_ram(struct eng_dst *d, const struct vmig_mp_frame *f,
        const struct vmig_mp_msg *msg)
{
    const struct vmig_mp_ram *m = &msg->ram;
    char why[200];
    int ret = vmig__dst_apply_ram(d, f, m, NULL, why, sizeof(why));

    if (ret < 0) {
        vmig__dst_fail(d, -1, "%s", why);
        return ret;
    }
    vmig__engine_account(d->e, d->c, (uint64_t)m->npages * VMIG_MP_PAGE_SIZE,
                         (m->flags & VMIG_MP_RAM_ZERO) ? m->npages : 0, -1, 0);
    return 0;
}

static int
dst_pass_end(struct eng_dst *d, const struct vmig_mp_frame *f,
             const struct vmig_mp_msg *m)
{
    vmig__engine_pass(d->e, m->pass_end.pass);
    return dst_ack(d, f, m->pass_end.pass);
}

static int
dst_dev_config(struct eng_dst *d, const struct vmig_mp_frame *f,
               const struct vmig_mp_msg *msg)
{
    const struct vmig_mp_dev_config *m = &msg->dev_config;
    uint32_t idx = m->dev;
    const struct eng_dev *ed;
    struct eng_dst_dev *dd = dst_dev(d, idx, &ed);
    size_t n = m->data.len;

    (void)f;
    if (dd == NULL) {
        vmig__dst_fail(d, -1, "DEV_CONFIG for unknown device %u", idx);
        return -EBADMSG;
    }
    if (dd->config_seen) {
        vmig__dst_fail(d, (int)idx, "config sent twice");
        return -EPROTO;
    }
    dd->config = malloc(n > 0 ? n : 1);
    if (dd->config == NULL) {
        return -ENOMEM;
    }
    if (n > 0) {
        memcpy(dd->config, m->data.ptr, n);
    }
    dd->config_len = n;
    dd->config_seen = true;
    pthread_mutex_lock(&d->e->lock);
    d->e->st.dev[d->map[idx]].config_len = n;
    pthread_mutex_unlock(&d->e->lock);
    return 0;
}

static int
dst_dev_data(struct eng_dst *d, const struct vmig_mp_frame *f,
             const struct vmig_mp_msg *msg)
{
    const struct vmig_mp_dev_data *m = &msg->dev_data;
    uint32_t idx = m->dev, flags = m->flags;
    uint64_t off = m->offset;
    size_t n = m->data.len;
    const struct eng_dev *ed;
    struct eng_dst_dev *dd = dst_dev(d, idx, &ed);
    int ret;

    (void)f;
    if (dd == NULL) {
        vmig__dst_fail(d, -1, "DEV_DATA for unknown device %u", idx);
        return -EBADMSG;
    }
    ret = dst_main_after_sync(d, idx, "DEV_DATA");
    if (ret < 0) {
        return ret;
    }
    if ((flags & VMIG_MP_DEV_PRECOPY) &&
        !(d->features & VMIG_MP_FEAT_PRECOPY)) {
        vmig__dst_fail(d, (int)idx, "precopy device data was not negotiated");
        return -EOPNOTSUPP;
    }
    if ((flags & VMIG_MP_DEV_PRECOPY) && dd->rx_stopcopy) {
        vmig__dst_fail(d, (int)idx, "precopy data after stop-copy data");
        return -EPROTO;
    }
    if (dd->rx_ended || off != dd->rx_off) {
        vmig__dst_fail(d, (int)idx,
                       "device data out of order at offset %llu "
                       "(expected %llu)",
                       (unsigned long long)off, (unsigned long long)dd->rx_off);
        return -EBADMSG;
    }
    ret = ed->ops->write(ed->opaque, m->data.ptr, n);
    if (ret < 0) {
        vmig__dst_fail(d, (int)idx,
                       "device refused its state at offset %llu: %s",
                       (unsigned long long)off, strerror(-ret));
        return ret;
    }
    XXH3_64bits_update(dd->hash, m->data.ptr, n);
    dd->rx_off += n;
    if (!(flags & VMIG_MP_DEV_PRECOPY)) {
        dd->rx_stopcopy = true;
    }
    vmig__engine_account(d->e, d->c, 0, 0, d->map[idx], n);
    return 0;
}

/*
 * DEV_RESTART: the source device was reset during precopy and starts its
 * stream again.  Whatever this device received is discarded (reset) and
 * it waits for a new stream from offset 0.
 */
static int
dst_dev_restart(struct eng_dst *d, const struct vmig_mp_frame *f,
                const struct vmig_mp_msg *m)
{
    struct vmig_engine *e = d->e;
    uint32_t idx = m->dev_restart.dev;
    const struct eng_dev *ed;
    struct eng_dst_dev *dd = dst_dev(d, idx, &ed);
    int ret;

    (void)f;
    if (dd == NULL) {
        vmig__dst_fail(d, -1, "DEV_RESTART for unknown device %u", idx);
        return -EBADMSG;
    }
    ret = dst_main_after_sync(d, idx, "DEV_RESTART");
    if (ret < 0) {
        return ret;
    }
    if (!(d->features & VMIG_MP_FEAT_PRECOPY)) {
        vmig__dst_fail(d, (int)idx, "DEV_RESTART without precopy");
        return -EPROTO;
    }
    if (dd->rx_ended || dd->rx_stopcopy) {
        vmig__dst_fail(d, (int)idx, "DEV_RESTART after its stop-copy data");
        return -EPROTO;
    }
    vmig_warn(e->ctx,
              "incoming: device %s: the source restarts its precopy (it was "
              "reset there); discarding the %llu bytes received",
              ed->name, (unsigned long long)dd->rx_off);
    ret = ed->ops->reset(ed->opaque);
    if (ret == 0) {
        ret = vmig__engine_dev_set(e, (unsigned int)d->map[idx],
                                   VMIG_STATE_RESUMING, false);
    }
    if (ret < 0) {
        vmig__dst_fail(d, (int)idx, "cannot restart RESUMING: %s",
                       strerror(-ret));
        return ret;
    }
    dd->rx_off = 0;
    XXH3_64bits_reset(dd->hash);
    pthread_mutex_lock(&e->lock);
    e->st.dev[d->map[idx]].restarts++;
    pthread_mutex_unlock(&e->lock);
    return 0;
}

/*
 * SWITCHOVER_REQ: every frame before it has been handled, so every
 * device accepted the data sent so far (its initial precopy data
 * included): acknowledge.  A device that refused it has failed the
 * migration already, before the source paused anything.
 */
static int
dst_switchover_req(struct eng_dst *d, const struct vmig_mp_frame *f,
                   const struct vmig_mp_msg *m)
{
    struct vmig_mp_msg ack = {.type = VMIG_MP_SWITCHOVER_ACK,
                              .switchover_ack = {m->switchover_req.id}};

    (void)f;
    if (!(d->features & VMIG_MP_FEAT_SWITCHOVER_ACK)) {
        vmig__dst_fail(d, -1, "SWITCHOVER_REQ without switchover-ack");
        return -EPROTO;
    }
    return vmig_mp_send_msg(d->c, &ack);
}

static int
dst_dev_end(struct eng_dst *d, const struct vmig_mp_frame *f,
            const struct vmig_mp_msg *m)
{
    uint32_t idx = m->dev_end.dev;
    uint64_t total = m->dev_end.total, digest = m->dev_end.digest;
    const struct eng_dev *ed;
    struct eng_dst_dev *dd = dst_dev(d, idx, &ed);

    if (dd == NULL || dd->rx_ended) {
        vmig__dst_fail(d, -1, "DEV_END for unknown device %u, or twice", idx);
        return -EBADMSG;
    }
    if (dst_main_after_sync(d, idx, "DEV_END") < 0) {
        return -EPROTO;
    }
    if (total != dd->rx_off || digest != XXH3_64bits_digest(dd->hash)) {
        vmig__dst_fail(
            d, (int)idx,
            "device data incomplete or corrupt (%llu of "
            "%llu bytes, digest %s)",
            (unsigned long long)dd->rx_off, (unsigned long long)total,
            digest == XXH3_64bits_digest(dd->hash) ? "ok" : "mismatch");
        return -EBADMSG;
    }
    dd->rx_ended = true;
    return dst_ack(d, f, total);
}

static int
dst_vcpu(struct eng_dst *d, const struct vmig_mp_frame *f,
         const struct vmig_mp_msg *m)
{
    (void)f;
    if (d->vcpu != NULL || m->vcpu.index != 0) {
        vmig__dst_fail(d, -1,
                       "a second VCPU frame, or vCPU index %u (one state "
                       "blob, index 0, carries every vCPU)",
                       m->vcpu.index);
        return -EPROTO;
    }
    d->vcpu_len = m->vcpu.data.len;
    d->vcpu = malloc(d->vcpu_len > 0 ? d->vcpu_len : 1);
    if (d->vcpu == NULL) {
        return -ENOMEM;
    }
    if (d->vcpu_len > 0) {
        memcpy(d->vcpu, m->vcpu.data.ptr, d->vcpu_len);
    }
    return 0;
}

/* SWITCHOVER ends the stream (1). */
static int
dst_switchover(struct eng_dst *d, const struct vmig_mp_frame *f,
               const struct vmig_mp_msg *m)
{
    d->sw = m->switchover;
    d->sw_seq = f->hdr.seq;
    d->t_sw = vmig__mono_ns();
    return 1;
}

static int
dst_abort(struct eng_dst *d, const struct vmig_mp_frame *f,
          const struct vmig_mp_msg *m)
{
    (void)f;
    vmig__engine_set_error(d->e, "source aborted: %s", m->abort.reason);
    vmig_warn(d->e->ctx,
              "incoming: the source aborted (%s); "
              "discarding everything",
              strerror((int)m->abort.err));
    d->peer_aborted = true;
    d->send_err = false;
    return -ECANCELED;
}

/*
 * CHANNEL_SYNC (parallel channels): everything before it on the main
 * connection is handled, so the extra channels' threads may now deliver
 * device data and RAM (engine_chan_dst.c); from here device data on the
 * main connection is refused.
 */
static int
dst_channel_sync(struct eng_dst *d, const struct vmig_mp_frame *f,
                 const struct vmig_mp_msg *m)
{
    (void)f;
    (void)m;
    if (d->mc == NULL || d->chan_sync) {
        vmig__dst_fail(d, -1, "CHANNEL_SYNC %s",
                       d->mc == NULL ? "without channels" : "twice");
        return -EPROTO;
    }
    d->chan_sync = true;
    pthread_mutex_lock(&d->e->lock);
    d->mc->go = true;
    pthread_cond_broadcast(&d->mc->cond);
    pthread_mutex_unlock(&d->e->lock);
    return 0;
}

/*
 * The frames of the main direction after SETUP, by type.  A type the
 * table does not name (HELLO or SETUP again, a return-path frame) is out
 * of place.  Each handler gets the decoded message and returns 0 to go
 * on, 1 to end the stream, or a negative errno.
 */
typedef int dst_handler_fn(struct eng_dst *d, const struct vmig_mp_frame *f,
                           const struct vmig_mp_msg *m);

static dst_handler_fn *const dst_handlers[VMIG_MP_MAIN_LAST + 1] = {
    [VMIG_MP_RAM] = dst_ram,
    [VMIG_MP_RAM_PASS_END] = dst_pass_end,
    [VMIG_MP_DEV_CONFIG] = dst_dev_config,
    [VMIG_MP_DEV_DATA] = dst_dev_data,
    [VMIG_MP_DEV_END] = dst_dev_end,
    [VMIG_MP_VCPU] = dst_vcpu,
    [VMIG_MP_SWITCHOVER] = dst_switchover,
    [VMIG_MP_ABORT] = dst_abort,
    [VMIG_MP_SWITCHOVER_REQ] = dst_switchover_req,
    [VMIG_MP_DEV_RESTART] = dst_dev_restart,
    [VMIG_MP_CHANNEL_SYNC] = dst_channel_sync,
};

int
vmig__dst_frame(struct eng_dst *d, const struct vmig_mp_frame *f)
{
    unsigned int type = f->hdr.type;
    struct vmig_mp_msg m;

    if (!vmig_mp_type_known(type)) {
        if (f->hdr.flags & VMIG_MP_F_OPTIONAL) {
            vmig_dbg(d->e->ctx, "incoming: skipping optional frame type %#x",
                     type);
            return 0;
        }
        vmig__dst_fail(d, -1, "unknown mandatory frame type %#x", type);
        return -EOPNOTSUPP;
    }
    if (type >= VMIG_ARRAY_SIZE(dst_handlers) || dst_handlers[type] == NULL) {
        vmig__dst_fail(d, -1, "unexpected %s frame", vmig_mp_type_name(type));
        return -EPROTO;
    }
    if (vmig_mp_frame_decode(f, &m) < 0) {
        vmig__dst_fail(d, -1, "malformed %s frame (%u bytes)",
                       vmig_mp_type_name(type), f->hdr.len);
        return -EBADMSG;
    }
    return dst_handlers[type](d, f, &m);
}
