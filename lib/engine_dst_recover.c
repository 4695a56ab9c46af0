/* SPDX-License-Identifier: MIT */
/*
 * engine_dst_recover.c - the destination's entry points: a connection is
 * either a migration (engine_dst.c), or, while a loaded VM waits for its
 * source's GO (the connection it came on was lost after READY), that
 * source coming back: RECOVER, READY again, GO; a HELLO meanwhile is
 * refused as busy.  When the recovery window ends without GO the VM is
 * discarded (docs/migration-protocol.md section 6).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vmig/engine.h>
#include "engine_dst_state.h"
#include "engine_priv.h"
#include "internal.h"

/* A HELLO while the loaded VM waits for its own source. */
static void
refuse_holding(struct eng_dst *d)
{
    char why[VMIG_MP_REASON_MAX + 1];

    snprintf(why, sizeof(why),
             "destination busy: it holds a received VM waiting for its "
             "source to commit (migration %016llx, %u ms more)",
             (unsigned long long)d->id, vmig_engine_recovery_ms(d->e));
    vmig__dst_busy(d, why);
}

/* The pending VM is settled: forget it, end the migration. */
static int
settle(struct eng_dst *d, int ret)
{
    struct vmig_engine *e = d->e;

    pthread_mutex_lock(&e->lock);
    e->rec.dst = NULL;
    pthread_mutex_unlock(&e->lock);
    if (ret < 0) {
        ret = vmig__dst_discard(d, ret);
    }
    vmig__dst_free(d);
    vmig__engine_end(e, ret);
    return ret;
}

int
vmig__dst_recover_chan(struct vmig_engine *e, struct vmig_chan *ch)
{
    struct eng_dst *d;
    struct vmig_mp_frame f;
    struct vmig_mp_msg m;
    int ret;

    pthread_mutex_lock(&e->lock);
    d = e->rec.dst;
    pthread_mutex_unlock(&e->lock);
    d->ch = ch;
    ret = vmig_mp_conn_new_chan(e->ctx, ch, &d->c);
    if (ret < 0) {
        d->ch = NULL;
        return -EINPROGRESS;
    }
    vmig_mp_conn_set_timeout(d->c, d->p.timeout_ms);
    vmig_mp_conn_set_cancel(d->c, &e->cancel);
    ret = vmig_mp_handshake(d->c);
    if (ret == 0) {
        ret = vmig_mp_recv(d->c, &f);
    }
    if (ret == 0 && f.hdr.type == VMIG_MP_HELLO) {
        refuse_holding(d);
        ret = -EBUSY;
    } else if (ret == 0 && (f.hdr.type != VMIG_MP_RECOVER ||
                            vmig_mp_frame_decode(&f, &m) < 0)) {
        ret = -EPROTO;
    } else if (ret == 0 && m.recover.id != d->id) {
        if (vmig__dst_reply(d, m.recover.id, VMIG_MP_REC_UNKNOWN,
                            "not the migration held here") < 0) {
            /* it asks again */
        }
        ret = -ENOENT;
    } else if (ret == 0) {
        vmig_info(e->ctx,
                  "incoming: the source came back for migration "
                  "%016llx; waiting for GO",
                  (unsigned long long)d->id);
        ret = vmig__dst_reply(d, d->id, VMIG_MP_REC_READY, "waiting for GO");
        if (ret == 0) {
            ret = vmig__dst_await_go(d);
            if (ret != VMIG__DST_PENDING) {
                return settle(d, ret);
            }
        }
    }
    vmig_dbg(e->ctx,
             "incoming: recovery connection ended: %s; still "
             "holding the VM",
             ret < 0 ? strerror(-ret) : "no GO");
    vmig_mp_conn_free(d->c);
    d->c = NULL;
    d->ch = NULL;
    return -EINPROGRESS;
}

int
vmig_engine_recovery_expire(struct vmig_engine *e)
{
    struct eng_dst *d;

    pthread_mutex_lock(&e->lock);
    d = e->rec.dst;
    if (e->rec.role == VMIG_ENGINE_ROLE_DEST) {
        e->rec.deadline = 0;
    }
    pthread_mutex_unlock(&e->lock);
    if (d == NULL) {
        return 0;
    }
    vmig__dst_fail(d, -1,
                   "source gone: it did not come back within %u ms after "
                   "READY to commit, so the VM was discarded here without "
                   "ever running",
                   d->p.recover_timeout_ms);
    vmig__engine_set_error(e, "%s", d->reason);
    (void)settle(d, -ETIMEDOUT);
    return 1;
}

int
vmig_engine_incoming(struct vmig_engine *e, int fd)
{
    struct vmig_chan *ch;
    int ret = vmig_chan_plain(e->ctx, fd, &ch);

    if (ret == 0) {
        ret = vmig_engine_incoming_chan(e, ch);
        vmig_chan_free(ch);
    }
    return ret;
}

int
vmig_engine_incoming_chan(struct vmig_engine *e, struct vmig_chan *ch)
{
    bool pending;

    pthread_mutex_lock(&e->lock);
    pending = e->rec.dst != NULL;
    pthread_mutex_unlock(&e->lock);
    if (pending) {
        /* a loaded VM waits for its source: only it may come in */
        return vmig__dst_recover_chan(e, ch);
    }
    return vmig__dst_incoming(e, ch);
}
