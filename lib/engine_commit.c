/* SPDX-License-Identifier: MIT */
/*
 * engine_commit.c - the source's side of the commit protocol
 * (VMIG_MP_FEAT_COMMIT; docs/migration-protocol.md section 6):
 *
 *   SWITCHOVER -> READY    the destination loaded everything, paused;
 *                          any failure up to here rolls back (the VM
 *                          resumes here, the destination discards)
 *   GO                     the commit point: from here the source never
 *                          resumes on its own
 *   CONFIRM -> DONE        the VM runs on the destination
 *
 * A source that sent GO and did not get CONFIRM (connection lost, bit
 * flip, silence) asks the destination again on a new connection
 * (RECOVER with the migration's id) until it learns the outcome or
 * recover_timeout_ms runs out; then the VM stays paused (status UNKNOWN)
 * until vmig_engine_recover() learns it or the operator overrides with
 * vmig_engine_resume_source().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vmig/engine.h>
#include "chan_priv.h"
#include "engine_precopy.h"
#include "engine_priv.h"
#include "engine_send.h"
#include "internal.h"

/* Pause between two recovery attempts: doubling from the first, capped. */
#define REC_BACKOFF_FIRST_MS 100u
#define REC_BACKOFF_MAX_MS 1000u

/* What one recovery attempt learnt. */
enum rec_result {
    REC_AGAIN = 1,    /* nothing: ask again later */
    REC_HOPELESS = 2, /* asking again cannot help (no hook, unknown id) */
};

static void
sleep_ms(unsigned int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000,
                          .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static int
send_id(struct vmig_mp_conn *c, unsigned int type, uint64_t id)
{
    struct vmig_mp_msg m = {.type = type};

    m.go.id = id; /* GO, DONE and RECOVER share the layout */
    return vmig_mp_send_msg(c, &m);
}

/* CONFIRM is in: tell the destination we know (best effort: it only
 * shortens the destination's recovery window). */
static void
src_done(struct eng_src *s)
{
    if (send_id(s->c, VMIG_MP_DONE, s->mig_id) < 0) {
        vmig_dbg(s->e->ctx, "migration: DONE not delivered; the destination "
                            "keeps answering for its recovery window");
    }
    pthread_mutex_lock(&s->e->lock);
    s->e->rec.state = VMIG_MP_REC_RUNNING;
    pthread_mutex_unlock(&s->e->lock);
}

/* GO on s->c, then CONFIRM into @f.  The destination's ERROR instead means
 * it discarded the VM without running it. */
static int
src_go(struct eng_src *s, struct vmig_mp_frame *f)
{
    int ret;

    s->go_sent = true; /* a send that fails may still have delivered it */
    ret = send_id(s->c, VMIG_MP_GO, s->mig_id);
    if (ret == 0) {
        ret = vmig__src_expect(s, VMIG_MP_CONFIRM, f);
    }
    if (ret == 0) {
        src_done(s);
        return 0;
    }
    if (s->peer_err != 0 && ret == -s->peer_err) {
        s->dst_discarded = true;
    }
    return ret;
}

/*
 * One recovery attempt on a new connection: RECOVER, then act on the
 * destination's RECOVER_REPLY.  Return 0 (the VM runs there), a negative
 * errno with s->dst_discarded (it discarded the VM: resume here), or an
 * enum rec_result with @why saying what stood in the way.
 */
static int
src_recover_once(struct eng_src *s, char *why, size_t len)
{
    struct vmig_engine *e = s->e;
    struct vmig_mp_conn *saved = s->c;
    struct vmig_mp_frame f;
    struct vmig_mp_msg m;
    struct vmig_chan *ch = NULL;
    int ret;

    if (e->ops->reconnect == NULL || e->ops->disconnect == NULL) {
        snprintf(why, len, "this VMM cannot open a recovery connection");
        return REC_HOPELESS;
    }
    ret = e->ops->reconnect(e->opaque, &ch, why, len);
    if (ret < 0) {
        return REC_AGAIN;
    }
    s->c = NULL;
    ret = vmig_mp_conn_new_chan(e->ctx, ch, &s->c);
    if (ret == 0) {
        vmig_mp_conn_set_timeout(s->c, s->p.timeout_ms);
        ret = vmig_mp_handshake(s->c);
    }
    if (ret == 0) {
        ret = send_id(s->c, VMIG_MP_RECOVER, s->mig_id);
    }
    if (ret == 0) {
        ret = vmig_mp_recv(s->c, &f);
    }
    if (ret < 0) {
        snprintf(why, len, "recovery connection: %s", strerror(-ret));
        ret = REC_AGAIN;
    } else if (f.hdr.type == VMIG_MP_ERROR &&
               vmig_mp_frame_decode(&f, &m) == 0) {
        /* e.g. busy: it still serves the first connection */
        snprintf(why, len, "destination: %.200s", m.error.reason);
        ret = REC_AGAIN;
    } else if (f.hdr.type != VMIG_MP_RECOVER_REPLY ||
               vmig_mp_frame_decode(&f, &m) < 0 ||
               m.recover_reply.id != s->mig_id) {
        snprintf(why, len, "destination sent %s instead of RECOVER_REPLY",
                 vmig_mp_type_name(f.hdr.type));
        ret = REC_AGAIN;
    } else if (m.recover_reply.state == VMIG_MP_REC_RUNNING) {
        vmig_info(e->ctx, "migration: recovered: the VM runs on the "
                          "destination");
        src_done(s);
        ret = 0;
    } else if (m.recover_reply.state == VMIG_MP_REC_DISCARDED) {
        vmig__engine_set_error(e,
                               "the destination discarded the VM without "
                               "running it (%s); it resumed here",
                               m.recover_reply.reason);
        s->dst_discarded = true;
        ret = -ECONNABORTED;
    } else if (m.recover_reply.state == VMIG_MP_REC_READY &&
               vmig__engine_cancelled(e)) {
        /* it never got GO and never will: cancel honoured */
        struct vmig_mp_msg ab = {.type = VMIG_MP_ABORT,
                                 .abort = {.err = ECANCELED}};

        snprintf(ab.abort.reason, sizeof(ab.abort.reason),
                 "cancelled by the source before GO reached the destination");
        if (vmig_mp_send_msg(s->c, &ab) < 0) {
            /* lost: it discards at the end of its window all the same */
        }
        vmig__engine_set_error(e, "cancelled: the destination had not got "
                                  "GO; it discards the VM, which resumed "
                                  "here");
        s->dst_discarded = true;
        ret = -ECANCELED;
    } else if (m.recover_reply.state == VMIG_MP_REC_READY) {
        vmig_info(e->ctx, "migration: the destination never got GO; "
                          "sending it again");
        ret = src_go(s, &f);
        if (ret < 0 && !s->dst_discarded) {
            snprintf(why, len, "GO again: %s", strerror(-ret));
            ret = REC_AGAIN;
        }
    } else {
        snprintf(why, len,
                 "the destination does not know migration %016llx (%.100s): "
                 "was it restarted?",
                 (unsigned long long)s->mig_id, m.recover_reply.reason);
        ret = REC_HOPELESS;
    }
    vmig_mp_conn_free(s->c);
    s->c = saved;
    e->ops->disconnect(e->opaque, ch);
    return ret;
}

/*
 * Ask until the outcome is known or recover_timeout_ms ran out.  Return
 * 0 (the VM runs on the destination), a negative errno with
 * s->dst_discarded (resume here), or -EINPROGRESS (unknown; the reason in
 * the stats' error).
 */
int
vmig__src_recover(struct eng_src *s)
{
    struct vmig_engine *e = s->e;
    unsigned int backoff = REC_BACKOFF_FIRST_MS, tries = 0;
    uint64_t deadline =
        vmig__mono_ns() + (uint64_t)s->p.recover_timeout_ms * 1000000ull;
    char why[VMIG_MP_REASON_MAX + 1] = "";
    int ret;

    vmig__engine_set_status(e, VMIG_ENGINE_RECOVERING);
    for (;;) {
        uint64_t now;

        tries++;
        ret = src_recover_once(s, why, sizeof(why));
        if (ret <= 0) {
            return ret;
        }
        vmig_warn(e->ctx, "migration: recovery attempt %u: %s", tries, why);
        now = vmig__mono_ns();
        if (ret == REC_HOPELESS || now >= deadline) {
            break;
        }
        if ((deadline - now) / 1000000ull < backoff) {
            backoff = (unsigned int)((deadline - now) / 1000000ull) + 1;
        }
        sleep_ms(backoff);
        backoff =
            backoff * 2 > REC_BACKOFF_MAX_MS ? REC_BACKOFF_MAX_MS : backoff * 2;
    }
    pthread_mutex_lock(&e->lock);
    snprintf(e->st.error, sizeof(e->st.error),
             "outcome unknown: GO was sent but the destination's answer was "
             "lost, and asking it again failed (%u tries in %u ms: %s); the "
             "VM stays paused here. Retry with 'vmig recover'; only if the "
             "destination is gone for good: 'vmig recover --destination-gone'",
             tries, s->p.recover_timeout_ms, why);
    pthread_mutex_unlock(&e->lock);
    return -EINPROGRESS;
}

int
vmig__src_commit(struct eng_src *s, struct vmig_mp_frame *f, bool *confirmed)
{
    struct vmig_engine *e = s->e;
    struct vmig_mp_msg m;
    int ret;

    *confirmed = false;
    ret = vmig__src_expect(s, VMIG_MP_READY, f);
    if (ret < 0) {
        return ret; /* before GO: roll back */
    }
    if (vmig_mp_frame_decode(f, &m) < 0) {
        vmig__engine_set_error(e, "destination sent a malformed READY");
        return -EPROTO;
    }
    s->mig_id = m.ready.id;
    /* the commit point: a cancel before it wins, none after it does */
    pthread_mutex_lock(&e->lock);
    if (!vmig__engine_cancelled(e)) {
        e->committed = true;
        s->committed = true;
        e->rec = (struct eng_rec){.id = s->mig_id,
                                  .role = VMIG_ENGINE_ROLE_SOURCE,
                                  .state = VMIG_MP_REC_READY};
    }
    pthread_mutex_unlock(&e->lock);
    if (!s->committed) {
        return -ECANCELED;
    }
    vmig_mp_conn_set_cancel(s->c, NULL);
    ret = src_go(s, f);
    if (ret == 0) {
        *confirmed = true;
        return 0;
    }
    if (s->dst_discarded) {
        return ret;
    }
    vmig_warn(e->ctx,
              "migration: no answer to GO (%s); the VM stays paused here "
              "until the destination says whether it runs it",
              strerror(-ret));
    /* the destination, waiting on this connection, sees it end at once */
    vmig__chan_shutdown_wr(s->ch);
    return vmig__src_recover(s);
}

void
vmig__src_park(struct eng_src *s)
{
    struct vmig_engine *e = s->e;

    vmig__pc_end(s);
    vmig_mp_conn_free(s->c); /* its channel belongs to the caller */
    s->c = NULL;
    s->ch = NULL;
    pthread_mutex_lock(&e->lock);
    e->rec.src = s;
    e->st.total_time_ms = (vmig__mono_ns() - e->t_start) / 1000000;
    pthread_mutex_unlock(&e->lock);
    vmig_err(e->ctx, "migration: %s", e->st.error);
    vmig__engine_set_status(e, VMIG_ENGINE_UNKNOWN);
}
