/* SPDX-License-Identifier: MIT */
/*
 * device.c - the device-side migration framework (<vmig/device.h>).
 *
 * States and invariants (checked after every change by
 * check_invariants_locked() in debug builds):
 *   - state is a state the device has reached and its flags support, or
 *     ERROR;
 *   - session.kind is SAVE exactly while state is PRE_COPY, PRE_COPY_P2P
 *     or STOP_COPY, and RESUME exactly while state is RESUMING;
 *   - eof is set only in STOP_COPY, and only for the open saving
 *     session (the device said "end of data"; later reads return 0
 *     without asking it again);
 *   - ERROR is left only by a reset, which returns to RUNNING and ends
 *     any session with end reason RESET.
 *
 * One mutex (lock) guards state, session and eof and is held across every
 * callback.  The thread-local cb_dev names the device whose callback this
 * thread is running, so a callback that calls back into its own device
 * gets -EDEADLK instead of a self-deadlock, and may read the state
 * without taking the lock it already holds.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/device.h>
#include "internal.h"

struct vmig_dev {
    vmig_ctx_t *ctx;
    const struct vmig_dev_ops *ops;
    void *opaque;
    uint64_t flags;
    uint32_t caps;
    pthread_mutex_t lock;
    /* guarded by lock: */
    enum vmig_state state;
    struct vmig_session_info session;
    bool eof;
};

/* The device whose callback runs on this thread (its lock is held). */
static __thread const struct vmig_dev *cb_dev;

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

static bool
precopy_state(enum vmig_state s)
{
    return s == VMIG_STATE_PRE_COPY || s == VMIG_STATE_PRE_COPY_P2P;
}

static void
check_invariants_locked(const struct vmig_dev *d)
{
#ifndef NDEBUG
    bool saving = precopy_state(d->state) || d->state == VMIG_STATE_STOP_COPY;

    assert(d->state == VMIG_STATE_ERROR ||
           vmig_state_supported(d->flags, d->state));
    assert(saving == (d->session.kind == VMIG_SESSION_SAVE));
    assert((d->state == VMIG_STATE_RESUMING) ==
           (d->session.kind == VMIG_SESSION_RESUME));
    assert(!d->eof || d->state == VMIG_STATE_STOP_COPY);
#else
    (void)d;
#endif
}

/*
 * Take the lock for a call that acts on the device.  -EDEADLK from inside
 * one of its own callbacks (the lock is held by this very thread).
 */
static int
enter(struct vmig_dev *d, const char *what)
{
    if (cb_dev == d) {
        vmig_err(d->ctx,
                 "%s called from inside one of this device's own callbacks; "
                 "refused (it would deadlock): call it from the device's "
                 "own thread instead",
                 what);
        return -EDEADLK;
    }
    pthread_mutex_lock(&d->lock);
    return 0;
}

static void
leave(struct vmig_dev *d)
{
    pthread_mutex_unlock(&d->lock);
}

/* For reads of the state: no lock needed when this thread holds it. */
static bool
lock_for_read(struct vmig_dev *d)
{
    if (cb_dev == d) {
        return false;
    }
    pthread_mutex_lock(&d->lock);
    return true;
}

/* Callbacks run between cb_begin() and cb_end() (the lock is held). */
static const struct vmig_dev *
cb_begin(const struct vmig_dev *d)
{
    const struct vmig_dev *prev = cb_dev;

    cb_dev = d;
    return prev;
}

static void
cb_end(const struct vmig_dev *prev)
{
    cb_dev = prev;
}

int
vmig_dev_new(vmig_ctx_t *ctx, uint64_t flags, const struct vmig_dev_ops *ops,
             void *opaque, struct vmig_dev **out)
{
    struct vmig_dev *d;
    bool log_any, log_all;

    if (out == NULL || ops == NULL || ops->step == NULL || ops->save == NULL ||
        ops->load == NULL || vmig_flags_validate(flags) < 0) {
        return -EINVAL;
    }
    log_any = ops->log_start != NULL || ops->log_stop != NULL ||
              ops->log_report != NULL;
    log_all = ops->log_start != NULL && ops->log_stop != NULL &&
              ops->log_report != NULL;
    if (log_any && !log_all) {
        return -EINVAL;
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return -ENOMEM;
    }
    if (pthread_mutex_init(&d->lock, NULL) != 0) {
        free(d);
        return -ENOMEM;
    }
    d->ctx = ctx;
    d->ops = ops;
    d->opaque = opaque;
    d->flags = flags;
    d->caps = (ops->precopy_info != NULL ? VMIG_DEV_CAP_PRECOPY_INFO : 0) |
              (ops->data_size != NULL ? VMIG_DEV_CAP_DATA_SIZE : 0) |
              (log_all ? VMIG_DEV_CAP_DMA_LOG : 0);
    d->state = VMIG_STATE_RUNNING;
    *out = d;
    return 0;
}

void
vmig_dev_free(struct vmig_dev *d)
{
    if (d == NULL) {
        return;
    }
    pthread_mutex_destroy(&d->lock);
    free(d);
}

uint64_t
vmig_dev_flags(const struct vmig_dev *d)
{
    return d->flags;
}

uint32_t
vmig_dev_caps(const struct vmig_dev *d)
{
    return d->caps;
}

enum vmig_state
vmig_dev_state(struct vmig_dev *d)
{
    bool locked = lock_for_read(d);
    enum vmig_state s = d->state;

    if (locked) {
        pthread_mutex_unlock(&d->lock);
    }
    return s;
}

/* ------------------------------------------------------------ arcs */

/* Record that the arc from -> to was taken; update the session. */
static void
arc_done_locked(struct vmig_dev *d, enum vmig_state from, enum vmig_state to)
{
    switch (vmig_arc_classify(from, to)) {
    case VMIG_ARC_OPEN_SAVE:
    case VMIG_ARC_OPEN_RESUME:
        d->session.kind =
            to == VMIG_STATE_RESUMING ? VMIG_SESSION_RESUME : VMIG_SESSION_SAVE;
        d->session.generation++;
        d->session.end = VMIG_SESSION_END_NONE;
        d->eof = false;
        break;
    case VMIG_ARC_END_SAVE:
    case VMIG_ARC_END_RESUME:
        d->session.kind = VMIG_SESSION_NONE;
        d->session.end = VMIG_SESSION_END_NORMAL;
        d->eof = false;
        break;
    default:
        break;
    }
    d->state = to;
    check_invariants_locked(d);
}

/* Cut the open session short (reset or ERROR). */
static void
session_abort_locked(struct vmig_dev *d, enum vmig_session_end why)
{
    if (d->session.kind != VMIG_SESSION_NONE) {
        d->session.kind = VMIG_SESSION_NONE;
        d->session.end = why;
    }
    d->eof = false;
}

/* One arc; 0, or the step's errno (the device may now be in ERROR). */
static int
step_locked(struct vmig_dev *d, enum vmig_state orig, unsigned int target,
            enum vmig_state next)
{
    const struct vmig_dev *prev;
    enum vmig_state from = d->state;
    bool broken = false;
    int ret;

    prev = cb_begin(d);
    ret = d->ops->step(d->opaque, from, next, &broken);
    cb_end(prev);
    if (ret >= 0 && !broken) {
        arc_done_locked(d, from, next);
        vmig_dbg(d->ctx, "arc %s -> %s (%s)", vmig_state_name(from),
                 vmig_state_name(next),
                 vmig_arc_kind_name(vmig_arc_classify(from, next)));
        return 0;
    }
    if (ret >= 0) {
        ret = -EIO;
    }
    if (broken) {
        session_abort_locked(d, VMIG_SESSION_END_ERROR);
        d->state = VMIG_STATE_ERROR;
        check_invariants_locked(d);
    }
    vmig_err(
        d->ctx, "%s -> %s failed on arc %s -> %s: %s; device is now in %s%s",
        vmig_state_name(orig), vmig_state_name(target), vmig_state_name(from),
        vmig_state_name(next), strerror(-ret), vmig_state_name(d->state),
        broken ? " (only a device reset leaves it)" : "");
    return ret;
}

int
vmig_dev_set_state(struct vmig_dev *d, unsigned int target)
{
    enum vmig_state next, orig;
    int ret;

    /* ERROR and states the device lacks are never targets, not even when
     * the device is already there (the uAPI: ERROR cannot be set). */
    if (!vmig_state_supported(d->flags, target)) {
        vmig_dbg(d->ctx, "state %s (%u) is not a valid target for this device",
                 vmig_state_name(target), target);
        return -EINVAL;
    }
    ret = enter(d, "vmig_dev_set_state()");
    if (ret < 0) {
        return ret;
    }
    orig = d->state;
    while (ret == 0 && d->state != (enum vmig_state)target) {
        ret = vmig_fsm_next(d->flags, d->state, target, &next);
        if (ret < 0) {
            vmig_dbg(d->ctx, "%s -> %s refused: no such transition for %s",
                     vmig_state_name(d->state), vmig_state_name(target),
                     d->state == VMIG_STATE_ERROR
                         ? "a device in ERROR (reset it)"
                         : "this device");
            break;
        }
        ret = step_locked(d, orig, target, next);
    }
    leave(d);
    return ret;
}

void
vmig_dev_reset(struct vmig_dev *d, enum vmig_reset_cause cause)
{
    const struct vmig_dev *prev;
    const char *who = cause == VMIG_RESET_GUEST ? "guest-initiated " : "";
    struct vmig_session_info s;
    enum vmig_state was;

    if (enter(d, "vmig_dev_reset()") < 0) {
        return;
    }
    was = d->state;
    s = d->session;
    if (d->ops->reset != NULL) {
        prev = cb_begin(d);
        d->ops->reset(d->opaque, cause);
        cb_end(prev);
    }
    session_abort_locked(d, VMIG_SESSION_END_RESET);
    d->state = VMIG_STATE_RUNNING;
    check_invariants_locked(d);
    leave(d);

    if (s.kind != VMIG_SESSION_NONE) {
        vmig_warn(d->ctx,
                  "%sdevice reset in %s: %s session %llu ended; its reader or "
                  "writer gets ENODEV and must restart the migration of this "
                  "device",
                  who, vmig_state_name(was),
                  s.kind == VMIG_SESSION_SAVE ? "saving" : "resuming",
                  (unsigned long long)s.generation);
    } else {
        vmig_info(d->ctx, "%sdevice reset in %s; now RUNNING", who,
                  vmig_state_name(was));
    }
}

/* ------------------------------------------------------------ sessions */

void
vmig_dev_session(struct vmig_dev *d, struct vmig_session_info *out)
{
    bool locked = lock_for_read(d);

    *out = d->session;
    if (locked) {
        pthread_mutex_unlock(&d->lock);
    }
}

int
vmig_dev_session_check(struct vmig_dev *d, uint64_t generation,
                       enum vmig_session_kind kind)
{
    bool locked = lock_for_read(d);
    int ret = -EBADF; /* ended normally, replaced, or of another kind */

    if (d->session.generation == generation) {
        if (d->session.kind != VMIG_SESSION_NONE) {
            ret = d->session.kind == kind ? 0 : -EBADF;
        } else if (d->session.end == VMIG_SESSION_END_RESET ||
                   d->session.end == VMIG_SESSION_END_ERROR) {
            ret = -ENODEV;
        }
    }
    if (locked) {
        pthread_mutex_unlock(&d->lock);
    }
    return ret;
}

static int
usable_locked(const struct vmig_dev *d, enum vmig_session_kind kind)
{
    if (d->session.kind == kind && kind != VMIG_SESSION_NONE) {
        return 0;
    }
    if (d->session.kind == VMIG_SESSION_NONE &&
        (d->session.end == VMIG_SESSION_END_RESET ||
         d->session.end == VMIG_SESSION_END_ERROR)) {
        return -ENODEV;
    }
    return -EBUSY;
}

int
vmig_dev_session_usable(struct vmig_dev *d, enum vmig_session_kind kind)
{
    bool locked = lock_for_read(d);
    int ret = usable_locked(d, kind);

    if (locked) {
        pthread_mutex_unlock(&d->lock);
    }
    return ret;
}

/* Ask the device until @buf is full or it has nothing more. */
static ssize_t
read_locked(struct vmig_dev *d, uint8_t *buf, size_t len, int *next)
{
    const struct vmig_dev *prev;
    bool stopcopy = d->state == VMIG_STATE_STOP_COPY;
    size_t got = 0;

    *next = -EAGAIN;
    if (d->eof) {
        *next = 0;
        return 0;
    }
    while (got < len) {
        ssize_t n;

        prev = cb_begin(d);
        n = d->ops->save(d->opaque, d->state, buf + got, len - got);
        cb_end(prev);
        if (n > (ssize_t)(len - got)) {
            vmig_err(d->ctx,
                     "%s: the device returned %zd bytes of saving "
                     "data for %zu asked; its data is refused",
                     vmig_state_name(d->state), n, len - got);
            return -EIO;
        }
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0 && stopcopy) {
            d->eof = true;
            *next = 0;
        } else if (n == -ENOMSG && stopcopy) {
            vmig_err(d->ctx, "STOP_COPY: the device said 'no more for now'; "
                             "its data would be truncated");
            return -EIO;
        } else if (n == 0 || n == -ENOMSG) {
            *next = -ENOMSG;
        } else {
            return n;
        }
        break;
    }
    if (got == 0 && *next == -ENOMSG) {
        return -ENOMSG;
    }
    return (ssize_t)got;
}

ssize_t
vmig_dev_read(struct vmig_dev *d, void *buf, size_t len, int *next)
{
    int nx = -EAGAIN;
    ssize_t ret;

    ret = enter(d, "vmig_dev_read()");
    if (ret < 0) {
        return ret;
    }
    ret = usable_locked(d, VMIG_SESSION_SAVE);
    if (ret == 0) {
        ret = read_locked(d, buf, len, &nx);
    }
    leave(d);
    if (next != NULL) {
        *next = nx;
    }
    return ret;
}

int
vmig_dev_write(struct vmig_dev *d, const void *buf, size_t len)
{
    const struct vmig_dev *prev;
    int ret;

    ret = enter(d, "vmig_dev_write()");
    if (ret < 0) {
        return ret;
    }
    ret = usable_locked(d, VMIG_SESSION_RESUME);
    if (ret == 0 && len > 0) {
        prev = cb_begin(d);
        ret = d->ops->load(d->opaque, buf, len);
        cb_end(prev);
        ret = ret > 0 ? 0 : ret;
    }
    leave(d);
    return ret;
}

/* ------------------------------------------------------------ sizing */

int
vmig_dev_precopy_info(struct vmig_dev *d, uint64_t *initial, uint64_t *dirty)
{
    const struct vmig_dev *prev;
    int ret;

    if (d->ops->precopy_info == NULL) {
        return -EOPNOTSUPP;
    }
    ret = enter(d, "vmig_dev_precopy_info()");
    if (ret < 0) {
        return ret;
    }
    if (!precopy_state(d->state)) {
        ret = -EINVAL;
    } else {
        prev = cb_begin(d);
        ret = d->ops->precopy_info(d->opaque, initial, dirty);
        cb_end(prev);
    }
    leave(d);
    return ret;
}

int
vmig_dev_data_size(struct vmig_dev *d, uint64_t *bytes)
{
    const struct vmig_dev *prev;
    int ret;

    if (d->ops->data_size == NULL) {
        return -EOPNOTSUPP;
    }
    ret = enter(d, "vmig_dev_data_size()");
    if (ret < 0) {
        return ret;
    }
    prev = cb_begin(d);
    ret = d->ops->data_size(d->opaque, bytes);
    cb_end(prev);
    leave(d);
    return ret;
}

/* ------------------------------------------------------------ logging */

int
vmig_dev_log_start(struct vmig_dev *d, uint64_t page_size,
                   const struct vmig_dma_range *ranges, unsigned int n)
{
    const struct vmig_dev *prev;
    int ret;

    if (!(d->caps & VMIG_DEV_CAP_DMA_LOG)) {
        return -EOPNOTSUPP;
    }
    ret = enter(d, "vmig_dev_log_start()");
    if (ret < 0) {
        return ret;
    }
    prev = cb_begin(d);
    ret = d->ops->log_start(d->opaque, page_size, ranges, n);
    cb_end(prev);
    leave(d);
    return ret;
}

int
vmig_dev_log_stop(struct vmig_dev *d)
{
    const struct vmig_dev *prev;
    int ret;

    if (!(d->caps & VMIG_DEV_CAP_DMA_LOG)) {
        return -EOPNOTSUPP;
    }
    ret = enter(d, "vmig_dev_log_stop()");
    if (ret < 0) {
        return ret;
    }
    prev = cb_begin(d);
    ret = d->ops->log_stop(d->opaque);
    cb_end(prev);
    leave(d);
    return ret;
}

int
vmig_dev_log_report(struct vmig_dev *d, uint64_t iova, uint64_t length,
                    uint64_t page_size, uint64_t *bitmap)
{
    const struct vmig_dev *prev;
    int ret;

    if (!(d->caps & VMIG_DEV_CAP_DMA_LOG)) {
        return -EOPNOTSUPP;
    }
    ret = enter(d, "vmig_dev_log_report()");
    if (ret < 0) {
        return ret;
    }
    prev = cb_begin(d);
    ret = d->ops->log_report(d->opaque, iova, length, page_size, bitmap);
    cb_end(prev);
    leave(d);
    return ret;
}
