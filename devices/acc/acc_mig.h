/* SPDX-License-Identifier: MIT */
/*
 * acc_mig.h - the accelerator's migration driver: the VFIO v2 state
 * machine (through <vmig/mig.h>) bound to the device model, with the data
 * of each session.
 *
 * Flags: STOP_COPY | PRE_COPY, no P2P (the device has no peer-to-peer DMA,
 * so combination transitions never pass RUNNING_P2P; seed 002).  What each
 * arc does:
 *   RUNNING -> STOP        the model quiesces (acc_model_stop())
 *   STOP -> RUNNING        the model resumes
 *   RUNNING -> PRE_COPY    a saving session opens; only the compatibility
 *                          part (envelope header + descriptor) is readable,
 *                          so the destination can refuse before any
 *                          downtime; the device keeps running
 *   PRE_COPY -> STOP_COPY  the model quiesces; its state is saved and the
 *                          rest of the envelope becomes readable
 *   STOP -> STOP_COPY      a saving session opens with the whole envelope
 *   PRE_COPY -> RUNNING,
 *   STOP_COPY -> STOP      the session ends; unread data is dropped
 *   STOP -> RESUMING       a resuming session opens, empty
 *   RESUMING -> STOP       the envelope must be complete and valid; then
 *                          the payload is loaded (acc_model_load()); on
 *                          any error the arc fails, the device stays in
 *                          RESUMING, the model untouched, and only a
 *                          reset leaves it
 * A device reset (acc_mig_reset(), or the guest's RESET register reported
 * through acc_mig_model_reset()) in any state returns to RUNNING, ends the
 * open session (its reader or writer then gets -ENODEV) and is logged.
 *
 * Session data: one device-state envelope (<vmig/stream.h>,
 * docs/stream-format.md): header and DESCRIPTOR record (this device's
 * descriptor, acc_mig_descriptor()) first, readable in PRE_COPY; then, in
 * STOP_COPY, one mandatory record ACC_MIG_REC_STATE holding the payload of
 * acc_model_save(); then END.  The envelope's stream version is the
 * payload version (ACC_STATE_VERSION); version 1 is listed as known bad.
 * The destination judges the descriptor (vendor, device type, generation,
 * versions, resource parameters "qp-count" and "isolation") as soon as it
 * has arrived, so it refuses during the source's PRE_COPY.
 *
 * Locking: an internal mutex guards the session data; it nests inside the
 * state machine's lock (arcs run with that held).
 */
#ifndef ACC_MIG_H
#define ACC_MIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <vmig/compat.h>
#include <vmig/ctx.h>
#include <vmig/fsm.h>
#include "acc_model.h"

#define ACC_MIG_FLAGS (VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_PRE_COPY)
#define ACC_MIG_REC_STATE 0x100u /* VMIG_REC_DEVICE_MIN: the payload */
#define ACC_MIG_BAD_V1_REASON "EQ/AEQ addresses saved wrongly"

struct acc_mig;

/**
 * acc_mig_new() - Bind a migration driver to @model.
 * @ctx:   logging context (borrowed).
 * @model: the device (borrowed; must outlive the driver).  Its
 *         ops->reset must call acc_mig_model_reset().
 * @out:   receives the driver; untouched on failure.
 *
 * Starts in RUNNING.
 *
 * Return: 0, -EINVAL, -ENOMEM.
 */
int acc_mig_new(vmig_ctx_t *ctx, struct acc_model *model, struct acc_mig **out);

/**
 * acc_mig_free() - Free the driver (not the model).  NULL is accepted.
 * @am: driver.
 */
void acc_mig_free(struct acc_mig *am);

/**
 * acc_mig_state() - The current state (enum vmig_state).
 * @am: driver.
 *
 * Return: the state.
 */
enum vmig_state acc_mig_state(struct acc_mig *am);

/**
 * acc_mig_set_state() - Move to @target, arc by arc (vmig_mig_set_state()).
 * @am:     driver.
 * @target: enum vmig_state.
 *
 * Return: 0, or the errno of the refused transition or failed arc; read the
 * state reached with acc_mig_state().
 */
int acc_mig_set_state(struct acc_mig *am, unsigned int target);

/**
 * acc_mig_read() - Read saving-session data.
 * @am:  driver.
 * @buf: destination.
 * @len: its size.
 *
 * Return: bytes copied; 0 at the permanent end (STOP_COPY, all read);
 * -ENOMSG in PRE_COPY when everything available now was read; -ENODEV when
 * the session was cut short by a reset; -EBUSY when no saving session is
 * open.
 */
ssize_t acc_mig_read(struct acc_mig *am, void *buf, size_t len);

/**
 * acc_mig_write() - Write resuming-session data.
 * @am:  driver.
 * @buf: bytes.
 * @len: count.
 *
 * Bytes go straight to the envelope loader, which checks the descriptor
 * as soon as it is complete (so a destination refuses during the source's
 * PRE_COPY) and every record's checksums; once refused, every later write
 * fails the same way.
 *
 * Return: @len; -EBUSY (not RESUMING); -ENODEV (session ended by a reset);
 * or the loader's errno (see enum vmig_stream_err: -EOPNOTSUPP for an
 * incompatible or known-bad source, -EBADMSG for damage, -EPROTO, -E2BIG).
 */
ssize_t acc_mig_write(struct acc_mig *am, const void *buf, size_t len);

/**
 * acc_mig_precopy_info() - VFIO_MIG_GET_PRECOPY_INFO for this device.
 * @am:      driver.
 * @initial: receives bytes of the compatibility part (envelope header and
 *           descriptor) not yet read.
 * @dirty:   receives 0: the device state goes only in STOP_COPY.
 *
 * Return: 0, or -EINVAL outside PRE_COPY.
 */
int acc_mig_precopy_info(struct acc_mig *am, uint64_t *initial,
                         uint64_t *dirty);

/**
 * acc_mig_data_size() - Estimated bytes of a STOP_COPY session.
 * @am: driver.
 *
 * Return: the whole envelope's size.
 */
uint64_t acc_mig_data_size(const struct acc_mig *am);

/**
 * acc_mig_descriptor() - This device's compatibility descriptor.
 * @am: driver.
 *
 * vendor VMIG_VENDOR_PCI(ACC_PCI_VENDOR_ID), type ACC_PCI_DEVICE_ID,
 * generation ACC_HW_REVISION, flags STOP_COPY | PRE_COPY, stream version 2
 * produced and accepted, version 1 known bad, params "qp-count" and
 * "isolation" ("device" or "queue-pair").
 *
 * Return: a descriptor owned by @am.
 */
const struct vmig_compat_desc *acc_mig_descriptor(const struct acc_mig *am);

/**
 * acc_mig_last_error() - Why the incoming stream was refused.
 * @am: driver.
 *
 * Return: a message owned by @am ("" when none); valid until the next call
 * into @am.
 */
const char *acc_mig_last_error(struct acc_mig *am);

/**
 * acc_mig_reset() - Host device reset (vfio-user DEVICE_RESET).
 * @am: driver.
 *
 * Resets the model and the state machine: RUNNING, session ended.
 */
void acc_mig_reset(struct acc_mig *am);

/**
 * acc_mig_step() - One arc, for a state machine owned by someone else.
 * @am:     driver.
 * @from:   current state.
 * @to:     next state (one arc).
 * @broken: as struct vmig_mig_ops.step.
 *
 * A vfio-user server (<vmig/vfu_server.h>) owns the device's state machine
 * and calls this as its mig_step; acc_mig_read()/_write() then serve its
 * data callbacks.  Do not mix with acc_mig_set_state() on the same driver.
 *
 * Return: 0, or -errno with the device still in @from.
 */
int acc_mig_step(struct acc_mig *am, enum vmig_state from, enum vmig_state to,
                 bool *broken);

/**
 * acc_mig_ext_reset() - Reset for an externally owned state machine: end
 * the session (its reader/writer gets -ENODEV) and reset the model unless
 * @model_done says it already reset itself; the model runs afterwards.
 * @am:         driver.
 * @model_done: true when the model reset itself (guest RESET register).
 */
void acc_mig_ext_reset(struct acc_mig *am, bool model_done);

/**
 * acc_mig_model_reset() - Tell the driver the model reset itself.
 * @am:    driver.
 * @guest: true for the guest's RESET register.
 *
 * Call from the model's ops->reset; safe for resets the driver started.
 */
void acc_mig_model_reset(struct acc_mig *am, bool guest);

#endif /* ACC_MIG_H */
