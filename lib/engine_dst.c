/* SPDX-License-Identifier: MIT */
/*
 * engine_dst.c - the destination side of a migration, as phases over the
 * migration's struct eng_dst (engine_dst_state.h):
 *
 *   hello    preamble, HELLO judged per device (engine_dst_hello.c),
 *            HELLO_REPLY; a compatibility check ends here
 *   setup    SETUP: every device to RESUMING; SETUP_ACK
 *   stream   frames until SWITCHOVER, each checked before it touches RAM
 *            or a device (engine_dst_frames.c: a handler per frame type)
 *   complete re-establish each device's VMM-owned config, validate
 *            (RESUMING -> STOP), start the devices in two phases, load
 *            and resume the vCPUs, CONFIRM
 *
 * Any failure sends ERROR, resets the devices and leaves the vCPUs paused:
 * the source resumes the VM (docs/migration-protocol.md section 6).
 */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/engine.h>
#include "chan_priv.h"
#include "engine_chan.h"
#include "engine_dst_state.h"
#include "engine_priv.h"
#include "internal.h"

/* ------------------------------------------------------------ state */

void
vmig__dst_free(struct eng_dst *d)
{
    if (d == NULL) {
        return;
    }
    vmig__mc_dst_free(d);
    for (unsigned int j = 0; j < VMIG_ENGINE_MAX_DEVICES; j++) {
        free(d->dev[j].config);
        XXH3_freeState(d->dev[j].hash);
    }
    free(d->vcpu);
    vmig_mp_hello_free(d->h);
    free(d->rp);
    vmig_mp_conn_free(d->c);
    free(d);
}

static int
dst_new(struct vmig_engine *e, struct vmig_chan *ch, struct eng_dst **out)
{
    struct eng_dst *d = calloc(1, sizeof(*d));
    int ret;

    if (d == NULL) {
        return -ENOMEM;
    }
    d->e = e;
    d->ch = ch;
    d->fail_dev = -1;
    d->send_err = true;
    for (unsigned int j = 0; j < VMIG_ENGINE_MAX_DEVICES; j++) {
        d->map[j] = -1;
        d->dev[j].src_index = -1;
    }
    d->rp = calloc(1, sizeof(*d->rp));
    if (d->rp == NULL) {
        vmig__dst_free(d);
        return -ENOMEM;
    }
    ret = vmig_mp_conn_new_chan(e->ctx, ch, &d->c);
    if (ret < 0) {
        vmig__dst_free(d);
        return ret;
    }
    vmig_engine_get_params(e, &d->p);
    vmig_mp_conn_set_timeout(d->c, d->p.timeout_ms);
    vmig_mp_conn_set_cancel(d->c, &e->cancel);
    *out = d;
    return 0;
}

/* ------------------------------------------------------------ hello */

/* Phase: HELLO judged and answered.  1: it was only a check. */
static int
dst_hello(struct eng_dst *d)
{
    struct vmig_engine *e = d->e;
    struct vmig_mp_frame f;
    bool ok;
    ssize_t n;
    int ret;

    ret = vmig__engine_handshake(e, d->c, false);
    if (ret < 0) {
        d->send_err = false;
        return ret;
    }
    ret = vmig_mp_recv(d->c, &f);
    if (ret == 0 && f.hdr.type == VMIG_MP_RECOVER) {
        /* a source asking about a past migration: not a migration */
        d->send_err = false;
        return vmig__dst_answer(d, &f);
    }
    if (ret == 0 && f.hdr.type == VMIG_MP_HELLO &&
        vmig_engine_recovery_ms(e) > 0) {
        d->send_err = false;
        return vmig__dst_refuse_busy(d);
    }
    if (ret == 0) {
        vmig__engine_set_status(e, VMIG_ENGINE_SETUP);
    }
    if (ret == 0 && f.hdr.type != VMIG_MP_HELLO) {
        vmig__dst_fail(d, -1, "expected HELLO, got %s",
                       vmig_mp_type_name(f.hdr.type));
        ret = -EPROTO;
    }
    if (ret == 0) {
        ret = vmig_mp_hello_decode(f.payload, f.hdr.len, &d->h);
        if (ret < 0) {
            vmig__dst_fail(d, -1, "malformed HELLO: %s", strerror(-ret));
        }
    }
    if (ret < 0) {
        return ret;
    }
    ok = vmig__dst_evaluate(d);
    d->features = d->rp->features;
    ret = vmig__engine_compress(e, d->c, d->features, d->p.zstd_level);
    if (ret < 0) {
        vmig__dst_fail(d, -1, "cannot set up zstd compression: %s",
                       strerror(-ret));
        return ret;
    }
    n = vmig_mp_reply_encode(d->rp, e->buf, VMIG_MP_PAYLOAD_MAX);
    ret = n < 0
              ? (int)n
              : vmig_mp_send1(d->c, VMIG_MP_HELLO_REPLY, 0, e->buf, (size_t)n);
    if (ret < 0) {
        d->send_err = false;
        return ret;
    }
    if (d->h->flags & VMIG_MP_HELLO_CHECK_ONLY) {
        vmig_info(e->ctx, "incoming: answered a compatibility check (%s)",
                  ok ? "compatible" : d->rp->reason);
        return 1;
    }
    if (!ok) {
        vmig__engine_set_error(e, "refused: %s", d->rp->reason);
        d->send_err = false;
        return -EOPNOTSUPP;
    }
    return 0;
}

/* ------------------------------------------------------------ setup */

/* Every device to RESUMING, with fresh receive trackers. */
static int
dst_resuming(struct eng_dst *d)
{
    struct vmig_engine *e = d->e;

    d->touched = true;
    for (unsigned int j = 0; j < e->ndev; j++) {
        const struct eng_dev *ed = &e->dev[j];
        struct eng_dst_dev *dd = &d->dev[j];
        enum vmig_state s;
        int ret;

        dd->hash = XXH3_createState();
        if (dd->hash == NULL) {
            return -ENOMEM;
        }
        XXH3_64bits_reset(dd->hash);
        if (ed->ops->get_state(ed->opaque, &s) == 0 && s == VMIG_STATE_ERROR) {
            (void)ed->ops->reset(ed->opaque);
        }
        ret = vmig__engine_dev_set(e, j, VMIG_STATE_RESUMING, false);
        if (ret < 0) {
            vmig__dst_fail(d, dd->src_index, "cannot enter RESUMING: %s",
                           strerror(-ret));
            return ret;
        }
    }
    return 0;
}

/* Phase: SETUP, devices to RESUMING, SETUP_ACK (with the error if any). */
static int
dst_setup(struct eng_dst *d)
{
    struct vmig_engine *e = d->e;
    struct vmig_mp_frame f;
    struct vmig_mp_msg m;
    int ret, sent;

    ret = vmig_mp_recv(d->c, &f);
    if (ret == 0 && f.hdr.type == VMIG_MP_ABORT) {
        d->send_err = false;
        return -ECANCELED;
    }
    if (ret == 0 && f.hdr.type != VMIG_MP_SETUP) {
        vmig__dst_fail(d, -1, "expected SETUP, got %s",
                       vmig_mp_type_name(f.hdr.type));
        ret = -EPROTO;
    } else if (ret == 0 && vmig_mp_frame_decode(&f, &m) < 0) {
        vmig__dst_fail(d, -1, "malformed SETUP (%u bytes)", f.hdr.len);
        ret = -EBADMSG;
    }
    if (ret < 0) {
        return ret;
    }
    ret = dst_resuming(d);
    m = (struct vmig_mp_msg){.type = VMIG_MP_SETUP_ACK};
    m.setup_ack.err = ret < 0 ? (uint32_t)-ret : 0;
    snprintf(m.setup_ack.reason, sizeof(m.setup_ack.reason), "%s", d->reason);
    sent = vmig_mp_send_msg(d->c, &m);
    if (ret < 0 && sent < 0) {
        vmig_dbg(e->ctx, "incoming: the source is gone");
    }
    if (ret < 0 || sent < 0) {
        /* the SETUP_ACK carried the error, or the source is gone */
        d->send_err = false;
        return ret < 0 ? ret : sent;
    }
    pthread_mutex_lock(&e->lock);
    e->t_xfer = vmig__mono_ns();
    e->st.setup_time_ms = (e->t_xfer - e->t_start) / 1000000;
    pthread_mutex_unlock(&e->lock);
    vmig__engine_set_status(e, VMIG_ENGINE_ACTIVE);
    return 0;
}

/* Phase: frames until SWITCHOVER. */
static int
dst_stream(struct eng_dst *d)
{
    char freason[VMIG_MP_REASON_MAX + 1];
    struct vmig_mp_frame f;
    int ret, fdev;

    do {
        ret = vmig_mp_recv_placed(d->c, VMIG_MP_RAM_HDR_LEN, vmig__dst_place, d,
                                  &f);
        if (ret == -EBADMSG || ret == -E2BIG) {
            vmig__dst_fail(d, -1, "corrupt or oversized frame (%s)",
                           strerror(-ret));
        }
        if (ret == 0) {
            ret = vmig__dst_frame(d, &f);
        }
    } while (ret == 0);
    if (ret == -ECANCELED && !d->peer_aborted &&
        vmig__engine_failure(d->e, &fdev, freason, sizeof(freason)) == 0) {
        /* (a vmig_engine_fail() gives its own reason in dst_fail()) */
        vmig__dst_fail(d, -1, "cancelled on the destination");
    }
    return ret < 0 ? ret : 0;
}

/* ------------------------------------------------------------ complete */

/* Phase: load everything (engine_dst_finish.c); then with the commit
 * protocol READY and wait for GO, without it run at once. */
static int
dst_complete(struct eng_dst *d)
{
    int ret = vmig__dst_load(d);

    if (ret < 0) {
        return ret;
    }
    if (d->features & VMIG_MP_FEAT_COMMIT) {
        return vmig__dst_commit(d);
    }
    return vmig__dst_run(d);
}

/* ------------------------------------------------------------ failure */

static void
dst_send_error(struct eng_dst *d, int err)
{
    struct vmig_mp_msg m = {.type = VMIG_MP_ERROR};

    vmig_mp_conn_set_cancel(d->c, NULL);
    vmig_mp_conn_set_timeout(d->c, 1000);
    m.error.err = (uint32_t)-err;
    m.error.dev = d->fail_dev >= 0 ? (uint32_t)d->fail_dev : VMIG_MP_NO_DEVICE;
    if (d->reason[0] == '\0' && err == -ETIMEDOUT) {
        snprintf(m.error.reason, sizeof(m.error.reason), VMIG__PEER_SILENT_FMT,
                 "source", d->p.timeout_ms);
    } else {
        snprintf(m.error.reason, sizeof(m.error.reason), "%s",
                 d->reason[0] != '\0' ? d->reason : strerror(-err));
    }
    if (vmig_mp_send_msg(d->c, &m) < 0) {
        vmig_dbg(d->e->ctx, "incoming: the source is gone; no ERROR sent");
    }
}

/*
 * After an ERROR: closing a socket with unread data makes TCP send a
 * reset, which can destroy the ERROR before the source reads it.  So stop
 * writing and drain what the source still sends until it hangs up (it
 * does once it reads the ERROR between two frames, or, blocked in a
 * write, once it sees this side shut), for at most 2 s.
 */
static void
dst_linger(struct eng_dst *d)
{
    /* raw reads: what is drained is discarded, TLS or not */
    vmig__chan_shutdown_wr(d->ch);
    vmig__fd_drain(vmig_chan_fd(d->ch), 2000, d->e->buf, VMIG_MP_PAYLOAD_MAX);
}

/*
 * Discard everything: tell the source why (when it still listens), keep
 * the vCPUs paused, reset every device (dropping the partial state).
 * Return the migration's error: @ret, or the one vmig_engine_fail() gave.
 */
int
vmig__dst_discard(struct eng_dst *d, int ret)
{
    struct vmig_engine *e = d->e;
    char freason[VMIG_MP_REASON_MAX + 1];
    int fdev, fail_err;

    if (ret == -ECONNRESET || ret == -EPIPE || d->c == NULL) {
        /* (a source silent for the peer timeout is told why: when both
         * sides give up at once, it must not see only a hangup) */
        d->send_err = false;
    }
    fail_err = vmig__engine_failure(e, &fdev, freason, sizeof(freason));
    if (fail_err != 0) {
        /* the VMM's reason (a device's server died) is the cause, whatever
         * the stream met first; the source learns it in ERROR */
        ret = -fail_err;
        d->fail_dev = fdev >= 0 ? d->dev[fdev].src_index : -1;
        snprintf(d->reason, sizeof(d->reason), "%s", freason);
    }
    if (d->reason[0] != '\0') {
        vmig__engine_set_error(e, "%s", d->reason);
    }
    vmig_err(e->ctx, "incoming: failed: %s%s%s; discarding everything",
             strerror(-ret), d->reason[0] != '\0' ? ": " : "", d->reason);
    /* the ERROR leaves before the extra channels close (with data unread:
     * a reset), so the source has the reason when it sees them go */
    if (d->send_err) {
        dst_send_error(d, ret);
    }
    vmig__mc_dst_stop(d); /* no channel writes into a device being reset */
    if (d->send_err) {
        dst_linger(d);
    }
    if (d->resumed && e->ops->vcpu_pause != NULL) {
        /* without the commit protocol: the CONFIRM did not leave, the
         * source resumes, so we must not (with it, a VM that resumed
         * never comes here) */
        (void)e->ops->vcpu_pause(e->opaque);
    }
    if (d->ready) {
        /* it never got GO: a source asking later learns "discarded" */
        pthread_mutex_lock(&e->lock);
        e->rec.state = VMIG_MP_REC_DISCARDED;
        e->rec.deadline = 0;
        snprintf(e->rec.reason, sizeof(e->rec.reason), "%s",
                 d->reason[0] != '\0' ? d->reason : strerror(-ret));
        pthread_mutex_unlock(&e->lock);
    }
    if (d->touched) {
        for (unsigned int j = 0; j < e->ndev; j++) {
            const struct eng_dev *ed = &e->dev[j];
            enum vmig_state s = VMIG_STATE_ERROR;

            (void)ed->ops->reset(ed->opaque);
            (void)ed->ops->get_state(ed->opaque, &s);
            vmig__engine_dev_state(e, j, s);
        }
    }
    return ret;
}

/* ------------------------------------------------------------ entry points */

/* Engine teardown with a loaded VM still waiting for GO: discard it. */
static void
dst_release(struct vmig_engine *e)
{
    struct eng_dst *d = e->rec.dst;

    e->rec.dst = NULL;
    if (d != NULL) {
        d->send_err = false;
        (void)vmig__dst_discard(d, -ECANCELED);
        vmig__dst_free(d);
    }
}

/* The destination's phases, in order; a failing one ends the list. */
static int (*const dst_phases[])(struct eng_dst *d) = {
    dst_hello,  vmig__mc_dst_grant,  dst_setup,
    dst_stream, vmig__mc_dst_finish, dst_complete,
};

int
vmig__dst_incoming(struct vmig_engine *e, struct vmig_chan *ch)
{
    struct eng_dst *d = NULL;
    struct vmig_engine_stats *before;
    int ret;

    /* a source that only asks about the last migration must not wipe
     * its stats: kept aside until the first frame says what this is */
    before = malloc(sizeof(*before));
    if (before == NULL) {
        return -ENOMEM;
    }
    vmig_engine_stats(e, before);
    ret = vmig__engine_begin(e, VMIG_ENGINE_ROLE_DEST);
    if (ret < 0) {
        free(before);
        return ret;
    }
    ret = dst_new(e, ch, &d);
    if (ret < 0) {
        free(before);
        vmig__engine_end(e, ret);
        return ret;
    }
    for (size_t i = 0; ret == 0 && i < VMIG_ARRAY_SIZE(dst_phases); i++) {
        ret = dst_phases[i](d);
    }
    if (ret == VMIG__DST_PENDING) {
        free(before);
        vmig__dst_park(d);
        vmig__engine_on_release(e, dst_release);
        return -EINPROGRESS;
    }
    if (ret < 0) {
        ret = vmig__dst_discard(d, ret);
    }
    vmig__dst_free(d);
    if (ret == VMIG__DST_ANSWERED) {
        pthread_mutex_lock(&e->lock);
        e->st = *before;
        e->running = false;
        pthread_mutex_unlock(&e->lock);
        free(before);
        return 1;
    }
    free(before);
    if (ret == 1) {
        /* a compatibility check: no migration happened */
        pthread_mutex_lock(&e->lock);
        e->st.status = VMIG_ENGINE_NONE;
        e->running = false;
        pthread_mutex_unlock(&e->lock);
        return 1;
    }
    vmig__engine_end(e, ret);
    return ret;
}
