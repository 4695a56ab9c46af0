/* SPDX-License-Identifier: MIT */
/*
 * engine_src.c - the source side of a migration, as phases over the
 * migration's struct eng_src (engine_src_state.h):
 *
 *   hello      preamble, HELLO / HELLO_REPLY (the destination's verdict
 *              per device), the mixed-P2P rule; nothing changes yet
 *   setup      SETUP / SETUP_ACK: the destination's devices are RESUMING
 *   precopy    while the VM runs (engine_precopy.c), when negotiated
 *   switchover pause the vCPUs, stop the devices in two phases
 *   stop-copy  the last RAM, the vCPU state, each device's config and data
 *   complete   SWITCHOVER; with the commit protocol READY, GO and
 *              CONFIRM (engine_commit.c), without it CONFIRM; the saving
 *              sessions end
 *
 * The rollback that leaves the VM running here after a failure before the
 * commit is engine_src_rollback.c; after GO the source never resumes on
 * its own (engine_commit.c, engine_src_recover.c).  The frames go out
 * through engine_send.c (docs/migration-protocol.md section 6).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/engine.h>
#include "engine_chan.h"
#include "engine_precopy.h"
#include "engine_priv.h"
#include "engine_send.h"
#include "internal.h"

/* Where descriptors are staged in e->buf during HELLO. */
#define SRC_DESC_STRIDE VMIG_MP_DESC_MAX

/* ------------------------------------------------------------ state */

void
vmig__src_free(struct eng_src *s)
{
    if (s == NULL) {
        return;
    }
    vmig__pc_end(s);
    vmig__mc_src_free(s);
    for (unsigned int i = 0; i < VMIG_ENGINE_MAX_DEVICES; i++) {
        XXH3_freeState(s->dev[i].hash);
    }
    vmig_mp_conn_free(s->c);
    free(s);
}

/* A fresh state for one migration (or check) over @ch. */
static int
src_new(struct vmig_engine *e, struct vmig_chan *ch, struct eng_src **out)
{
    struct eng_src *s = calloc(1, sizeof(*s));
    int ret;

    if (s == NULL) {
        return -ENOMEM;
    }
    s->e = e;
    s->ch = ch;
    for (unsigned int i = 0; i < e->ndev; i++) {
        s->dev[i].hash = XXH3_createState();
        if (s->dev[i].hash == NULL) {
            vmig__src_free(s);
            return -ENOMEM;
        }
        XXH3_64bits_reset(s->dev[i].hash);
    }
    ret = vmig_mp_conn_new_chan(e->ctx, ch, &s->c);
    if (ret < 0) {
        vmig__src_free(s);
        return ret;
    }
    vmig_engine_get_params(e, &s->p);
    vmig_mp_conn_set_timeout(s->c, s->p.timeout_ms);
    *out = s;
    return 0;
}

/* ------------------------------------------------------------ hello */

/* The features offered only when this migration wants them. */
static uint64_t
src_extra_offer(const struct eng_src *s)
{
    return vmig__mc_offer(s) |
           (s->p.compression == VMIG_ENGINE_COMPRESS_ZSTD ? VMIG_MP_FEAT_ZSTD
                                                          : 0);
}

/* Build HELLO in @out (VMIG_MP_PAYLOAD_MAX bytes) from our devices. */
static ssize_t
src_build_hello(struct eng_src *s, uint32_t flags, uint8_t *out)
{
    struct vmig_engine *e = s->e;
    struct vmig_mp_hello *h;
    ssize_t n;

    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return -ENOMEM;
    }
    h->version_min = VMIG_MP_PROTO_MIN;
    h->version_max = VMIG_MP_PROTO_MAX;
    h->features = VMIG_MP_FEAT__SUPPORTED | src_extra_offer(s);
    if (s->p.no_commit) {
        h->features &= ~VMIG_MP_FEAT_COMMIT;
    }
    h->flags = flags;
    h->page_size = VMIG_MP_PAGE_SIZE;
    h->nregions = e->nregions;
    for (unsigned int i = 0; i < e->nregions; i++) {
        memcpy(h->region[i].name, e->region[i].name, sizeof(h->region[i].name));
        h->region[i].size = e->region[i].size;
    }
    h->ndevices = e->ndev;
    for (unsigned int i = 0; i < e->ndev; i++) {
        const struct eng_dev *d = &e->dev[i];
        struct vmig_mp_dev *hd = &h->dev[i];
        int ret;

        ret = d->ops->get_flags(d->opaque, &s->dev[i].flags);
        if (ret == 0) {
            ret = vmig_flags_validate(s->dev[i].flags);
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
        hd->mig_flags = s->dev[i].flags;
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

/* The destination's verdicts into @check (vmig_engine_check()). */
static void
src_fill_check(const struct vmig_engine *e,
               const struct vmig_mp_hello_reply *rp,
               struct vmig_engine_check *check)
{
    memset(check, 0, sizeof(*check));
    check->status = (int)rp->status;
    if (rp->status == 0 && rp->version == 0) {
        check->status = EOPNOTSUPP;
    }
    memcpy(check->reason, rp->reason, sizeof(check->reason));
    check->ndevices = e->ndev;
    for (unsigned int i = 0; i < e->ndev; i++) {
        memcpy(check->dev[i].name, e->dev[i].name, sizeof(check->dev[i].name));
        check->dev[i].verdict = rp->dev[i].compatible ? 1 : 0;
        memcpy(check->dev[i].reason, rp->dev[i].reason,
               sizeof(check->dev[i].reason));
    }
}

/*
 * Preamble, HELLO / HELLO_REPLY.  Records the per-device verdicts in the
 * stats (and in @check when given).  Return: 0 when the destination
 * accepts, the features it accepted in s->features; -EOPNOTSUPP when it
 * refuses.
 */
static int
src_offer(struct eng_src *s, uint32_t flags, struct vmig_engine_check *check)
{
    struct vmig_engine *e = s->e;
    struct vmig_mp_hello_reply *rp;
    struct vmig_mp_frame f;
    uint8_t *out;
    ssize_t n;
    int ret;

    ret = vmig__engine_handshake(s->e, s->c, true);
    if (ret < 0) {
        return ret;
    }
    out = malloc(vmig_mp_type_limit(VMIG_MP_HELLO));
    rp = calloc(1, sizeof(*rp));
    if (out == NULL || rp == NULL) {
        ret = -ENOMEM;
        goto out;
    }
    n = src_build_hello(s, flags, out);
    if (n < 0) {
        ret = (int)n;
        goto out;
    }
    ret = vmig_mp_send1(s->c, VMIG_MP_HELLO, 0, out, (size_t)n);
    if (ret < 0) {
        goto out;
    }
    ret = vmig__src_expect(s, VMIG_MP_HELLO_REPLY, &f);
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
        src_fill_check(e, rp, check);
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
    s->features = rp->features & (VMIG_MP_FEAT__SUPPORTED | src_extra_offer(s));
    ret = 0;
out:
    free(out);
    free(rp);
    return ret;
}

/* Phase: HELLO, then the mixed-P2P rule.  Nothing has changed yet. */
static int
src_hello(struct eng_src *s)
{
    struct vmig_engine *e = s->e;
    char why[VMIG_MP_REASON_MAX + 1];
    int ret, mixed;

    ret = src_offer(s, 0, NULL);
    if (ret < 0) {
        return ret;
    }
    if (s->p.compression == VMIG_ENGINE_COMPRESS_ZSTD &&
        !(s->features & VMIG_MP_FEAT_ZSTD)) {
        vmig_warn(e->ctx, "migration: the destination does not support "
                          "zstd compression; migrating uncompressed");
    }
    ret = vmig__engine_compress(e, s->c, s->features, s->p.zstd_level);
    if (ret < 0) {
        return ret;
    }
    mixed = vmig_engine_mixed_p2p(e, why, sizeof(why));
    if (mixed < 0) {
        return mixed;
    }
    if (mixed == 1 && !s->p.allow_mixed_p2p) {
        vmig_err(e->ctx,
                 "migration: %s: a peer could still DMA into a device whose "
                 "state was already saved; refused, nothing was changed",
                 why);
        vmig__engine_set_error(e, "%s", why);
        s->refused_here = true;
        return -EOPNOTSUPP;
    }
    if (mixed == 1) {
        vmig_warn(e->ctx, "migration: devices without P2P migrate together "
                          "with others (allow-mixed-p2p): DMA between them "
                          "during the stop may be lost");
    }
    return 0;
}

/* ------------------------------------------------------------ setup */

/* Phase: SETUP / SETUP_ACK; the bulk transfer's clock starts. */
static int
src_setup(struct eng_src *s)
{
    struct vmig_engine *e = s->e;
    struct vmig_mp_msg m = {.type = VMIG_MP_SETUP,
                            .setup = {.ram_bytes = e->ram_total}};
    struct vmig_mp_frame f;
    int ret;

    ret = vmig_mp_send_msg(s->c, &m);
    if (ret == 0) {
        ret = vmig__src_expect(s, VMIG_MP_SETUP_ACK, &f);
    }
    if (ret < 0) {
        return ret;
    }
    if (vmig_mp_frame_decode(&f, &m) < 0) {
        vmig__engine_set_error(e, "destination sent a malformed SETUP_ACK");
        return -EPROTO;
    }
    if (m.setup_ack.err != 0) {
        ret = -(int)m.setup_ack.err;
        vmig__engine_set_error(e, "destination setup failed: %s",
                               strerror(-ret));
        return ret;
    }
    pthread_mutex_lock(&e->lock);
    e->st.setup_time_ms = (vmig__mono_ns() - e->t_start) / 1000000;
    e->t_xfer = vmig__mono_ns();
    pthread_mutex_unlock(&e->lock);
    vmig__engine_set_status(e, VMIG_ENGINE_ACTIVE);
    return 0;
}

/* ------------------------------------------------------------ precopy */

static int
src_precopy(struct eng_src *s)
{
    if (!vmig__pc_wanted(s)) {
        return 0;
    }
    s->pc_on = true;
    return vmig__pc_run(s);
}

/* ------------------------------------------------------------ switchover */

/*
 * Phase one: every device stops initiating P2P DMA (RUNNING_P2P, or
 * PRE_COPY_P2P keeping its precopy session); a device without P2P stops
 * outright (STOP, or STOP_COPY from PRE_COPY: PRE_COPY -> STOP would end
 * its session).  Phase two: everyone to STOP_COPY.  The test-only one
 * phase variant stops and saves each device in turn while later ones
 * still run - what the protocol forbids.
 */
static int
src_stop_devices(struct eng_src *s, bool one_phase)
{
    struct vmig_engine *e = s->e;
    int ret;

    for (unsigned int i = 0; i < e->ndev; i++) {
        const struct eng_dev *d = &e->dev[i];
        enum vmig_state st;

        /* reset between its last precopy read and the pause: moving it
         * on would open a new session and send it as the continuation */
        if (s->dev[i].tx_pc && (d->ops->get_state(d->opaque, &st) < 0 ||
                                st != VMIG_STATE_PRE_COPY)) {
            vmig__engine_set_error(e,
                                   "device %s was reset during the "
                                   "switchover; migration aborted, retry it",
                                   d->name);
            return -ENODEV;
        }
    }
    for (unsigned int i = 0; i < e->ndev && !one_phase; i++) {
        const struct eng_src_dev *sd = &s->dev[i];
        enum vmig_state t;

        if (sd->flags & VMIG_MIGRATION_P2P) {
            t = sd->tx_pc ? VMIG_STATE_PRE_COPY_P2P : VMIG_STATE_RUNNING_P2P;
        } else {
            t = sd->tx_pc ? VMIG_STATE_STOP_COPY : VMIG_STATE_STOP;
        }
        ret = vmig__engine_dev_set(e, i, t, false);
        if (ret < 0) {
            vmig__engine_set_error(e, "device %s: cannot quiesce: %s",
                                   e->dev[i].name, strerror(-ret));
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

/* Phase: from here the guest is down until CONFIRM. */
static int
src_switchover(struct eng_src *s)
{
    struct vmig_engine *e = s->e;
    int ret;

    if (vmig__engine_cancelled(e)) {
        return -ECANCELED;
    }
    s->pause_real = vmig__real_ns();
    s->pause_mono = vmig__mono_ns();
    ret = e->ops->vcpu_pause(e->opaque);
    if (ret < 0) {
        vmig__engine_set_error(e, "cannot pause the vCPUs: %s", strerror(-ret));
        return ret;
    }
    s->paused = true;
    s->touched = true;
    s->pc_sent = vmig__wire_sent(s->c);
    if (s->p.test_one_phase_stop) {
        vmig_warn(e->ctx, "migration: TEST ONLY: one-phase device stop "
                          "(unsafe: DMA between devices can be lost)");
    }
    ret = src_stop_devices(s, s->p.test_one_phase_stop);
    if (ret < 0) {
        return ret;
    }
    vmig_dbg(e->ctx, "migration: vCPUs paused and devices stopped in %llu us",
             (unsigned long long)(vmig__mono_ns() - s->pause_mono) / 1000);
    vmig__engine_set_status(e, VMIG_ENGINE_DEVICE);
    return 0;
}

/* ------------------------------------------------------------ stop-copy */

/*
 * Phase: the last RAM, the vCPU state, every device's config and data.
 * With one connection that order is the wire format tests/data records
 * (migstream-src-v1.bin); with channels the devices' data starts first
 * (engine_chan_src.c).
 */
static int
src_stop_copy(struct eng_src *s)
{
    int ret;

    if (s->mc != NULL) {
        return vmig__mc_src_stop_copy(s);
    }
    ret = vmig__pc_final_collect(s);
    if (ret == 0) {
        ret = vmig__pc_dirty_pass(s)
                  ? vmig__pc_final_send(s)
                  : vmig__src_send_ram(
                        s, (s->features & VMIG_MP_FEAT_ZERO_PAGES) != 0, false,
                        1, true);
    }
    if (ret == 0) {
        ret = vmig__src_send_vcpu(s);
    }
    for (unsigned int i = 0; ret == 0 && i < s->e->ndev; i++) {
        ret = vmig__src_send_device(s, i);
    }
    return ret;
}

/* ------------------------------------------------------------ complete */

/* The downtime from CONFIRM @f, or its upper bound without one (@f NULL:
 * the outcome was learnt on a recovery connection). */
static void
src_record_downtime(struct eng_src *s, const struct vmig_mp_frame *f)
{
    struct vmig_engine *e = s->e;
    struct vmig_mp_msg m;
    uint64_t upper = (vmig__mono_ns() - s->pause_mono) / 1000;
    uint64_t dt = upper, resume_real = 0;

    /*
     * The VM runs on the destination once CONFIRM arrives, whatever its
     * payload says: a malformed one only loses the resume time.  That
     * time is on the destination's clock; trust it only when it falls
     * inside [pause, confirm received] on ours, else report the upper
     * bound (pause -> confirmation received).
     */
    if (f != NULL && vmig_mp_frame_decode(f, &m) == 0) {
        resume_real = m.confirm.resume_ns;
    }
    if (resume_real != 0 && resume_real >= s->pause_real &&
        (resume_real - s->pause_real) / 1000 <= upper) {
        dt = (resume_real - s->pause_real) / 1000;
    }
    pthread_mutex_lock(&e->lock);
    e->st.downtime_ms = (dt + 500) / 1000;
    pthread_mutex_unlock(&e->lock);
    s->downtime_us = dt;
}

void
vmig__src_finish(struct eng_src *s, const struct vmig_mp_frame *confirm)
{
    struct vmig_engine *e = s->e;

    src_record_downtime(s, confirm);
    /* the VM runs on the destination: end our saving sessions */
    for (unsigned int i = 0; i < e->ndev; i++) {
        if (vmig__engine_dev_set(e, i, VMIG_STATE_STOP, false) < 0) {
            vmig_warn(e->ctx,
                      "device %s: could not end its saving session "
                      "after the migration; the VM runs on the destination",
                      e->dev[i].name);
        }
    }
    if (s->c != NULL) {
        vmig__engine_account(e, s->c, 0, 0, -1, 0);
    }
    vmig_info(e->ctx, "migration: completed; downtime %llu us%s",
              (unsigned long long)s->downtime_us,
              confirm == NULL ? " at most (learnt on a recovery connection)"
                              : "");
    vmig__pc_end(s);
}

/*
 * Phase: SWITCHOVER, then with the commit protocol READY / GO / CONFIRM
 * (engine_commit.c), without it the destination's CONFIRM; our sessions
 * end.
 */
static int
src_complete(struct eng_src *s)
{
    struct vmig_engine *e = s->e;
    struct vmig_mp_msg m = {.type = VMIG_MP_SWITCHOVER};
    bool commit = (s->features & VMIG_MP_FEAT_COMMIT) != 0, confirmed = true;
    struct vmig_mp_frame f;
    int ret;

    if (!commit) {
        /* without READY / GO, SWITCHOVER is the commit: past it a
         * cancel could leave the VM running twice */
        pthread_mutex_lock(&e->lock);
        if (!vmig__engine_cancelled(e)) {
            e->committed = true;
            s->committed = true;
        }
        pthread_mutex_unlock(&e->lock);
        if (!s->committed) {
            return -ECANCELED;
        }
        vmig_mp_conn_set_cancel(s->c, NULL);
    } else if (vmig__engine_cancelled(e)) {
        return -ECANCELED;
    }
    pthread_mutex_lock(&e->lock);
    /* the extra channels carry stop-copy data only */
    e->st.stopcopy_bytes = vmig__wire_sent(s->c) - s->pc_sent + e->wire_extra;
    pthread_mutex_unlock(&e->lock);
    m.switchover =
        (struct vmig_mp_switchover){.ram_bytes = e->ram_total,
                                    .ndevices = e->ndev,
                                    .flags = s->vcpu_sent ? VMIG_MP_SW_VCPU : 0,
                                    .pause_ns = s->pause_real};
    ret = vmig_mp_send_msg(s->c, &m);
    if (ret == 0) {
        ret = commit ? vmig__src_commit(s, &f, &confirmed)
                     : vmig__src_expect(s, VMIG_MP_CONFIRM, &f);
    }
    if (ret < 0) {
        return ret;
    }
    vmig__src_finish(s, confirmed ? &f : NULL);
    return 0;
}

/* ------------------------------------------------------------ entry points */

/* Engine teardown with an unknown outcome: the VM dies with the VMM. */
static void
src_release(struct vmig_engine *e)
{
    vmig__src_free(e->rec.src);
    e->rec.src = NULL;
}

/* The source's phases, in order; a failing one ends the list. */
static int (*const src_phases[])(struct eng_src *s) = {
    src_hello,      vmig__mc_src_open, src_setup,    src_precopy,
    src_switchover, src_stop_copy,     src_complete,
};

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
    struct eng_src *s = NULL;
    int ret;

    ret = vmig__engine_begin(e, VMIG_ENGINE_ROLE_SOURCE);
    if (ret < 0) {
        return ret;
    }
    if (e->ops->vcpu_pause == NULL) {
        vmig__engine_set_error(e, "the VMM gave no vcpu_pause hook");
        vmig__engine_end(e, -EINVAL);
        return -EINVAL;
    }
    ret = src_new(e, ch, &s);
    if (ret < 0) {
        vmig__engine_end(e, ret);
        return ret;
    }
    vmig_mp_conn_set_cancel(s->c, &e->cancel);
    vmig__engine_set_status(e, VMIG_ENGINE_SETUP);
    vmig_info(e->ctx, "migration: starting (%llu MiB RAM, %u devices)",
              (unsigned long long)(e->ram_total >> 20), e->ndev);
    for (size_t i = 0; ret == 0 && i < VMIG_ARRAY_SIZE(src_phases); i++) {
        ret = src_phases[i](s);
    }
    if (ret < 0 && s->go_sent && !s->dst_discarded) {
        /* GO is out and the outcome unknown: never resume on our own */
        vmig__src_park(s);
        vmig__engine_on_release(e, src_release);
        return -EINPROGRESS;
    }
    if (ret < 0) {
        ret = vmig__src_rollback(s, ret);
    }
    vmig__src_free(s);
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
    struct eng_src *s = NULL;
    int ret;

    pthread_mutex_lock(&e->lock);
    if (e->running) {
        pthread_mutex_unlock(&e->lock);
        return -EBUSY;
    }
    e->running = true;
    pthread_mutex_unlock(&e->lock);
    memset(out, 0, sizeof(*out));
    ret = src_new(e, ch, &s);
    if (ret == 0) {
        ret = src_offer(s, VMIG_MP_HELLO_CHECK_ONLY, out);
    }
    if (ret == -EOPNOTSUPP) {
        ret = 0; /* answered: the verdicts are in @out */
    }
    if (ret < 0 && s != NULL && s->peer_err != 0 && ret == -s->peer_err &&
        out->status == 0) {
        /* the destination turned the check away (e.g. busy receiving
         * another migration): that is its answer, with its reason */
        out->status = s->peer_err;
        snprintf(out->reason, sizeof(out->reason), "%s", s->peer_reason);
        ret = 0;
    }
    if (ret == 0 && out->status == 0 && !s->p.allow_mixed_p2p &&
        vmig_engine_mixed_p2p(e, out->reason, sizeof(out->reason)) == 1) {
        out->status = EOPNOTSUPP;
    }
    vmig__src_free(s);
    pthread_mutex_lock(&e->lock);
    e->running = false;
    pthread_mutex_unlock(&e->lock);
    return ret;
}
