/* SPDX-License-Identifier: MIT */
/*
 * device.h - the device-side migration framework: the one state machine
 * of a migratable device, its data sessions, its reset, and its DMA
 * dirty logging.
 *
 * A device model supplies callbacks (struct vmig_dev_ops): one step per
 * arc of the VFIO v2 state machine, the saving and resuming data, and
 * optionally precopy sizing, the stop-copy size, DMA dirty logging and a
 * reset.  The framework owns everything the kernel's vfio core and
 * libvfio-user own for a driver:
 *   - vmig_dev_set_state() walks a combination transition arc by arc
 *     (vmig_fsm_next()), calls the device once per arc, and records only
 *     states the device reached; a failed arc leaves the device where it
 *     was, or in ERROR when the device says it is broken ("a failed SET
 *     leaves the device in the original state or any state along the
 *     path; the caller must GET it");
 *   - the data session: saving is open exactly in PRE_COPY, PRE_COPY_P2P
 *     and STOP_COPY, resuming exactly in RESUMING.  In STOP_COPY the end
 *     of data is permanent; in PRE_COPY "no more for now" (-ENOMSG) is
 *     distinct from the end.  Outside its states a session is refused with
 *     -EBUSY;
 *   - ERROR is left only by a reset.  A reset (from any state) returns the
 *     device to RUNNING and ends the open session; its reader or writer
 *     then gets -ENODEV until the next session opens, never a silent end
 *     of data.  A migration that sees -ENODEV must restart this device's
 *     transfer (or give up).
 * Transports and backends (the vfio-user server, the in-process engine
 * backends) drive a device only through these functions.
 *
 * Locking: one mutex per device.  Every vmig_dev_*() call takes it, and
 * every callback runs with it held, so arcs, data, sizing, logging and
 * resets of one device are serialised.  Lock order: the framework's mutex
 * first, then any lock of the device model.  A callback must not call
 * vmig_dev_*() functions that change the device (set_state, reset, read,
 * write, ...) on its own device - they refuse with -EDEADLK (reset logs
 * and returns) - but may read vmig_dev_state(), vmig_dev_flags() and
 * vmig_dev_session() freely.  A device model that notices a reset itself
 * (a guest's reset register) calls vmig_dev_reset(d, VMIG_RESET_GUEST)
 * from its own context, with none of its locks held.
 */
#ifndef VMIG_DEVICE_H
#define VMIG_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <vmig/ctx.h>
#include <vmig/export.h>
#include <vmig/fsm.h>

struct vmig_dev;

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
 *              first.  A reader that must not continue into a later
 *              session remembers it and asks vmig_dev_session_check().
 * @end:        how the last session ended.
 */
struct vmig_session_info {
    enum vmig_session_kind kind;
    uint64_t generation;
    enum vmig_session_end end;
};

/* Who asked for a reset (the device decides what it has left to do). */
enum vmig_reset_cause {
    VMIG_RESET_HOST = 0, /* the VMM: vfio-user DEVICE_RESET, the engine */
    VMIG_RESET_GUEST,    /* the guest: a reset register, an FLR the device
                            saw; the model may have reset itself already */
};

/* A range of DMA addresses to track (DMA dirty logging). */
struct vmig_dma_range {
    uint64_t iova;
    uint64_t length;
};

/**
 * struct vmig_dev_ops - what a device model supplies.  Every callback
 * runs with the framework's mutex held (see the top of this file).
 * @step:         perform the single arc @from -> @to.  Return 0 when the
 *                device is in @to; a negative errno when it failed and is
 *                still in @from; set *@broken to true (it starts false)
 *                when the device is in no well-defined state: the
 *                framework moves it to ERROR.  Arcs that open a session
 *                (vmig_arc_classify()) prepare its data; RESUMING -> STOP
 *                validates everything loaded and applies it, or fails
 *                applying nothing.  Required.
 * @save:         produce saving data of the open session into @buf: the
 *                number of bytes (1..@len); 0 when there is nothing more
 *                (the permanent end in STOP_COPY, "nothing for now" in
 *                PRE_COPY/PRE_COPY_P2P); -ENOMSG for "nothing for now"
 *                (the precopy states only: in STOP_COPY it would truncate
 *                the data, and the read fails with -EIO); or a negative
 *                errno.  @state is the device's state.  Required.
 * @load:         consume all @len bytes of resuming data; 0 or a negative
 *                errno (refused data keeps being refused: the framework
 *                does not remember).  Required.
 * @reset:        bring the device back to its power-on state, running,
 *                dropping all session data; for VMIG_RESET_GUEST the model
 *                may already be reset.  Optional.
 * @precopy_info: in PRE_COPY/PRE_COPY_P2P only: bytes of initial data not
 *                yet read, and of dirty data known now
 *                (VFIO_MIG_GET_PRECOPY_INFO).  Optional.
 * @data_size:    bytes STOP_COPY would produce from now on
 *                (VFIO_DEVICE_FEATURE_MIG_DATA_SIZE).  Optional.
 * @log_start:    start tracking the device's writes to guest memory in
 *                @ranges at @page_size granularity.  Optional; a transport
 *                may track DMA it performs for the device itself instead.
 * @log_stop:     stop tracking.  Required with @log_start.
 * @log_report:   set a bit in @bitmap (zeroed by the caller, one bit per
 *                @page_size of [@iova, @iova + @length)) for every page
 *                written since the last report, and forget them.  Required
 *                with @log_start.
 */
struct vmig_dev_ops {
    int (*step)(void *opaque, enum vmig_state from, enum vmig_state to,
                bool *broken);
    ssize_t (*save)(void *opaque, enum vmig_state state, void *buf, size_t len);
    int (*load)(void *opaque, const void *buf, size_t len);
    void (*reset)(void *opaque, enum vmig_reset_cause cause);
    int (*precopy_info)(void *opaque, uint64_t *initial, uint64_t *dirty);
    int (*data_size)(void *opaque, uint64_t *bytes);
    int (*log_start)(void *opaque, uint64_t page_size,
                     const struct vmig_dma_range *ranges, unsigned int n);
    int (*log_stop)(void *opaque);
    int (*log_report)(void *opaque, uint64_t iova, uint64_t length,
                      uint64_t page_size, uint64_t *bitmap);
};

/* What a device offers beyond the required callbacks (vmig_dev_caps()). */
#define VMIG_DEV_CAP_PRECOPY_INFO (1u << 0)
#define VMIG_DEV_CAP_DATA_SIZE (1u << 1)
#define VMIG_DEV_CAP_DMA_LOG (1u << 2)

/**
 * vmig_dev_new() - Create the migration state of a device.
 * @ctx:    logging context (borrowed; must outlive the object); messages
 *          are prefixed with its name.
 * @flags:  the device's VMIG_MIGRATION_* flags (validated).
 * @ops:    callbacks (borrowed).
 * @opaque: passed to every callback.
 * @out:    receives the object; untouched on failure.
 *
 * The device starts in RUNNING, with no session.
 *
 * Return: 0, or -EINVAL (bad flags, a required callback missing, log
 * callbacks incomplete), -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_dev_new(vmig_ctx_t *ctx, uint64_t flags,
                                             const struct vmig_dev_ops *ops,
                                             void *opaque,
                                             struct vmig_dev **out);

/**
 * vmig_dev_free() - Destroy the object.  NULL is accepted.
 * @d: object; no call into it may be running.
 */
VMIG_EXPORT void vmig_dev_free(struct vmig_dev *d);

/**
 * vmig_dev_flags() - The device's migration flags.
 * @d: object.
 *
 * Return: the flags given at creation.
 */
VMIG_EXPORT uint64_t vmig_dev_flags(const struct vmig_dev *d);

/**
 * vmig_dev_caps() - The optional callbacks the device has.
 * @d: object.
 *
 * Return: VMIG_DEV_CAP_* bits.
 */
VMIG_EXPORT uint32_t vmig_dev_caps(const struct vmig_dev *d);

/**
 * vmig_dev_state() - The state the device is in now.
 * @d: object.
 *
 * Return: a state; ERROR after a failure that broke the device.
 */
VMIG_EXPORT enum vmig_state vmig_dev_state(struct vmig_dev *d);

/**
 * vmig_dev_set_state() - Move the device to @target, arc by arc.
 * @d:      object.
 * @target: requested state (a number from the peer is fine: it is
 *          checked).
 *
 * On failure the device is at the last state it reached (possibly the
 * original one), or in ERROR when a step reported it broken; read it with
 * vmig_dev_state().  Nothing is done when @target is illegal or
 * unreachable.
 *
 * Return: 0; -EINVAL for an illegal target or arc (including any request
 * while in ERROR); -EDEADLK from inside a callback; or the errno of the
 * step that failed (-EIO when it broke without one).
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_dev_set_state(struct vmig_dev *d,
                                                   unsigned int target);

/**
 * vmig_dev_reset() - Device reset: back to RUNNING from any state.
 * @d:     object.
 * @cause: who asked.
 *
 * Calls the reset callback, ends any open session (its reader or writer
 * then gets -ENODEV) and logs the reset with the state it interrupted.
 * Any thread; refused (logged) from inside a callback of @d.
 */
VMIG_EXPORT void vmig_dev_reset(struct vmig_dev *d,
                                enum vmig_reset_cause cause);

/**
 * vmig_dev_session() - The current or last session.
 * @d:   object.
 * @out: receives the information.
 */
VMIG_EXPORT void vmig_dev_session(struct vmig_dev *d,
                                  struct vmig_session_info *out);

/**
 * vmig_dev_session_check() - May a reader/writer of session @generation
 * still use it?
 * @d:          object.
 * @generation: the generation the reader started with.
 * @kind:       the session kind the reader expects (SAVE or RESUME).
 *
 * Return: 0 while that session is open; -ENODEV when it ended by a reset
 * or the device going to ERROR; -EBADF when it ended normally, was
 * replaced by a newer session, or is of another kind.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_dev_session_check(struct vmig_dev *d, uint64_t generation,
                       enum vmig_session_kind kind);

/**
 * vmig_dev_session_usable() - May the open session of @kind be used now?
 * @d:    object.
 * @kind: SAVE or RESUME.
 *
 * Return: 0 when a session of @kind is open; -ENODEV when none is and the
 * last one was cut short by a reset or ERROR; -EBUSY otherwise.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_dev_session_usable(struct vmig_dev *d, enum vmig_session_kind kind);

/**
 * vmig_dev_read() - Read saving data of the open session.
 * @d:    object.
 * @buf:  destination.
 * @len:  room in @buf; the framework asks the device until it is full or
 *        the device has nothing more.
 * @next: optional; receives what follows the bytes returned: -EAGAIN
 *        (@buf filled up; more may follow), -ENOMSG (nothing more for
 *        now) or 0 (the end of data).
 *
 * Return: bytes read (> 0); 0 at the end of data (STOP_COPY; permanent:
 * every later read returns 0 without asking the device); -ENOMSG when
 * nothing is pending now (PRE_COPY, PRE_COPY_P2P); -EBUSY when no saving
 * session is open; -ENODEV when it was cut short by a reset or ERROR;
 * -EIO when the device broke the callback contract; -EDEADLK from inside
 * a callback; or the device's errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK ssize_t vmig_dev_read(struct vmig_dev *d, void *buf,
                                                  size_t len, int *next);

/**
 * vmig_dev_write() - Write resuming data into the open session.
 * @d:   object.
 * @buf: data.
 * @len: bytes (0 only checks the session).
 *
 * Return: 0; -EBUSY when no resuming session is open; -ENODEV when it was
 * cut short by a reset; -EDEADLK from inside a callback; or the device's
 * errno (the data was refused).
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_dev_write(struct vmig_dev *d,
                                               const void *buf, size_t len);

/**
 * vmig_dev_precopy_info() - VFIO_MIG_GET_PRECOPY_INFO.
 * @d:       object.
 * @initial: receives bytes of initial data not read yet.
 * @dirty:   receives bytes of dirty data known now.
 *
 * Return: 0; -EINVAL outside PRE_COPY and PRE_COPY_P2P; -EOPNOTSUPP
 * without the callback; -EDEADLK from inside a callback; or the device's
 * errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_dev_precopy_info(struct vmig_dev *d, uint64_t *initial, uint64_t *dirty);

/**
 * vmig_dev_data_size() - VFIO_DEVICE_FEATURE_MIG_DATA_SIZE.
 * @d:     object.
 * @bytes: receives the estimate.
 *
 * Return: 0; -EOPNOTSUPP without the callback; -EDEADLK from inside a
 * callback; or the device's errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_dev_data_size(struct vmig_dev *d,
                                                   uint64_t *bytes);

/**
 * vmig_dev_log_start() - Start the device's DMA dirty tracking.
 * @d:         object.
 * @page_size: granularity (a power of two the caller checked).
 * @ranges:    DMA ranges to track (borrowed for the call).
 * @n:         number of ranges.
 *
 * Return: 0; -EOPNOTSUPP when the device does not track (see
 * VMIG_DEV_CAP_DMA_LOG); -EDEADLK from inside a callback; or the device's
 * errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_dev_log_start(struct vmig_dev *d, uint64_t page_size,
                   const struct vmig_dma_range *ranges, unsigned int n);

/**
 * vmig_dev_log_stop() - Stop the device's DMA dirty tracking.
 * @d: object.
 *
 * Return: 0, -EOPNOTSUPP, -EDEADLK, or the device's errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_dev_log_stop(struct vmig_dev *d);

/**
 * vmig_dev_log_report() - Pages the device wrote; reported pages are
 * forgotten.
 * @d:         object.
 * @iova:      start of the range asked about.
 * @length:    its length.
 * @page_size: one bit of @bitmap per page.
 * @bitmap:    zeroed by the caller; receives the bits.
 *
 * Return: 0, -EOPNOTSUPP, -EDEADLK, or the device's errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_dev_log_report(struct vmig_dev *d, uint64_t iova, uint64_t length,
                    uint64_t page_size, uint64_t *bitmap);

/**
 * vmig_session_end_name() - "open", "normal", "reset", "error".
 * @end: a reason.
 *
 * Return: a static string.
 */
VMIG_EXPORT const char *vmig_session_end_name(enum vmig_session_end end);

#endif /* VMIG_DEVICE_H */
