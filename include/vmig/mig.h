/* SPDX-License-Identifier: MIT */
/*
 * mig.h - the device-side migration driver loop.
 *
 * A device model supplies one callback per arc (step) and, optionally, a
 * reset callback.  vmig_mig_set_state() walks a combination transition arc
 * by arc, records only states the device actually reached, tracks the data
 * session each arc opens or ends, and on failure leaves the state at the
 * last state reached (or ERROR when the device says it is broken), as the
 * uAPI requires: "a failed SET leaves the device in the original state or
 * any state along the path; the caller must GET it".
 *
 * States and invariants:
 *   - state is always a state the device has reached, and supported by the
 *     device's flags, or ERROR;
 *   - session is SAVE exactly while state is PRE_COPY, PRE_COPY_P2P or
 *     STOP_COPY, and RESUME exactly while state is RESUMING;
 *   - ERROR is left only by vmig_mig_reset(), which returns to RUNNING and
 *     ends any session with end reason RESET (readers and writers of that
 *     session then get -ENODEV, never silent truncation).
 *
 * Locking: every function takes the object's mutex; callbacks run with it
 * held and must not call back into the same object.
 */
#ifndef VMIG_MIG_H
#define VMIG_MIG_H

#include <stdbool.h>
#include <stdint.h>
#include <vmig/ctx.h>
#include <vmig/export.h>
#include <vmig/fsm.h>

struct vmig_mig;

enum vmig_session_kind {
    VMIG_SESSION_NONE = 0,
    VMIG_SESSION_SAVE,
    VMIG_SESSION_RESUME,
};

enum vmig_session_end {
    VMIG_SESSION_END_NONE = 0, /* still open, or never opened */
    VMIG_SESSION_END_NORMAL,   /* closed by its ending arc */
    VMIG_SESSION_END_RESET,    /* cut short by a device reset */
    VMIG_SESSION_END_ERROR,    /* cut short by the device going to ERROR */
};

/**
 * struct vmig_session_info - the device's current or last data session.
 * @kind:       NONE, SAVE or RESUME; NONE when no session is open.
 * @generation: increases by one every time a session opens; 0 before the
 *              first.  A reader remembers it and asks
 *              vmig_mig_session_check() before each access.
 * @end:        how the last session ended.
 */
struct vmig_session_info {
    enum vmig_session_kind kind;
    uint64_t generation;
    enum vmig_session_end end;
};

/**
 * struct vmig_mig_ops - device callbacks.
 * @step:  perform the single arc @from -> @to.  Return 0 when the device
 *         is in @to; a negative errno when it failed and the device is
 *         still in @from; set *@broken to true (it starts false) when the
 *         device is in no well-defined state, and the framework moves it to
 *         ERROR.  Required.
 * @reset: bring the device model back to its power-on RUNNING state,
 *         dropping any session data.  Optional.
 */
struct vmig_mig_ops {
    int (*step)(void *opaque, enum vmig_state from, enum vmig_state to,
                bool *broken);
    void (*reset)(void *opaque);
};

/**
 * vmig_mig_new() - Create the migration state of a device.
 * @ctx:    logging context (borrowed; must outlive the object).
 * @flags:  the device's migration flags (validated).
 * @ops:    callbacks (borrowed).
 * @opaque: passed to every callback.
 * @out:    receives the object; untouched on failure.
 *
 * The device starts in RUNNING, with no session.
 *
 * Return: 0, or -EINVAL (bad flags, no step callback), -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_mig_new(vmig_ctx_t *ctx, uint64_t flags,
                                             const struct vmig_mig_ops *ops,
                                             void *opaque,
                                             struct vmig_mig **out);

/**
 * vmig_mig_free() - Destroy the object.  NULL is accepted.
 * @m: object.
 */
VMIG_EXPORT void vmig_mig_free(struct vmig_mig *m);

/**
 * vmig_mig_flags() - The device's migration flags.
 * @m: object.
 *
 * Return: the flags given at creation.
 */
VMIG_EXPORT uint64_t vmig_mig_flags(const struct vmig_mig *m);

/**
 * vmig_mig_state() - The state the device is in now.
 * @m: object.
 *
 * Return: a state; ERROR after a failure that broke the device.
 */
VMIG_EXPORT enum vmig_state vmig_mig_state(struct vmig_mig *m);

/**
 * vmig_mig_set_state() - Move the device to @target, arc by arc.
 * @m:      object.
 * @target: requested state.
 *
 * On failure the device is at the last state it reached (possibly the
 * original one), or in ERROR when a step reported it broken; read it with
 * vmig_mig_state().  Nothing is done when @target is illegal or
 * unreachable.
 *
 * Return: 0; -EINVAL for an illegal target or arc (including any request
 * while in ERROR); or the errno of the step that failed.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_mig_set_state(struct vmig_mig *m,
                                                   unsigned int target);

/**
 * vmig_mig_reset() - Device reset: back to RUNNING from any state.
 * @m: object.
 *
 * Calls the reset callback, ends any open session with reason RESET, and
 * logs the reset with the state it interrupted (seed 003).
 */
VMIG_EXPORT void vmig_mig_reset(struct vmig_mig *m);

/**
 * vmig_mig_session() - The current or last session.
 * @m:   object.
 * @out: receives the information.
 */
VMIG_EXPORT void vmig_mig_session(struct vmig_mig *m,
                                  struct vmig_session_info *out);

/**
 * vmig_mig_session_check() - May a reader/writer of session @generation
 * still use it?
 * @m:          object.
 * @generation: the generation the reader started with.
 * @kind:       the session kind the reader expects (SAVE or RESUME).
 *
 * Return: 0 while that session is open; -ENODEV when it ended by a reset
 * or the device going to ERROR; -EBADF when it ended normally, was
 * replaced by a newer session, or is of another kind.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_mig_session_check(struct vmig_mig *m, uint64_t generation,
                       enum vmig_session_kind kind);

/**
 * vmig_session_end_name() - "open", "normal", "reset", "error".
 * @end: a reason.
 *
 * Return: a static string.
 */
VMIG_EXPORT const char *vmig_session_end_name(enum vmig_session_end end);

#endif /* VMIG_MIG_H */
