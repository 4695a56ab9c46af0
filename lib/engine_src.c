/* SPDX-License-Identifier: MIT */
/*
 * engine_src.c - the source side of a migration: HELLO, SETUP, the
 * two-phase stop, RAM / vCPU / device streams, SWITCHOVER, and the
 * rollback that leaves the VM running here after any failure before the
 * destination's CONFIRM (docs/migration-protocol.md section 6).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/engine.h>
#include "engine_priv.h"
#include "internal.h"

/* RAM pages per RAM frame: 4 MiB of data per frame (the limit) keeps
 * syscalls and header overhead negligible. */
#define SRC_RAM_CHUNK_PAGES 1024u
/* Device data read per DEV_DATA frame. */
#define SRC_DEV_CHUNK (4u << 20)
/* Where descriptors are staged in e->buf during HELLO. */
#define SRC_DESC_STRIDE VMIG_MP_DESC_MAX

static int
parse_error_frame(struct vmig_engine *e, const struct vmig_mp_frame *f)
{
    struct vmig_mp_msg m;
    const struct vmig_mp_error *er = &m.error;

    if (vmig_mp_frame_decode(f, &m) < 0) {
        vmig__engine_set_error(e, "destination sent a malformed ERROR");
        return -EPROTO;
    }
    if (er->dev != VMIG_MP_NO_DEVICE && er->dev < e->ndev) {
        vmig__engine_set_error(e, "destination: device %s: %s: %s",
                               e->dev[er->dev].name, strerror((int)er->err),
                               er->reason);
    } else {
        vmig__engine_set_error(e, "destination: %s: %s", strerror((int)er->err),
                               er->reason);
    }
    vmig_err(e->ctx, "migration: destination reported: %s (%s)", er->reason,
             strerror((int)er->err));
    return -(int)er->err;
}

/*
 * A SWITCHOVER_ACK on the return path: record it when it answers the last
 * SWITCHOVER_REQ (an answer to an older request, from before a device
 * restarted its precopy, no longer counts).  Return 1 when @f was one.
 */
static int
src_note_ack(struct vmig_engine *e, const struct vmig_mp_frame *f)
{
    struct vmig_mp_msg m;
    uint32_t id;

    if (f->hdr.type != VMIG_MP_SWITCHOVER_ACK) {
        return 0;
    }
    if (vmig_mp_frame_decode(f, &m) < 0 ||
        (id = m.switchover_ack.id) > e->ack_req) {
        vmig__engine_set_error(e, "destination sent a malformed "
                                  "SWITCHOVER_ACK");
        return -EPROTO;
    }
    if (id == e->ack_req) {
        e->ack_got = id;
        pthread_mutex_lock(&e->lock);
        e->st.switchover_ack_ms = (vmig__mono_ns() - e->t_ack_req) / 1000000;
        pthread_mutex_unlock(&e->lock);
        vmig_dbg(e->ctx, "migration: destination acknowledged switchover "
                         "(every device loaded its initial data)");
    }
    return 1;
}

/*
 * A return-path frame nobody waits for specifically: ERROR ends the
 * migration (its errno), ACK, SWITCHOVER_ACK and unknown optional frames
 * are taken in (0), a malformed ACK or anything else is out of place
 * while @due was expected (-EPROTO).
 */
static int
src_return_frame(struct vmig_engine *e, const struct vmig_mp_frame *f,
                 const char *due)
{
    struct vmig_mp_msg m;
    int ret;

    if (f->hdr.type == VMIG_MP_ERROR) {
        return parse_error_frame(e, f);
    }
    ret = src_note_ack(e, f);
    if (ret < 0) {
        return ret;
    }
    if (f->hdr.type == VMIG_MP_ACK && vmig_mp_frame_decode(f, &m) < 0) {
        vmig__engine_set_error(e, "destination sent a malformed ACK");
        return -EPROTO;
    }
    if (ret == 1 || f->hdr.type == VMIG_MP_ACK ||
        (!vmig_mp_type_known(f->hdr.type) &&
         (f->hdr.flags & VMIG_MP_F_OPTIONAL))) {
        return 0;
    }
    vmig_err(e->ctx, "migration: expected %s from the destination, got %s", due,
             vmig_mp_type_name(f->hdr.type));
    vmig__engine_set_error(e, "destination sent %s while %s was due",
                           vmig_mp_type_name(f->hdr.type), due);
    return -EPROTO;
}

/* Wait for a frame of @type on the return path; ERROR ends the wait. */
static int
src_expect(struct vmig_engine *e, struct vmig_mp_conn *c, unsigned int type,
           struct vmig_mp_frame *f)
{
    for (;;) {
        int ret = vmig_mp_recv(c, f);

        if (ret < 0) {
            return ret;
        }
        if (f->hdr.type == type) {
            return 0;
        }
        ret = src_return_frame(e, f, vmig_mp_type_name(type));
        if (ret < 0) {
            return ret;
        }
    }
}

/*
 * Between frames: has the destination said something on the return path?
 * An ERROR there (it refused a frame, a device failed) ends the sending at
 * once instead of at SWITCHOVER.
 */
int
vmig__src_check_return(struct vmig_engine *e, struct vmig_mp_conn *c)
{
    struct vmig_mp_frame f;
    int ret;

    while (vmig_mp_pending(c)) {
        ret = vmig_mp_recv(c, &f);
        if (ret == 0) {
            ret = src_return_frame(e, &f, "nothing");
        }
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* Wait until the latest SWITCHOVER_REQ is acknowledged. */
int
vmig__src_wait_ack(struct vmig_engine *e, struct vmig_mp_conn *c)
{
    struct vmig_mp_frame f;
    int ret;

    while (e->ack_got != e->ack_req) {
        ret = vmig_mp_recv(c, &f);
        if (ret == 0) {
            ret = src_return_frame(e, &f, "SWITCHOVER_ACK");
        }
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* Build HELLO in @out (VMIG_MP_PAYLOAD_MAX bytes) from our devices. */
static ssize_t
src_build_hello(struct vmig_engine *e, uint32_t flags, uint8_t *out)
{
    struct vmig_mp_hello *h;
    ssize_t n;

    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return -ENOMEM;
    }
    h->version_min = VMIG_MP_PROTO_MIN;
    h->version_max = VMIG_MP_PROTO_MAX;
    h->features = VMIG_MP_FEAT__SUPPORTED;
    h->flags = flags;
    h->page_size = VMIG_MP_PAGE_SIZE;
    h->nregions = e->nregions;
    for (unsigned int i = 0; i < e->nregions; i++) {
        memcpy(h->region[i].name, e->region[i].name, sizeof(h->region[i].name));
        h->region[i].size = e->region[i].size;
    }
    h->ndevices = e->ndev;
    for (unsigned int i = 0; i < e->ndev; i++) {
        struct eng_dev *d = &e->dev[i];
        struct vmig_mp_dev *hd = &h->dev[i];
        int ret;

        ret = d->ops->get_flags(d->opaque, &d->flags);
        if (ret == 0) {
            ret = vmig_flags_validate(d->flags);
        }
        if (ret < 0) {
            vmig_err(e->ctx, "device %s: no valid migration flags: %s", d->name,
                     strerror(-ret));
            vmig__engine_set_error(e, "device %s: bad migration flags",
                                   d->name);
            free(h);
            return ret;
        }
        memcpy(hd->name, d->name, sizeof(hd->name));
        hd->mig_flags = d->flags;
        if (d->ops->describe != NULL) {
            uint8_t *slot = e->buf + (size_t)i * SRC_DESC_STRIDE;

            n = d->ops->describe(d->opaque, &hd->ids, slot, SRC_DESC_STRIDE);
            if (n < 0 || n > (ssize_t)SRC_DESC_STRIDE) {
                vmig_err(e->ctx, "device %s: cannot describe itself: %s",
                         d->name, n < 0 ? strerror((int)-n) : "too long");
                free(h);
                return n < 0 ? n : -E2BIG;
            }
            hd->desc = n > 0 ? slot : NULL;
            hd->desc_len = (uint32_t)n;
        }
    }
    n = vmig_mp_hello_encode(h, out, vmig_mp_type_limit(VMIG_MP_HELLO));
    free(h);
    return n;
}

/*
 * HELLO / HELLO_REPLY.  Records the per-device verdicts in the stats (and
 * in @check when given).  Return: 0 when the destination accepts, the
 * features it accepted in *@features; -EOPNOTSUPP when it refuses.
 */
static int
src_hello(struct vmig_engine *e, struct vmig_mp_conn *c, uint32_t flags,
          uint64_t *features, struct vmig_engine_check *check)
{
    struct vmig_mp_hello_reply *rp;
    struct vmig_mp_frame f;
    uint8_t *out;
    ssize_t n;
    int ret;

    out = malloc(vmig_mp_type_limit(VMIG_MP_HELLO));
    rp = calloc(1, sizeof(*rp));
    if (out == NULL || rp == NULL) {
        ret = -ENOMEM;
        goto out;
    }
    n = src_build_hello(e, flags, out);
    if (n < 0) {
        ret = (int)n;
        goto out;
    }
    ret = vmig_mp_send1(c, VMIG_MP_HELLO, 0, out, (size_t)n);
    if (ret < 0) {
        goto out;
    }
    ret = src_expect(e, c, VMIG_MP_HELLO_REPLY, &f);
    if (ret < 0) {
        goto out;
    }
    ret = vmig_mp_reply_decode(f.payload, f.hdr.len, rp);
    if (ret < 0 || rp->ndevices != e->ndev) {
        vmig__engine_set_error(e, "destination sent a malformed HELLO_REPLY");
        ret = -EPROTO;
        goto out;
    }
    pthread_mutex_lock(&e->lock);
    for (unsigned int i = 0; i < e->ndev; i++) {
        e->st.dev[i].verdict = rp->dev[i].compatible ? 1 : 0;
        memcpy(e->st.dev[i].reason, rp->dev[i].reason,
               sizeof(e->st.dev[i].reason));
    }
    pthread_mutex_unlock(&e->lock);
    if (check != NULL) {
        memset(check, 0, sizeof(*check));
        check->status = (int)rp->status;
        if (rp->status == 0 && rp->version == 0) {
            check->status = EOPNOTSUPP;
        }
        memcpy(check->reason, rp->reason, sizeof(check->reason));
        check->ndevices = e->ndev;
        for (unsigned int i = 0; i < e->ndev; i++) {
            memcpy(check->dev[i].name, e->dev[i].name,
                   sizeof(check->dev[i].name));
            check->dev[i].verdict = rp->dev[i].compatible ? 1 : 0;
            memcpy(check->dev[i].reason, rp->dev[i].reason,
                   sizeof(check->dev[i].reason));
        }
    }
    if (rp->status != 0 || rp->version == 0) {
        for (unsigned int i = 0; i < e->ndev; i++) {
            if (!rp->dev[i].compatible) {
                vmig_err(e->ctx, "migration: destination refuses device %s: %s",
                         e->dev[i].name, rp->dev[i].reason);
            }
        }
        vmig_err(e->ctx,
                 "migration: destination refused: %s; nothing was "
                 "changed on either side",
                 rp->reason);
        vmig__engine_set_error(e, "destination refused: %s", rp->reason);
        ret = -EOPNOTSUPP;
        goto out;
    }
    *features = rp->features & VMIG_MP_FEAT__SUPPORTED;
    ret = 0;
out:
    free(out);
    free(rp);
    return ret;
}

/*
 * Phase one: every device stops initiating P2P DMA (RUNNING_P2P, or
 * PRE_COPY_P2P keeping its precopy session); a device without P2P stops
 * outright (STOP, or STOP_COPY from PRE_COPY: PRE_COPY -> STOP would end
 * its session).  Phase two: everyone to STOP_COPY.  The test-only one
 * phase variant stops and saves each device in turn while later ones
 * still run - what the protocol forbids.
 */
static int
src_stop_devices(struct vmig_engine *e, bool one_phase)
{
    int ret;

    for (unsigned int i = 0; i < e->ndev; i++) {
        const struct eng_dev *d = &e->dev[i];
        enum vmig_state s;

        /* reset between its last precopy read and the pause: moving it
         * on would open a new session and send it as the continuation */
        if (d->tx_pc && (d->ops->get_state(d->opaque, &s) < 0 ||
                         s != VMIG_STATE_PRE_COPY)) {
            vmig__engine_set_error(e,
                                   "device %s was reset during the "
                                   "switchover; migration aborted, retry it",
                                   d->name);
            return -ENODEV;
        }
    }
    for (unsigned int i = 0; i < e->ndev && !one_phase; i++) {
        const struct eng_dev *d = &e->dev[i];
        enum vmig_state t;

        if (d->flags & VMIG_MIGRATION_P2P) {
            t = d->tx_pc ? VMIG_STATE_PRE_COPY_P2P : VMIG_STATE_RUNNING_P2P;
        } else {
            t = d->tx_pc ? VMIG_STATE_STOP_COPY : VMIG_STATE_STOP;
        }
        ret = vmig__engine_dev_set(e, i, t, false);
        if (ret < 0) {
            vmig__engine_set_error(e, "device %s: cannot quiesce: %s", d->name,
                                   strerror(-ret));
            return ret;
        }
    }
    for (unsigned int i = 0; i < e->ndev; i++) {
        ret = vmig__engine_dev_set(e, i, VMIG_STATE_STOP_COPY, false);
        if (ret < 0) {
            vmig__engine_set_error(e, "device %s: cannot enter STOP_COPY: %s",
                                   e->dev[i].name, strerror(-ret));
            return ret;
        }
    }
    return 0;
}

static bool
all_zero(const uint8_t *p, size_t n)
{
    static const uint8_t zero[16];

    if (n < 16) {
        return memcmp(p, zero, n) == 0;
    }
    return memcmp(p, zero, 16) == 0 && memcmp(p, p + 16, n - 16) == 0;
}

int
vmig__src_send_pages(struct vmig_engine *e, struct vmig_mp_conn *c,
                     unsigned int r, uint64_t off, uint32_t np, bool zero_pages,
                     bool hole_check, bool live, unsigned int pass)
{
    const struct eng_region *rg = &e->region[r];
    size_t len = (size_t)np * VMIG_MP_PAGE_SIZE;
    const uint8_t *src = (const uint8_t *)rg->host + off;
    struct vmig_mp_msg m = {.type = VMIG_MP_RAM};
    bool zero;
    int ret;

    if (vmig__engine_cancelled(e)) {
        return -ECANCELED;
    }
    if (live) {
        /* the guest may write these pages while they are sent: send a
         * copy, so the frame checksum covers exactly the bytes sent (a
         * page changed after the copy is dirty again and resent) */
        memcpy(e->buf, src, len);
        src = e->buf;
    }
    zero = zero_pages && ((hole_check && e->ops->ram_hole != NULL &&
                           e->ops->ram_hole(e->opaque, r, off, len) == 1) ||
                          all_zero(src, len));
    m.ram = (struct vmig_mp_ram){.region = r,
                                 .flags = zero ? VMIG_MP_RAM_ZERO : 0,
                                 .offset = off,
                                 .npages = np,
                                 .pass = pass,
                                 .data = {zero ? NULL : src, zero ? 0 : len}};
    ret = vmig_mp_send_msg(c, &m);
    if (ret < 0) {
        return ret;
    }
    vmig__engine_account(e, c, len, zero ? np : 0, -1, 0);
    ret = vmig__engine_throttle(e, c);
    if (ret == 0) {
        ret = vmig__src_check_return(e, c);
    }
    return ret;
}

int
vmig__src_pass_end(struct vmig_mp_conn *c, unsigned int pass, bool last,
                   uint64_t pages)
{
    struct vmig_mp_msg m = {
        .type = VMIG_MP_RAM_PASS_END,
        .pass_end = {pass, last ? VMIG_MP_PASS_LAST : 0, pages}};

    return vmig_mp_send_msg(c, &m);
}

int
vmig__src_send_ram(struct vmig_engine *e, struct vmig_mp_conn *c,
                   bool zero_pages, bool live, unsigned int pass, bool last)
{
    uint64_t pages = 0;
    int ret;

    vmig__engine_pass(e, pass);
    for (unsigned int r = 0; r < e->nregions; r++) {
        const struct eng_region *rg = &e->region[r];

        for (uint64_t off = 0; off < rg->size;) {
            uint64_t left = rg->size - off;
            uint32_t np = left / VMIG_MP_PAGE_SIZE > SRC_RAM_CHUNK_PAGES
                              ? SRC_RAM_CHUNK_PAGES
                              : (uint32_t)(left / VMIG_MP_PAGE_SIZE);

            ret = vmig__src_send_pages(e, c, r, off, np, zero_pages, true, live,
                                       pass);
            if (ret < 0) {
                return ret;
            }
            pages += np;
            off += (uint64_t)np * VMIG_MP_PAGE_SIZE;
        }
    }
    return vmig__src_pass_end(c, pass, last, pages);
}

static int
src_send_vcpu(struct vmig_engine *e, struct vmig_mp_conn *c, bool *sent)
{
    struct vmig_mp_msg m = {.type = VMIG_MP_VCPU};
    ssize_t n;

    *sent = false;
    if (e->ops->vcpu_save == NULL) {
        return 0;
    }
    n = e->ops->vcpu_save(e->opaque, e->buf, VMIG_MP_VCPU_MAX);
    if (n < 0) {
        vmig__engine_set_error(e, "cannot save the vCPU state: %s",
                               strerror((int)-n));
        return (int)n;
    }
    if (n > (ssize_t)VMIG_MP_VCPU_MAX) {
        vmig__engine_set_error(e, "vCPU state of %zd bytes exceeds %u", n,
                               VMIG_MP_VCPU_MAX);
        return -E2BIG;
    }
    m.vcpu.data = (struct vmig_mp_data){e->buf, (size_t)n};
    *sent = true;
    return vmig_mp_send_msg(c, &m);
}

/*
 * Read device @i's saving session and send it as DEV_DATA frames.
 * Precopy: until the device has nothing pending (-ENOMSG; return 1) or
 * @budget bytes (0: no limit) were sent (return 0).  Stop-copy: to the
 * end of the data (return 0).  A failing read sets *@dev_err (the
 * device's problem, not the connection's) and returns its error.
 */
int
vmig__src_dev_pump(struct vmig_engine *e, struct vmig_mp_conn *c,
                   unsigned int i, bool precopy, uint64_t budget, bool *dev_err)
{
    struct eng_dev *d = &e->dev[i];
    struct vmig_mp_msg m = {.type = VMIG_MP_DEV_DATA};
    uint64_t got = 0;
    int ret;

    *dev_err = false;
    if (d->ops->read == NULL) {
        vmig__engine_set_error(e, "device %s: backend cannot read state",
                               d->name);
        return -EOPNOTSUPP;
    }
    for (;;) {
        ssize_t n;

        if (precopy && budget != 0 && got >= budget) {
            return 0;
        }
        n = d->ops->read(d->opaque, e->buf, SRC_DEV_CHUNK);
        if (precopy && (n == -ENOMSG || n == 0)) {
            return 1;
        }
        if (n == 0) {
            return 0;
        }
        if (n < 0 || n > (ssize_t)SRC_DEV_CHUNK) {
            ret = n < 0 ? (int)n : -EIO;
            *dev_err = true;
            if (precopy) {
                /* maybe a reset: the precopy loop decides what it means */
                vmig_dbg(
                    e->ctx, "device %s: precopy read at byte %llu failed: %s",
                    d->name, (unsigned long long)d->tx_off, strerror(-ret));
                return ret;
            }
            vmig_err(e->ctx,
                     "device %s: reading its stop-copy state at byte %llu "
                     "failed: %s",
                     d->name, (unsigned long long)d->tx_off, strerror(-ret));
            vmig__engine_set_error(e, "device %s: state read failed: %s",
                                   d->name, strerror(-ret));
            return ret;
        }
        if (vmig__engine_cancelled(e)) {
            return -ECANCELED;
        }
        m.dev_data = (struct vmig_mp_dev_data){
            .dev = i,
            .flags = precopy ? VMIG_MP_DEV_PRECOPY : 0,
            .offset = d->tx_off,
            .data = {e->buf, (size_t)n}};
        ret = vmig_mp_send_msg(c, &m);
        if (ret < 0) {
            return ret;
        }
        XXH3_64bits_update(d->hash, e->buf, (size_t)n);
        d->tx_off += (uint64_t)n;
        got += (uint64_t)n;
        if (precopy) {
            pthread_mutex_lock(&e->lock);
            e->st.dev[i].precopy_bytes += (uint64_t)n;
            pthread_mutex_unlock(&e->lock);
        }
        vmig__engine_account(e, c, 0, 0, (int)i, (uint64_t)n);
        ret = vmig__engine_throttle(e, c);
        if (ret == 0) {
            ret = vmig__src_check_return(e, c);
        }
        if (ret < 0) {
            return ret;
        }
    }
}

/* Stop-copy for device @i: its config, the rest of its data, DEV_END. */
static int
src_send_device(struct vmig_engine *e, struct vmig_mp_conn *c, unsigned int i)
{
    struct eng_dev *d = &e->dev[i];
    struct vmig_mp_msg m = {.type = VMIG_MP_DEV_CONFIG};
    bool dev_err;
    int ret;

    if (d->ops->config_save != NULL) {
        ssize_t n = d->ops->config_save(d->opaque, e->buf, VMIG_MP_CONFIG_MAX);

        if (n < 0 || n > (ssize_t)VMIG_MP_CONFIG_MAX) {
            ret = n < 0 ? (int)n : -E2BIG;
            vmig__engine_set_error(e, "device %s: cannot save its config: %s",
                                   d->name, strerror(-ret));
            return ret;
        }
        m.dev_config = (struct vmig_mp_dev_config){i, {e->buf, (size_t)n}};
        ret = vmig_mp_send_msg(c, &m);
        if (ret < 0) {
            return ret;
        }
        pthread_mutex_lock(&e->lock);
        e->st.dev[i].config_len = (uint64_t)n;
        pthread_mutex_unlock(&e->lock);
    }
    ret = vmig__src_dev_pump(e, c, i, false, 0, &dev_err);
    if (ret < 0) {
        return ret;
    }
    m.type = VMIG_MP_DEV_END;
    m.dev_end.dev = i;
    m.dev_end.total = d->tx_off;
    m.dev_end.digest = XXH3_64bits_digest(d->hash);
    return vmig_mp_send_msg(c, &m);
}

/* After a send failed: the destination may have said why before closing. */
static void
src_fetch_reason(struct vmig_engine *e, struct vmig_mp_conn *c)
{
    struct vmig_mp_frame f;

    vmig_mp_conn_set_cancel(c, NULL);
    vmig_mp_conn_set_timeout(c, 200);
    for (int i = 0; i < 64; i++) {
        if (vmig_mp_recv(c, &f) < 0) {
            return;
        }
        if (f.hdr.type == VMIG_MP_ERROR) {
            (void)parse_error_frame(e, &f);
            return;
        }
    }
}

static void
src_abort(struct vmig_engine *e, struct vmig_mp_conn *c, int why)
{
    struct vmig_mp_msg m = {.type = VMIG_MP_ABORT};
    int dev, err = vmig__engine_failure(e, &dev, m.abort.reason,
                                        sizeof(m.abort.reason));

    vmig_mp_conn_set_cancel(c, NULL);
    vmig_mp_conn_set_timeout(c, 1000);
    m.abort.err = (uint32_t)(err != 0 ? err : -why);
    if (err == 0) {
        snprintf(m.abort.reason, sizeof(m.abort.reason), "%s",
                 why == -ECANCELED ? "cancelled by the source"
                                   : strerror(-why));
    }
    if (vmig_mp_send_msg(c, &m) < 0) {
        vmig_dbg(e->ctx, "migration: could not tell the destination to "
                         "abort (it is gone)");
    }
}

static void
src_record_downtime(struct vmig_engine *e, uint64_t pause_real,
                    uint64_t pause_mono, const struct vmig_mp_frame *f)
{
    struct vmig_mp_msg m;
    uint64_t upper = (vmig__mono_ns() - pause_mono) / 1000;
    uint64_t dt = upper, resume_real = 0;

    /*
     * The VM runs on the destination once CONFIRM arrives, whatever its
     * payload says: a malformed one only loses the resume time.  That
     * time is on the destination's clock; trust it only when it falls
     * inside [pause, confirm received] on ours, else report the upper
     * bound (pause -> confirmation received).
     */
    if (vmig_mp_frame_decode(f, &m) == 0) {
        resume_real = m.confirm.resume_ns;
    }
    if (resume_real != 0 && resume_real >= pause_real &&
        (resume_real - pause_real) / 1000 <= upper) {
        dt = (resume_real - pause_real) / 1000;
    }
    pthread_mutex_lock(&e->lock);
    e->st.downtime_ms = (dt + 500) / 1000;
    e->downtime_us = dt;
    pthread_mutex_unlock(&e->lock);
}

int
vmig_engine_migrate(struct vmig_engine *e, int fd)
{
    struct vmig_chan *ch;
    int ret = vmig_chan_plain(e->ctx, fd, &ch);

    if (ret == 0) {
        ret = vmig_engine_migrate_chan(e, ch);
        vmig_chan_free(ch);
    }
    return ret;
}

int
vmig_engine_migrate_chan(struct vmig_engine *e, struct vmig_chan *ch)
{
    struct vmig_mp_conn *c = NULL;
    struct vmig_mp_frame f;
    struct vmig_engine_params p;
    uint64_t features = 0, pause_real = 0, pause_mono = 0, pc_sent = 0;
    bool paused = false, touched = false, committed = false, vcpu = false;
    bool conn_ok = true, refused_here = false, pc_on = false;
    struct eng_pc pc;
    char why[VMIG_MP_REASON_MAX + 1];
    int mixed;
    struct vmig_mp_msg m;
    int ret;

    ret = vmig__engine_begin(e, VMIG_ENGINE_ROLE_SOURCE);
    if (ret < 0) {
        return ret;
    }
    if (e->ops->vcpu_pause == NULL) {
        ret = -EINVAL;
        vmig__engine_set_error(e, "the VMM gave no vcpu_pause hook");
        goto end;
    }
    memset(&pc, 0, sizeof(pc));
    e->ack_req = 0;
    e->ack_got = 0;
    for (unsigned int i = 0; i < e->ndev; i++) {
        struct eng_dev *d = &e->dev[i];

        d->tx_off = 0;
        d->tx_pc = false;
        d->tx_init_done = false;
        d->tx_restarts = 0;
        XXH3_freeState(d->hash);
        d->hash = XXH3_createState();
        if (d->hash == NULL) {
            ret = -ENOMEM;
            goto end;
        }
        XXH3_64bits_reset(d->hash);
    }
    ret = vmig_mp_conn_new_chan(e->ctx, ch, &c);
    if (ret < 0) {
        goto end;
    }
    vmig_engine_get_params(e, &p);
    vmig_mp_conn_set_timeout(c, p.timeout_ms);
    vmig_mp_conn_set_cancel(c, &e->cancel);
    vmig__engine_set_status(e, VMIG_ENGINE_SETUP);
    vmig_info(e->ctx, "migration: starting (%llu MiB RAM, %u devices)",
              (unsigned long long)(e->ram_total >> 20), e->ndev);

    ret = vmig__engine_handshake(e, c, true);
    if (ret < 0) {
        goto fail;
    }
    ret = src_hello(e, c, 0, &features, NULL);
    if (ret < 0) {
        goto fail;
    }
    mixed = vmig_engine_mixed_p2p(e, why, sizeof(why));
    if (mixed < 0) {
        ret = mixed;
        goto fail;
    }
    if (mixed == 1 && !p.allow_mixed_p2p) {
        vmig_err(e->ctx,
                 "migration: %s: a peer could still DMA into a device whose "
                 "state was already saved; refused, nothing was changed",
                 why);
        vmig__engine_set_error(e, "%s", why);
        refused_here = true;
        ret = -EOPNOTSUPP;
        goto fail;
    }
    if (mixed == 1) {
        vmig_warn(e->ctx, "migration: devices without P2P migrate together "
                          "with others (allow-mixed-p2p): DMA between them "
                          "during the stop may be lost");
    }
    m = (struct vmig_mp_msg){.type = VMIG_MP_SETUP,
                             .setup = {.ram_bytes = e->ram_total}};
    ret = vmig_mp_send_msg(c, &m);
    if (ret < 0) {
        goto fail;
    }
    ret = src_expect(e, c, VMIG_MP_SETUP_ACK, &f);
    if (ret < 0) {
        goto fail;
    }
    if (vmig_mp_frame_decode(&f, &m) < 0) {
        vmig__engine_set_error(e, "destination sent a malformed SETUP_ACK");
        ret = -EPROTO;
        goto fail;
    }
    if (m.setup_ack.err != 0) {
        ret = -(int)m.setup_ack.err;
        vmig__engine_set_error(e, "destination setup failed: %s",
                               strerror(-ret));
        goto fail;
    }
    pthread_mutex_lock(&e->lock);
    e->st.setup_time_ms = (vmig__mono_ns() - e->t_start) / 1000000;
    e->t_xfer = vmig__mono_ns();
    pthread_mutex_unlock(&e->lock);
    vmig__engine_set_status(e, VMIG_ENGINE_ACTIVE);

    if (vmig__pc_wanted(e, features, &p)) {
        pc_on = true;
        ret = vmig__pc_begin(e, features, &p, &pc, &touched);
        if (ret == 0) {
            ret = vmig__pc_iterate(e, c, &pc, &p);
        }
        if (ret < 0) {
            goto fail;
        }
    }

    /* stop-copy: from here the guest is down until CONFIRM */
    if (vmig__engine_cancelled(e)) {
        ret = -ECANCELED;
        goto fail;
    }
    pause_real = vmig__real_ns();
    pause_mono = vmig__mono_ns();
    ret = e->ops->vcpu_pause(e->opaque);
    if (ret < 0) {
        vmig__engine_set_error(e, "cannot pause the vCPUs: %s", strerror(-ret));
        goto fail;
    }
    paused = true;
    touched = true;
    pc_sent = vmig__wire_sent(c);
    if (p.test_one_phase_stop) {
        vmig_warn(e->ctx, "migration: TEST ONLY: one-phase device stop "
                          "(unsafe: DMA between devices can be lost)");
    }
    ret = src_stop_devices(e, p.test_one_phase_stop);
    if (ret < 0) {
        goto fail;
    }
    vmig__engine_set_status(e, VMIG_ENGINE_DEVICE);
    ret = pc_on ? vmig__pc_final_ram(e, c, &pc)
                : vmig__src_send_ram(e, c,
                                     (features & VMIG_MP_FEAT_ZERO_PAGES) != 0,
                                     false, 1, true);
    if (ret < 0) {
        goto fail;
    }
    ret = src_send_vcpu(e, c, &vcpu);
    if (ret < 0) {
        goto fail;
    }
    for (unsigned int i = 0; i < e->ndev; i++) {
        ret = src_send_device(e, c, i);
        if (ret < 0) {
            goto fail;
        }
    }
    if (vmig__engine_cancelled(e)) {
        ret = -ECANCELED;
        goto fail;
    }
    /* past this point a cancel could leave the VM running twice */
    vmig_mp_conn_set_cancel(c, NULL);
    committed = true;
    pthread_mutex_lock(&e->lock);
    e->st.stopcopy_bytes = vmig__wire_sent(c) - pc_sent;
    pthread_mutex_unlock(&e->lock);
    m = (struct vmig_mp_msg){.type = VMIG_MP_SWITCHOVER,
                             .switchover = {.ram_bytes = e->ram_total,
                                            .ndevices = e->ndev,
                                            .flags = vcpu ? VMIG_MP_SW_VCPU : 0,
                                            .pause_ns = pause_real}};
    ret = vmig_mp_send_msg(c, &m);
    if (ret < 0) {
        goto fail;
    }
    ret = src_expect(e, c, VMIG_MP_CONFIRM, &f);
    if (ret < 0) {
        goto fail;
    }
    src_record_downtime(e, pause_real, pause_mono, &f);
    /* the VM runs on the destination: end our saving sessions */
    for (unsigned int i = 0; i < e->ndev; i++) {
        if (vmig__engine_dev_set(e, i, VMIG_STATE_STOP, false) < 0) {
            vmig_warn(e->ctx,
                      "device %s: could not end its saving session "
                      "after the migration; the VM runs on the destination",
                      e->dev[i].name);
        }
    }
    vmig__engine_account(e, c, 0, 0, -1, 0);
    vmig_info(e->ctx, "migration: completed; downtime %llu us",
              (unsigned long long)e->downtime_us);
    vmig__pc_end(e, &pc);
    vmig_mp_conn_free(c);
    vmig__engine_end(e, 0);
    return 0;

fail:
    if (ret == -EPIPE || ret == -ECONNRESET) {
        conn_ok = false;
        src_fetch_reason(e, c);
    } else if (ret == -ETIMEDOUT) {
        conn_ok = false;
    }
    if (conn_ok && (ret != -EOPNOTSUPP || refused_here)) {
        src_abort(e, c, ret);
    }
    if (pc_on && !paused) {
        pthread_mutex_lock(&e->lock);
        e->st.precopy_bytes = vmig__wire_sent(c) - pc.sent0;
        pthread_mutex_unlock(&e->lock);
    }
    vmig__pc_end(e, &pc);
    if (committed) {
        vmig_warn(e->ctx,
                  "migration: failed after SWITCHOVER was sent (%s); "
                  "the destination did not confirm, so the VM resumes here",
                  strerror(-ret));
    }
    if (touched) {
        vmig__engine_devices_to_running(e);
    }
    if (paused) {
        int r2 = e->ops->vcpu_resume(e->opaque);

        if (r2 < 0) {
            vmig_err(e->ctx,
                     "migration: cannot resume the vCPUs after the "
                     "failure: %s",
                     strerror(-r2));
        }
    }
    vmig_err(e->ctx, "migration: %s: %s; the VM keeps running here",
             ret == -ECANCELED ? "cancelled" : "failed", strerror(-ret));
end:
    vmig_mp_conn_free(c);
    vmig__engine_end(e, ret);
    return ret;
}

int
vmig_engine_check(struct vmig_engine *e, int fd, struct vmig_engine_check *out)
{
    struct vmig_chan *ch;
    int ret = vmig_chan_plain(e->ctx, fd, &ch);

    if (ret == 0) {
        ret = vmig_engine_check_chan(e, ch, out);
        vmig_chan_free(ch);
    }
    return ret;
}

int
vmig_engine_check_chan(struct vmig_engine *e, struct vmig_chan *ch,
                       struct vmig_engine_check *out)
{
    struct vmig_mp_conn *c = NULL;
    struct vmig_engine_params p;
    uint64_t features;
    int ret;

    pthread_mutex_lock(&e->lock);
    if (e->running) {
        pthread_mutex_unlock(&e->lock);
        return -EBUSY;
    }
    e->running = true;
    pthread_mutex_unlock(&e->lock);
    memset(out, 0, sizeof(*out));
    ret = vmig_mp_conn_new_chan(e->ctx, ch, &c);
    if (ret < 0) {
        goto out;
    }
    vmig_engine_get_params(e, &p);
    vmig_mp_conn_set_timeout(c, p.timeout_ms);
    ret = vmig__engine_handshake(e, c, true);
    if (ret < 0) {
        goto out;
    }
    ret = src_hello(e, c, VMIG_MP_HELLO_CHECK_ONLY, &features, out);
    if (ret == -EOPNOTSUPP) {
        ret = 0; /* answered: the verdicts are in @out */
    }
    if (ret == 0 && out->status == 0 && !p.allow_mixed_p2p &&
        vmig_engine_mixed_p2p(e, out->reason, sizeof(out->reason)) == 1) {
        out->status = EOPNOTSUPP;
    }
out:
    vmig_mp_conn_free(c);
    pthread_mutex_lock(&e->lock);
    e->running = false;
    pthread_mutex_unlock(&e->lock);
    return ret;
}
