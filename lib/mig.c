/* SPDX-License-Identifier: MIT */
/*
 * mig.c - the device-side migration driver loop.
 *
 * One loop walks every combination transition (vmig_mig_set_state), one
 * device callback per arc.  The invariants listed in <vmig/mig.h> are
 * checked after every change by mig_check_invariants() in debug builds.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/mig.h>
#include "internal.h"

struct vmig_mig {
    vmig_ctx_t *ctx;
    const struct vmig_mig_ops *ops;
    void *opaque;
    uint64_t flags;
    pthread_mutex_t lock;
    /* guarded by lock: */
    enum vmig_state state;
    struct vmig_session_info session;
};

static const char *const session_end_names[] = {
    [VMIG_SESSION_END_NONE] = "open",
    [VMIG_SESSION_END_NORMAL] = "normal",
    [VMIG_SESSION_END_RESET] = "reset",
    [VMIG_SESSION_END_ERROR] = "error",
};

const char *
vmig_session_end_name(enum vmig_session_end end)
{
    if ((unsigned int)end >= VMIG_ARRAY_SIZE(session_end_names)) {
        return "unknown";
    }
    return session_end_names[end];
}

static void
mig_check_invariants_locked(const struct vmig_mig *m)
{
#ifndef NDEBUG
    bool saving = m->state == VMIG_STATE_PRE_COPY ||
                  m->state == VMIG_STATE_PRE_COPY_P2P ||
                  m->state == VMIG_STATE_STOP_COPY;

    assert(m->state == VMIG_STATE_ERROR ||
           vmig_state_supported(m->flags, m->state));
    assert(saving == (m->session.kind == VMIG_SESSION_SAVE));
    assert((m->state == VMIG_STATE_RESUMING) ==
           (m->session.kind == VMIG_SESSION_RESUME));
#else
    (void)m;
#endif
}

int
vmig_mig_new(vmig_ctx_t *ctx, uint64_t flags, const struct vmig_mig_ops *ops,
             void *opaque, struct vmig_mig **out)
{
    struct vmig_mig *m;

    if (out == NULL || ops == NULL || ops->step == NULL ||
        vmig_flags_validate(flags) < 0) {
        return -EINVAL;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return -ENOMEM;
    }
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return -ENOMEM;
    }
    m->ctx = ctx;
    m->ops = ops;
    m->opaque = opaque;
    m->flags = flags;
    m->state = VMIG_STATE_RUNNING;
    *out = m;
    return 0;
}

void
vmig_mig_free(struct vmig_mig *m)
{
    if (m == NULL) {
        return;
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

uint64_t
vmig_mig_flags(const struct vmig_mig *m)
{
    return m->flags;
}

enum vmig_state
vmig_mig_state(struct vmig_mig *m)
{
    enum vmig_state s;

    pthread_mutex_lock(&m->lock);
    s = m->state;
    pthread_mutex_unlock(&m->lock);
    return s;
}

/* Record that the arc from -> to was taken; update the session. */
static void
mig_arc_done_locked(struct vmig_mig *m, enum vmig_state from,
                    enum vmig_state to)
{
    switch (vmig_arc_classify(from, to)) {
    case VMIG_ARC_OPEN_SAVE:
        m->session.kind = VMIG_SESSION_SAVE;
        m->session.generation++;
        m->session.end = VMIG_SESSION_END_NONE;
        break;
    case VMIG_ARC_OPEN_RESUME:
        m->session.kind = VMIG_SESSION_RESUME;
        m->session.generation++;
        m->session.end = VMIG_SESSION_END_NONE;
        break;
    case VMIG_ARC_END_SAVE:
    case VMIG_ARC_END_RESUME:
        m->session.kind = VMIG_SESSION_NONE;
        m->session.end = VMIG_SESSION_END_NORMAL;
        break;
    default:
        break;
    }
    m->state = to;
    mig_check_invariants_locked(m);
}

/* Cut the open session short (reset or ERROR). */
static void
mig_session_abort_locked(struct vmig_mig *m, enum vmig_session_end why)
{
    if (m->session.kind != VMIG_SESSION_NONE) {
        m->session.kind = VMIG_SESSION_NONE;
        m->session.end = why;
    }
}

int
vmig_mig_set_state(struct vmig_mig *m, unsigned int target)
{
    enum vmig_state next, orig;
    int ret = 0;

    /* ERROR and states the device lacks are never targets, not even when
     * the device is already there (the uAPI: ERROR cannot be set). */
    if (!vmig_state_supported(m->flags, target)) {
        vmig_dbg(m->ctx, "state %s (%u) is not a valid target for this device",
                 vmig_state_name(target), target);
        return -EINVAL;
    }
    pthread_mutex_lock(&m->lock);
    orig = m->state;
    while (m->state != (enum vmig_state)target) {
        enum vmig_state from = m->state;
        bool broken = false;

        ret = vmig_fsm_next(m->flags, from, target, &next);
        if (ret < 0) {
            vmig_dbg(m->ctx, "%s -> %s refused: no such transition for %s",
                     vmig_state_name(from), vmig_state_name(target),
                     from == VMIG_STATE_ERROR ? "a device in ERROR (reset it)"
                                              : "this device");
            break;
        }
        ret = m->ops->step(m->opaque, from, next, &broken);
        if (ret < 0 || broken) {
            if (ret >= 0) {
                ret = -EIO;
            }
            if (broken) {
                mig_session_abort_locked(m, VMIG_SESSION_END_ERROR);
                m->state = VMIG_STATE_ERROR;
            }
            vmig_err(m->ctx,
                     "%s -> %s failed on arc %s -> %s: %s; device is now in "
                     "%s%s",
                     vmig_state_name(orig), vmig_state_name(target),
                     vmig_state_name(from), vmig_state_name(next),
                     strerror(-ret), vmig_state_name(m->state),
                     broken ? " (only a device reset leaves it)" : "");
            break;
        }
        mig_arc_done_locked(m, from, next);
        vmig_dbg(m->ctx, "arc %s -> %s (%s)", vmig_state_name(from),
                 vmig_state_name(next),
                 vmig_arc_kind_name(vmig_arc_classify(from, next)));
    }
    pthread_mutex_unlock(&m->lock);
    return ret;
}

void
vmig_mig_reset(struct vmig_mig *m)
{
    enum vmig_state was;
    struct vmig_session_info s;

    pthread_mutex_lock(&m->lock);
    was = m->state;
    s = m->session;
    if (m->ops->reset != NULL) {
        m->ops->reset(m->opaque);
    }
    mig_session_abort_locked(m, VMIG_SESSION_END_RESET);
    m->state = VMIG_STATE_RUNNING;
    mig_check_invariants_locked(m);
    pthread_mutex_unlock(&m->lock);

    if (s.kind != VMIG_SESSION_NONE) {
        vmig_warn(m->ctx,
                  "device reset in %s: %s session %llu ended; its reader or "
                  "writer gets ENODEV and must restart the migration of this "
                  "device",
                  vmig_state_name(was),
                  s.kind == VMIG_SESSION_SAVE ? "saving" : "resuming",
                  (unsigned long long)s.generation);
    } else {
        vmig_info(m->ctx, "device reset in %s; now RUNNING",
                  vmig_state_name(was));
    }
}

void
vmig_mig_session(struct vmig_mig *m, struct vmig_session_info *out)
{
    pthread_mutex_lock(&m->lock);
    *out = m->session;
    pthread_mutex_unlock(&m->lock);
}

int
vmig_mig_session_check(struct vmig_mig *m, uint64_t generation,
                       enum vmig_session_kind kind)
{
    int ret;

    pthread_mutex_lock(&m->lock);
    ret = -EBADF; /* ended normally, replaced, or of another kind */
    if (m->session.generation == generation) {
        if (m->session.kind != VMIG_SESSION_NONE) {
            ret = m->session.kind == kind ? 0 : -EBADF;
        } else if (m->session.end == VMIG_SESSION_END_RESET ||
                   m->session.end == VMIG_SESSION_END_ERROR) {
            ret = -ENODEV;
        }
    }
    pthread_mutex_unlock(&m->lock);
    return ret;
}
