/* SPDX-License-Identifier: MIT */
/*
 * acc_mig.h - the accelerator's migration: the device-side framework
 * (<vmig/device.h>) with the accelerator's callbacks, and the data of
 * each session.  The framework owns the state machine; this file is what
 * the device does on each arc and what its sessions carry.
 *
 * Flags: STOP_COPY | PRE_COPY, no P2P (the device has no peer-to-peer DMA,
 * so a combination transition from RUNNING goes to STOP directly, never
 * through RUNNING_P2P).  What each arc does:
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
 * A device reset - vmig_dev_reset(acc_mig_dev(), VMIG_RESET_HOST), or the
 * guest's RESET register, which the model reports through
 * acc_mig_model_reset() - returns to RUNNING from any state, drops the
 * session's data (its reader or writer then gets -ENODEV from the
 * framework) and is logged.
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
 * Locking: the framework's lock; every callback runs under it, and the
 * model's own lock nests inside.
 */
#ifndef ACC_MIG_H
#define ACC_MIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <vmig/compat.h>
#include <vmig/ctx.h>
#include <vmig/device.h>
#include <vmig/fsm.h>
#include "acc_model.h"

#define ACC_MIG_FLAGS (VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_PRE_COPY)
#define ACC_MIG_REC_STATE 0x100u /* VMIG_REC_DEVICE_MIN: the payload */
#define ACC_MIG_BAD_V1_REASON "EQ/AEQ addresses saved wrongly"

struct acc_mig;

/**
 * acc_mig_new() - Make @model migratable.
 * @ctx:   logging context (borrowed).
 * @model: the device (borrowed; must outlive the driver).  Its
 *         ops->reset must call acc_mig_model_reset().
 * @out:   receives the driver; untouched on failure.
 *
 * The device starts in RUNNING.
 *
 * Return: 0, -EINVAL, -ENOMEM.
 */
int acc_mig_new(vmig_ctx_t *ctx, struct acc_model *model, struct acc_mig **out);

/**
 * acc_mig_free() - Free the driver and its framework object (not the
 * model).  NULL is accepted.
 * @am: driver.
 */
void acc_mig_free(struct acc_mig *am);

/**
 * acc_mig_dev() - The device's framework object: its state, sessions and
 * reset (vmig_dev_set_state(), vmig_dev_read(), vmig_dev_write(),
 * vmig_dev_precopy_info(), vmig_dev_data_size(), vmig_dev_reset()).
 * @am: driver.
 *
 * Reads return the envelope: bytes, 0 at the permanent end in STOP_COPY,
 * -ENOMSG in PRE_COPY once the compatibility part is read.  Writes go
 * straight to the envelope loader, which checks the descriptor as soon as
 * it is complete (so a destination refuses during the source's PRE_COPY)
 * and every record's checksums; once refused, every later write fails the
 * same way, with the loader's errno (enum vmig_stream_err: -EOPNOTSUPP
 * for an incompatible or known-bad source, -EBADMSG for damage, -EPROTO,
 * -E2BIG).  PRECOPY_INFO gives the bytes of the compatibility part not yet
 * read as initial data and 0 dirty: the device state goes only in
 * STOP_COPY.  MIG_DATA_SIZE is the whole envelope's size.
 *
 * Return: the object, owned by @am.
 */
struct vmig_dev *acc_mig_dev(struct acc_mig *am);

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
 * into the device.
 */
const char *acc_mig_last_error(struct acc_mig *am);

/**
 * acc_mig_model_reset() - The model reset itself (its ops->reset).
 * @am:    driver.
 * @guest: true for the guest's RESET register.
 *
 * A guest reset is a device reset for the framework (session ended, back
 * to RUNNING); a host reset is one the framework asked for, so nothing
 * more happens.  Call it with no lock of the model held (the model's
 * reset callback is called that way).
 */
void acc_mig_model_reset(struct acc_mig *am, bool guest);

#endif /* ACC_MIG_H */
