/* SPDX-License-Identifier: MIT */
/*
 * engine_vfu_data.c - the vfio-user backend's device state and data ops:
 * states (only those the device's flags advertise), bounded pulls of the
 * saving session straight into the engine's buffer (bursts sized by the
 * precopy budget rule in PRE_COPY / PRE_COPY_P2P, to the end in
 * STOP_COPY), resuming writes, reset, and sizing for the downtime
 * estimate.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/log.h>
#include "engine_vfu_priv.h"
#include "precopy_budget.h"

/* The first STOP_COPY pull is this small, and each next one twice the
 * last, up to what the engine asks: the first bytes go on the wire while
 * the device still produces the rest, without a round trip per 256 KiB
 * after that. */
#define FIRST_PULL (256u << 10)

static void
save_drop(struct vmig_engine_vfu *b)
{
    b->send = false;
    b->pull_max = 0;
    b->burst = false;
    b->budget = 0;
    b->pc_read = 0;
    b->burst_bytes = 0;
    b->last_burst = 0;
    b->have_last = false;
}

int
vmig__evfu_get_flags(void *o, uint64_t *flags)
{
    struct vmig_engine_vfu *b = o;

    *flags = b->flags;
    return 0;
}

static bool
precopy_state(enum vmig_state st)
{
    return st == VMIG_STATE_PRE_COPY || st == VMIG_STATE_PRE_COPY_P2P;
}

int
vmig__evfu_get_state(void *o, enum vmig_state *st)
{
    struct vmig_engine_vfu *b = o;
    int ret = vmig_vfu_client_get_state(b->c, st);

    if (ret == 0 && *st != b->state) {
        /* changed behind our back (a reset): no burst of ours survives */
        save_drop(b);
        b->state = *st;
    }
    return ret;
}

int
vmig__evfu_set_state(void *o, enum vmig_state target)
{
    struct vmig_engine_vfu *b = o;
    enum vmig_state now;
    char fl[64];
    int ret;

    /* only states the device advertised, whatever asks */
    if (!vmig_state_supported(b->flags, target)) {
        vmig_log(b->ctx, VMIG_LOG_ERR,
                 "%s: %s is not a state this device has (its migration "
                 "flags: %s); not asked for",
                 b->name, vmig_state_name(target),
                 vmig_flags_format(b->flags, fl, sizeof(fl)));
        return -EOPNOTSUPP;
    }
    if (precopy_state(b->state) &&
        (precopy_state(target) || target == VMIG_STATE_STOP_COPY)) {
        /* the saving session goes on */
        b->burst = false;
        b->budget = 0;
    } else {
        save_drop(b);
    }
    ret = vmig_vfu_client_set_state(b->c, target);
    if (ret == 0) {
        b->state = target;
    } else if (vmig_vfu_client_get_state(b->c, &now) == 0) {
        b->state = now; /* anywhere along the path: ask */
    } else {
        b->state = VMIG_STATE_ERROR;
    }
    return ret;
}

/*
 * How many bytes a PRE_COPY read burst may return: the precopy budget
 * rule (precopy_budget.h) over what the device says when the burst
 * starts: PRECOPY_INFO, else MIG_DATA_SIZE.  A failing query (e.g.
 * -EINVAL because a reset took the device out of PRE_COPY) is not
 * reported here: the read that follows returns the session's own error.
 */
static uint64_t
burst_budget(struct vmig_engine_vfu *b)
{
    struct vmig__pc_sizing sz = {0};
    int ret = vmig_vfu_client_precopy_info(b->c, &sz.initial, &sz.dirty);

    sz.info = ret == 0;
    sz.size =
        ret == -EOPNOTSUPP && vmig_vfu_client_data_size(b->c, &sz.bytes) == 0;
    return vmig__pc_burst_budget(&sz);
}

/* A PRE_COPY burst ended: remember its size for vmig__evfu_data_size(). */
static void
burst_end(struct vmig_engine_vfu *b)
{
    b->burst = false;
    b->last_burst = b->burst_bytes;
    b->have_last = true;
    b->burst_bytes = 0;
}

/*
 * PRE_COPY: a burst is at most its budget; each read pulls at most what
 * the engine asked for (and the budget leaves) straight into its buffer.
 * -ENOMSG ends the burst (the device has nothing now, or the budget is
 * spent) and the next read starts a new one.  After a reset the pull
 * fails with the server's -ENODEV and the engine restarts the whole
 * stream.
 */
static ssize_t
read_precopy(struct vmig_engine_vfu *b, void *buf, size_t cap)
{
    size_t want, got = 0;
    int ret;

    if (!b->burst) {
        b->burst = true;
        b->dry = false;
        b->budget = burst_budget(b);
    }
    if (b->budget == 0 || b->dry) {
        burst_end(b);
        return -ENOMSG;
    }
    want = b->budget < cap ? (size_t)b->budget : cap;
    ret = vmig_vfu_client_mig_pull(b->c, buf, want, &got);
    if (ret == -ENOMSG || ret == 0) {
        b->dry = true; /* an end outside STOP_COPY reads as "for now" */
    } else if (ret != -EAGAIN) {
        if (ret == -ENODEV) {
            vmig_log(b->ctx, VMIG_LOG_WARNING,
                     "%s: its PRE_COPY session ended by a device reset; "
                     "the engine restarts this device's precopy or aborts",
                     b->name);
        } else {
            vmig_log(b->ctx, VMIG_LOG_ERR,
                     "%s: reading its PRE_COPY data failed: %s", b->name,
                     strerror(-ret));
        }
        save_drop(b);
        return ret;
    }
    b->budget -= got < b->budget ? got : b->budget;
    b->pc_read += got;
    b->burst_bytes += got;
    if (got == 0) {
        burst_end(b);
        return -ENOMSG;
    }
    return (ssize_t)got;
}

/*
 * STOP_COPY (and any other state): each read pulls at most @cap bytes of
 * the session straight into the engine's buffer, so the first bytes go
 * on the wire while the device still produces the rest, and the VMM
 * never holds more than one engine chunk of the device's state.  The
 * first pull is FIRST_PULL, the next ones double up to @cap.
 */
ssize_t
vmig__evfu_read(void *o, void *buf, size_t cap)
{
    struct vmig_engine_vfu *b = o;
    size_t got = 0;
    int ret;

    if (cap == 0) {
        return -EINVAL;
    }
    if (precopy_state(b->state)) {
        return read_precopy(b, buf, cap);
    }
    if (b->send) {
        save_drop(b); /* the end was reached with the last bytes */
        return 0;
    }
    if (b->pull_max == 0) {
        b->pull_max = FIRST_PULL;
    } else if (b->pull_max < cap) {
        b->pull_max *= 2;
    }
    if (b->pull_max < cap) {
        cap = b->pull_max;
    }
    ret = vmig_vfu_client_mig_pull(b->c, buf, cap, &got);
    if (ret == 0) {
        if (got == 0) {
            save_drop(b);
            return 0;
        }
        b->send = true;
    } else if (ret == -ENOMSG) {
        /* "nothing now" outside PRE_COPY: the engine decides */
        if (got == 0) {
            return -ENOMSG;
        }
    } else if (ret != -EAGAIN) {
        vmig_log(b->ctx, VMIG_LOG_ERR, "%s: reading its state failed: %s",
                 b->name, strerror(-ret));
        save_drop(b);
        return ret;
    }
    return (ssize_t)got;
}

int
vmig__evfu_write(void *o, const void *buf, size_t len)
{
    return vmig_vfu_client_mig_write(((struct vmig_engine_vfu *)o)->c, buf,
                                     len);
}

/*
 * DEVICE_RESET.  Some servers refuse it in some states (STOP, say),
 * although the spec makes it the way back to RUNNING from anywhere: the
 * client logs the refusal with the state; the backend then walks the
 * device to RUNNING through its own states (which ends any data session,
 * as a reset would) and resets it there, once.  If that fails too, the
 * backend believes what the device says it is in.
 */
int
vmig__evfu_reset(void *o)
{
    struct vmig_engine_vfu *b = o;
    enum vmig_state now = VMIG_STATE_ERROR;
    int ret;

    save_drop(b);
    ret = vmig_vfu_client_reset(b->c);
    if (ret < 0 && ret != -ENOTCONN && ret != -ECONNRESET &&
        ret != -ETIMEDOUT && vmig_vfu_client_get_state(b->c, &now) == 0 &&
        now != VMIG_STATE_ERROR && now != VMIG_STATE_RUNNING) {
        vmig_log(b->ctx, VMIG_LOG_WARNING,
                 "%s: reset refused in %s; moving it to RUNNING through its "
                 "states instead (its session, if any, ends) and resetting "
                 "it there",
                 b->name, vmig_state_name(now));
        ret = vmig_vfu_client_set_state(b->c, VMIG_STATE_RUNNING);
        if (ret == 0) {
            ret = vmig_vfu_client_reset(b->c);
        }
    }
    if (ret == 0) {
        b->state = VMIG_STATE_RUNNING;
    } else if (vmig_vfu_client_get_state(b->c, &now) == 0) {
        b->state = now;
    } else {
        b->state = VMIG_STATE_ERROR;
    }
    return ret;
}

int
vmig__evfu_precopy_info(void *o, uint64_t *initial, uint64_t *dirty)
{
    return vmig_vfu_client_precopy_info(((struct vmig_engine_vfu *)o)->c,
                                        initial, dirty);
}

/*
 * MIG_DATA_SIZE when the server negotiated vmig's extensions.  Without
 * them the device gives no sizing, so during PRE_COPY the estimate comes
 * from what was read: the bytes of its last burst (what it produced in
 * one iteration, which is what a switchover would still have to move),
 * or all bytes read so far before any burst ended.  Outside PRE_COPY
 * nothing is known: -EOPNOTSUPP.
 */
int
vmig__evfu_data_size(void *o, uint64_t *bytes)
{
    struct vmig_engine_vfu *b = o;
    int ret = vmig_vfu_client_data_size(b->c, bytes);

    if (ret != -EOPNOTSUPP || !precopy_state(b->state)) {
        return ret;
    }
    if (b->have_last) {
        *bytes = b->last_burst;
        return 0;
    }
    if (b->pc_read > 0) {
        *bytes = b->pc_read;
        return 0;
    }
    return -EOPNOTSUPP;
}
