/* SPDX-License-Identifier: MIT */
/*
 * engine_src_rollback.c - the source's way back after a failure before the
 * commit (or a destination that said it discarded the VM after it): tell
 * the destination when it still listens (ABORT), end precopy, return
 * every device to RUNNING in two phases, resume the vCPUs, so the VM runs
 * here as before (docs/migration-protocol.md section 6).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <vmig/engine.h>
#include "chan_priv.h"
#include "engine_precopy.h"
#include "engine_priv.h"
#include "engine_send.h"
#include "internal.h"

/*
 * After the destination hung up (a send failed, or a channel saw it go)
 * or went silent: it may have said why before, in an ERROR still unread
 * on the main connection.  Its reason is the cause; what this side saw
 * (a reset, its own timeout as both gave up at once) only the symptom,
 * so the ERROR replaces the error recorded so far.  Return true when
 * there was one.
 */
static bool
src_fetch_reason(struct eng_src *s)
{
    struct vmig_engine *e = s->e;
    struct vmig_mp_frame f;

    vmig_mp_conn_set_cancel(s->c, NULL);
    vmig_mp_conn_set_timeout(s->c, 200);
    for (int i = 0; i < 64; i++) {
        if (vmig_mp_recv(s->c, &f) < 0) {
            return false;
        }
        if (f.hdr.type == VMIG_MP_ERROR) {
            pthread_mutex_lock(&e->lock);
            e->st.error[0] = '\0';
            pthread_mutex_unlock(&e->lock);
            (void)vmig__src_error_frame(s, &f);
            return true;
        }
    }
    return false;
}

static void
src_abort(struct eng_src *s, int why)
{
    struct vmig_mp_msg m = {.type = VMIG_MP_ABORT};
    int dev, err = vmig__engine_failure(s->e, &dev, m.abort.reason,
                                        sizeof(m.abort.reason));

    vmig_mp_conn_set_cancel(s->c, NULL);
    vmig_mp_conn_set_timeout(s->c, 1000);
    m.abort.err = (uint32_t)(err != 0 ? err : -why);
    if (err == 0) {
        snprintf(m.abort.reason, sizeof(m.abort.reason), "%s",
                 why == -ECANCELED ? "cancelled by the source"
                                   : strerror(-why));
    }
    if (vmig_mp_send_msg(s->c, &m) < 0) {
        vmig_dbg(s->e->ctx, "migration: could not tell the destination to "
                            "abort (it is gone)");
    }
}

/*
 * Bring every device back to RUNNING in two phases (all to RUNNING_P2P,
 * or STOP for devices without P2P, then all to RUNNING), resetting any
 * device whose transition fails.
 */
static void
src_devices_to_running(struct eng_src *s)
{
    struct vmig_engine *e = s->e;

    for (unsigned int i = 0; i < e->ndev; i++) {
        const struct eng_dev *d = &e->dev[i];
        enum vmig_state st;

        if (d->ops->get_state(d->opaque, &st) < 0) {
            st = VMIG_STATE_ERROR;
        }
        if (st == VMIG_STATE_RUNNING) {
            continue;
        }
        if (st == VMIG_STATE_PRE_COPY) {
            /* still running: PRE_COPY -> RUNNING only ends the session */
            (void)vmig__engine_dev_set(e, i, VMIG_STATE_RUNNING, true);
            continue;
        }
        if (st == VMIG_STATE_ERROR) {
            vmig_warn(e->ctx, "device %s: in ERROR; resetting it", d->name);
            (void)vmig__engine_dev_set(e, i, VMIG_STATE_RUNNING, true);
            continue;
        }
        (void)vmig__engine_dev_set(e, i,
                                   (s->dev[i].flags & VMIG_MIGRATION_P2P)
                                       ? VMIG_STATE_RUNNING_P2P
                                       : VMIG_STATE_STOP,
                                   true);
    }
    for (unsigned int i = 0; i < e->ndev; i++) {
        (void)vmig__engine_dev_set(e, i, VMIG_STATE_RUNNING, true);
    }
}

/*
 * Undo whatever the phases did, so the VM runs here as before: tell the
 * destination (unless the connection is gone, or it refused us), end
 * precopy, return the devices to RUNNING, resume the vCPUs.  Return the
 * migration's error: @ret, or the destination's when @ret was the hangup
 * or silence that followed its ERROR.
 */
int
vmig__src_rollback(struct eng_src *s, int ret)
{
    struct vmig_engine *e = s->e;
    bool conn_ok = s->c != NULL && !s->go_sent;

    if (!conn_ok) {
        /* after GO the destination said it discarded (or the operator
         * overrode): nothing more to tell it on this connection */
    } else if (ret == -EPIPE || ret == -ECONNRESET) {
        conn_ok = false;
        if (src_fetch_reason(s) && s->peer_err != 0) {
            ret = -s->peer_err; /* as if read between two frames */
        }
    } else if (ret == -ETIMEDOUT && s->ch != NULL &&
               vmig__chan_pending(s->ch) && src_fetch_reason(s)) {
        /* the destination gave up too, and said why */
        conn_ok = false;
        ret = s->peer_err != 0 ? -s->peer_err : ret;
    } else if (ret == -ETIMEDOUT) {
        /* with the commit protocol a destination that was only slow may
         * still reach READY: an ABORT behind the stream makes it discard
         * at once rather than at the end of its recovery window */
        conn_ok = (s->features & VMIG_MP_FEAT_COMMIT) != 0;
    }
    if (conn_ok && (ret != -EOPNOTSUPP || s->refused_here)) {
        src_abort(s, ret);
    }
    if (s->pc_on && !s->paused) {
        pthread_mutex_lock(&e->lock);
        e->st.precopy_bytes = vmig__wire_sent(s->c) - s->pc.sent0;
        pthread_mutex_unlock(&e->lock);
    }
    vmig__pc_end(s);
    if (s->committed && !s->go_sent) {
        vmig_warn(e->ctx,
                  "migration: failed after SWITCHOVER was sent (%s); "
                  "the destination did not confirm, so the VM resumes here",
                  strerror(-ret));
    } else if (s->go_sent) {
        vmig_warn(e->ctx,
                  "migration: the destination discarded the VM after GO "
                  "(%s): it never ran there, so it resumes here",
                  strerror(-ret));
    }
    vmig__src_resume_here(s);
    vmig_err(e->ctx, "migration: %s: %s; the VM keeps running here",
             ret == -ECANCELED ? "cancelled" : "failed", strerror(-ret));
    return ret;
}

void
vmig__src_resume_here(struct eng_src *s)
{
    struct vmig_engine *e = s->e;

    if (s->touched) {
        src_devices_to_running(s);
        s->touched = false;
    }
    if (s->paused) {
        int r2 = e->ops->vcpu_resume(e->opaque);

        if (r2 < 0) {
            vmig_err(e->ctx,
                     "migration: cannot resume the vCPUs after the "
                     "failure: %s",
                     strerror(-r2));
        }
        s->paused = false;
    }
}
