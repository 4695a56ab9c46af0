/* SPDX-License-Identifier: MIT */
/*
 * engine_dst_finish.c - how the destination ends a migration once
 * SWITCHOVER came: check that everything promised arrived, load it
 * (validate each device, RESUMING -> STOP, re-establish its VMM-owned
 * config, load the vCPU state), then run (devices in two phases, vCPUs,
 * CONFIRM).  Without the commit protocol it runs at once; with it
 * (VMIG_MP_FEAT_COMMIT, docs/migration-protocol.md section 6):
 *
 *   READY sent     the id of this migration; resume only on GO.  ABORT,
 *                  a local cancel or a failure to start discards (the
 *                  source learns it by ERROR, or by asking later); a lost
 *                  connection keeps the loaded VM paused for
 *                  recover_timeout_ms (engine_dst_recover.c), since the
 *                  source may come back and send GO again
 *   GO received    the VM runs here; the source's DONE says it knows;
 *                  without DONE RECOVER is answered "running" for the
 *                  recovery window
 *
 * and what the engine remembers to answer a source that asks later.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <vmig/engine.h>
#include "chan_priv.h"
#include "engine_dst_state.h"
#include "engine_priv.h"
#include "internal.h"

/* A fresh, non-zero migration id. */
static uint64_t
new_id(void)
{
    uint64_t id = 0;

    if (getrandom(&id, sizeof(id), GRND_NONBLOCK) != (ssize_t)sizeof(id)) {
        id = vmig__mono_ns() ^ ((uint64_t)getpid() << 32) ^ vmig__real_ns();
    }
    return id != 0 ? id : 1;
}

/* Everything SWITCHOVER promises is here. */
static int
dst_check_complete(struct eng_dst *d)
{
    struct vmig_engine *e = d->e;

    if (d->sw.ram_bytes != e->ram_total || d->sw.ndevices != d->src_ndev) {
        vmig__dst_fail(d, -1,
                       "SWITCHOVER for %llu bytes of RAM and %u devices; HELLO "
                       "announced %llu and %u",
                       (unsigned long long)d->sw.ram_bytes, d->sw.ndevices,
                       (unsigned long long)e->ram_total, d->src_ndev);
        return -EBADMSG;
    }
    if ((d->sw.flags & VMIG_MP_SW_VCPU) && d->vcpu == NULL) {
        vmig__dst_fail(d, -1, "vCPU state missing at switchover");
        return -EPROTO;
    }
    for (unsigned int j = 0; j < e->ndev; j++) {
        if (!d->dev[j].rx_ended) {
            vmig__dst_fail(d, d->dev[j].src_index,
                           "no complete state at switchover");
            return -EPROTO;
        }
    }
    return 0;
}

/*
 * Validation (RESUMING -> STOP), then the VMM-owned config (DMA mappings,
 * IRQ wiring, PCI config writes) while the device is stopped: a device
 * accepts region accesses in STOP, not in RESUMING (the uAPI's rule), and
 * nothing runs before both are done.  Then two phases: nobody runs before
 * everybody accepts P2P traffic.
 */
static int
dst_load_devices(struct eng_dst *d)
{
    struct vmig_engine *e = d->e;
    int ret;

    for (unsigned int j = 0; j < e->ndev; j++) {
        const struct eng_dev *ed = &e->dev[j];
        const struct eng_dst_dev *dd = &d->dev[j];

        if (dd->config_seen && ed->ops->config_load == NULL) {
            vmig__dst_fail(d, dd->src_index,
                           "config sent but this backend cannot load one");
            return -EOPNOTSUPP;
        }
        ret = vmig__engine_dev_set(e, j, VMIG_STATE_STOP, false);
        if (ret < 0) {
            vmig__dst_fail(d, dd->src_index, "state failed validation: %s",
                           strerror(-ret));
            return ret;
        }
        if (dd->config_seen) {
            ret = ed->ops->config_load(ed->opaque, dd->config, dd->config_len);
            if (ret < 0) {
                vmig__dst_fail(d, dd->src_index, "config refused: %s",
                               strerror(-ret));
                return ret;
            }
        }
    }
    return 0;
}

/* Nobody runs before everybody accepts P2P traffic. */
static int
dst_start_devices(struct eng_dst *d)
{
    struct vmig_engine *e = d->e;
    int ret;

    for (unsigned int j = 0; j < e->ndev; j++) {
        if (d->dev[j].flags & VMIG_MIGRATION_P2P) {
            ret = vmig__engine_dev_set(e, j, VMIG_STATE_RUNNING_P2P, false);
            if (ret < 0) {
                vmig__dst_fail(d, d->dev[j].src_index,
                               "cannot enter RUNNING_P2P");
                return ret;
            }
        }
    }
    for (unsigned int j = 0; j < e->ndev; j++) {
        ret = vmig__engine_dev_set(e, j, VMIG_STATE_RUNNING, false);
        if (ret < 0) {
            vmig__dst_fail(d, d->dev[j].src_index, "cannot enter RUNNING");
            return ret;
        }
    }
    return 0;
}

/* Validate, re-establish the config, load the vCPU state: everything
 * but running. */
int
vmig__dst_load(struct eng_dst *d)
{
    struct vmig_engine *e = d->e;
    int ret;

    ret = dst_check_complete(d);
    if (ret < 0) {
        return ret;
    }
    vmig__engine_set_status(e, VMIG_ENGINE_DEVICE);
    ret = dst_load_devices(d);
    if (ret < 0) {
        return ret;
    }
    if (d->vcpu != NULL && e->ops->vcpu_load != NULL) {
        ret = e->ops->vcpu_load(e->opaque, d->vcpu, d->vcpu_len);
        if (ret < 0) {
            vmig__dst_fail(d, -1, "vCPU state refused: %s", strerror(-ret));
            return ret;
        }
    } else if (d->vcpu != NULL) {
        vmig__dst_fail(d, -1, "vCPU state sent but this VMM cannot load it");
        return -EOPNOTSUPP;
    }
    return 0;
}

int
vmig__dst_run(struct eng_dst *d)
{
    struct vmig_engine *e = d->e;
    struct vmig_mp_msg conf = {.type = VMIG_MP_CONFIRM};
    int ret;

    ret = dst_start_devices(d);
    if (ret < 0) {
        return ret;
    }
    ret = e->ops->vcpu_resume(e->opaque);
    if (ret < 0) {
        vmig__dst_fail(d, -1, "cannot resume the vCPUs: %s", strerror(-ret));
        return ret;
    }
    d->resumed = true;
    conf.confirm.resume_ns = vmig__real_ns();
    conf.confirm.switchover_ns = vmig__mono_ns() - d->t_sw;
    pthread_mutex_lock(&e->lock);
    conf.confirm.ram_bytes = e->st.ram_transferred;
    conf.confirm.dev_bytes = e->st.dev_total;
    pthread_mutex_unlock(&e->lock);
    ret = vmig_mp_send_msg(d->c, &conf);
    if (ret == 0) {
        vmig_info(e->ctx, "incoming: VM received and running");
    } else if (d->features & VMIG_MP_FEAT_COMMIT) {
        /* it got GO: the VM runs here whatever became of CONFIRM; the
         * source learns it when it asks again */
        vmig_warn(e->ctx,
                  "incoming: VM received and running; CONFIRM not "
                  "delivered (%s): the source will ask again",
                  strerror(-ret));
        d->confirm_lost = true;
        ret = 0;
    }
    return ret;
}

static uint64_t
window_end(const struct eng_dst *d)
{
    return vmig__mono_ns() + (uint64_t)d->p.recover_timeout_ms * 1000000ull;
}

int
vmig__dst_reply(struct eng_dst *d, uint64_t id, unsigned int state,
                const char *reason)
{
    struct vmig_mp_msg m = {.type = VMIG_MP_RECOVER_REPLY};

    m.recover_reply.id = id;
    m.recover_reply.state = state;
    snprintf(m.recover_reply.reason, sizeof(m.recover_reply.reason), "%s",
             reason);
    return vmig_mp_send_msg(d->c, &m);
}

/* The VM runs here: wait (the peer timeout) for the source's DONE; without
 * it keep answering RECOVER for the recovery window. */
static void
wait_done(struct eng_dst *d)
{
    struct vmig_engine *e = d->e;
    struct vmig_mp_frame f;
    struct vmig_mp_msg m;
    bool done = false;

    if (d->c != NULL && !d->confirm_lost) {
        vmig_mp_conn_set_cancel(d->c, NULL);
        while (vmig_mp_recv(d->c, &f) == 0) {
            if (f.hdr.type == VMIG_MP_DONE &&
                vmig_mp_frame_decode(&f, &m) == 0 && m.done.id == d->id) {
                done = true;
                break;
            }
            if (vmig_mp_type_known(f.hdr.type) ||
                !(f.hdr.flags & VMIG_MP_F_OPTIONAL)) {
                break;
            }
        }
    }
    pthread_mutex_lock(&e->lock);
    e->rec.state = VMIG_MP_REC_RUNNING;
    e->rec.deadline = done ? 0 : window_end(d);
    pthread_mutex_unlock(&e->lock);
    if (!done) {
        vmig_warn(e->ctx,
                  "incoming: the source did not confirm it knows the VM "
                  "runs here; answering it for %u ms",
                  d->p.recover_timeout_ms);
    }
}

/*
 * Wait for GO on d->c and run the VM.  Return 0 (it runs here), a
 * negative errno (discard: ABORT, a local cancel, a failure to start), or
 * VMIG__DST_PENDING (the connection failed: hold the VM).
 */
int
vmig__dst_await_go(struct eng_dst *d)
{
    struct vmig_engine *e = d->e;
    struct vmig_mp_frame f;
    struct vmig_mp_msg m;
    int ret;

    for (;;) {
        ret = vmig_mp_recv(d->c, &f);
        if (ret == -ECANCELED) {
            vmig__dst_fail(d, -1, "cancelled on the destination before GO");
            return ret;
        }
        if (ret < 0) {
            /* lost, silent or garbled (perhaps that was GO): hold */
            vmig_warn(e->ctx, "incoming: waiting for GO: %s", strerror(-ret));
            return VMIG__DST_PENDING;
        }
        if (!vmig_mp_type_known(f.hdr.type) &&
            (f.hdr.flags & VMIG_MP_F_OPTIONAL)) {
            continue;
        }
        if (f.hdr.type == VMIG_MP_ABORT && vmig_mp_frame_decode(&f, &m) == 0) {
            vmig__engine_set_error(e, "source aborted before GO: %s",
                                   m.abort.reason);
            vmig__dst_fail(d, -1, "source aborted before GO: %s",
                           m.abort.reason);
            d->peer_aborted = true;
            d->send_err = false;
            return -ECANCELED;
        }
        if (f.hdr.type != VMIG_MP_GO || vmig_mp_frame_decode(&f, &m) < 0 ||
            m.go.id != d->id) {
            vmig__dst_fail(d, -1, "expected GO for migration %016llx, got %s",
                           (unsigned long long)d->id,
                           vmig_mp_type_name(f.hdr.type));
            return -EPROTO;
        }
        break;
    }
    ret = vmig__dst_run(d);
    if (ret < 0) {
        return ret;
    }
    vmig__engine_set_status(e, VMIG_ENGINE_COMPLETED);
    wait_done(d);
    return 0;
}

int
vmig__dst_commit(struct eng_dst *d)
{
    struct vmig_engine *e = d->e;
    struct vmig_mp_msg m = {.type = VMIG_MP_READY};
    int ret;

    d->id = new_id();
    m.ready.id = d->id;
    m.ready.load_ns = vmig__mono_ns() - d->t_sw;
    pthread_mutex_lock(&e->lock);
    e->rec = (struct eng_rec){
        .id = d->id, .role = VMIG_ENGINE_ROLE_DEST, .state = VMIG_MP_REC_READY};
    pthread_mutex_unlock(&e->lock);
    d->ready = true;
    ret = vmig_mp_send_msg(d->c, &m);
    if (ret < 0) {
        /* READY may not have left; but what the source sent before it
         * hung up is still to be read: an ABORT there (a source that
         * gave up on a slow destination) discards at once */
        vmig_dbg(e->ctx, "incoming: READY not delivered: %s", strerror(-ret));
    }
    return vmig__dst_await_go(d);
}

void
vmig__dst_park(struct eng_dst *d)
{
    struct vmig_engine *e = d->e;

    vmig_mp_conn_free(d->c); /* its channel belongs to the caller */
    d->c = NULL;
    d->ch = NULL;
    pthread_mutex_lock(&e->lock);
    e->rec.dst = d;
    e->rec.deadline = window_end(d);
    pthread_mutex_unlock(&e->lock);
    vmig_warn(e->ctx,
              "incoming: lost the source after READY; the loaded VM stays "
              "paused here for %u ms for it to come back (migration "
              "%016llx)",
              d->p.recover_timeout_ms, (unsigned long long)d->id);
    vmig__engine_set_status(e, VMIG_ENGINE_RECOVERING);
}

int
vmig__dst_answer(struct eng_dst *d, const struct vmig_mp_frame *f)
{
    struct vmig_engine *e = d->e;
    struct vmig_mp_msg m;
    unsigned int state = VMIG_MP_REC_UNKNOWN;
    char reason[VMIG_MP_REASON_MAX + 1] = "no such migration here";

    if (vmig_mp_frame_decode(f, &m) < 0) {
        return VMIG__DST_ANSWERED;
    }
    pthread_mutex_lock(&e->lock);
    if (e->rec.role == VMIG_ENGINE_ROLE_DEST && e->rec.id == m.recover.id) {
        state = e->rec.state;
        snprintf(reason, sizeof(reason), "%s", e->rec.reason);
    }
    pthread_mutex_unlock(&e->lock);
    vmig_info(e->ctx, "incoming: the source asks about migration %016llx: %s",
              (unsigned long long)m.recover.id,
              state == VMIG_MP_REC_RUNNING     ? "it runs here"
              : state == VMIG_MP_REC_DISCARDED ? "it was discarded"
                                               : "unknown");
    if (vmig__dst_reply(d, m.recover.id, state, reason) < 0) {
        return VMIG__DST_ANSWERED;
    }
    if (state == VMIG_MP_REC_RUNNING) {
        d->id = m.recover.id;
        wait_done(d);
    }
    return VMIG__DST_ANSWERED;
}

void
vmig__dst_busy(struct eng_dst *d, const char *reason)
{
    struct vmig_mp_msg m = {.type = VMIG_MP_ERROR,
                            .error = {.err = EBUSY, .dev = VMIG_MP_NO_DEVICE}};

    vmig_warn(d->e->ctx, "incoming: refused a migration: %s", reason);
    snprintf(m.error.reason, sizeof(m.error.reason), "%s", reason);
    if (vmig_mp_send_msg(d->c, &m) == 0) {
        /* as after any ERROR: let the source read it before we close */
        vmig__chan_shutdown_wr(d->ch);
        vmig__fd_drain(vmig_chan_fd(d->ch), 1000, d->e->buf,
                       VMIG_MP_PAYLOAD_MAX);
    }
}

int
vmig__dst_refuse_busy(struct eng_dst *d)
{
    char why[VMIG_MP_REASON_MAX + 1];

    snprintf(why, sizeof(why),
             "destination busy: the VM it received last runs here and that "
             "migration's source has not yet confirmed it knows; try again "
             "in %u ms",
             vmig_engine_recovery_ms(d->e));
    vmig__dst_busy(d, why);
    return VMIG__DST_ANSWERED;
}

unsigned int
vmig_engine_recovery_ms(struct vmig_engine *e)
{
    uint64_t now = vmig__mono_ns(), end;
    unsigned int ms = 0;

    pthread_mutex_lock(&e->lock);
    end = e->rec.role == VMIG_ENGINE_ROLE_DEST ? e->rec.deadline : 0;
    if (end != 0) {
        ms = end > now ? (unsigned int)((end - now) / 1000000ull) + 1 : 1;
    }
    pthread_mutex_unlock(&e->lock);
    return ms;
}
