/* SPDX-License-Identifier: MIT */
/*
 * events.c - what management sees of the VM's migration: events go to the
 * sink the QMP server set (vm->emit), and the migration status is kept
 * in QEMU's terms (MigrationStatus), announced by a MIGRATION event at
 * every change and read back by query-migrate:
 *
 *   none -> setup -> active -> completed        (source and destination)
 *                         \-> failed | cancelling -> cancelled
 *                         \-> recovering -> completed | failed
 *                                       \-> postmigrate-unknown (source)
 *
 * "recovering" and "postmigrate-unknown" are vmig's (the commit protocol,
 * docs/faults.md): the source sent GO and lost the answer and asks the
 * destination again (the VM stays paused); the destination holds a
 * loaded VM whose source vanished before GO.  "postmigrate-unknown": the
 * source could not learn the outcome; `vmig recover` asks again.
 *
 * QEMU's, not the engine's: the engine's "device" phase (device state
 * moving while the VM is paused) is QEMU's "active" - QEMU shows "device"
 * only with pause-before-switchover, which vmig does not have - and
 * "setup" is set by `migrate` itself before it replies, as QEMU does, so
 * a query-migrate sent right after it sees a status.  Repeats are not
 * announced twice.
 */
#include <string.h>
#include "agent.h"

void
vm_emit(struct agent_vm *vm, const char *event, json_object *data)
{
    if (vm->emit != NULL) {
        vm->emit(vm->emit_opaque, event, data);
    } else {
        json_object_put(data);
    }
}

void
vm_mig_status_set_locked(struct agent_vm *vm, const char *status)
{
    json_object *d;

    if (vm->mig_status != NULL && strcmp(vm->mig_status, status) == 0) {
        return;
    }
    vm->mig_status = status;
    d = json_object_new_object();
    json_object_object_add(d, "status", json_object_new_string(status));
    /* under the lock, so events come out in the order of the changes */
    vm_emit(vm, "MIGRATION", d);
}

void
vm_mig_status_set(struct agent_vm *vm, const char *status)
{
    pthread_mutex_lock(&vm->lock);
    vm_mig_status_set_locked(vm, status);
    pthread_mutex_unlock(&vm->lock);
}

/* clang-format off */
static const char *const from_engine[VMIG_ENGINE__STATUS_COUNT] = {
    [VMIG_ENGINE_NONE]      = NULL,
    [VMIG_ENGINE_SETUP]     = "setup",
    [VMIG_ENGINE_ACTIVE]    = "active",
    [VMIG_ENGINE_DEVICE]    = "active",
    [VMIG_ENGINE_COMPLETED] = "completed",
    [VMIG_ENGINE_FAILED]    = "failed",
    [VMIG_ENGINE_CANCELLED] = "cancelled",
    [VMIG_ENGINE_RECOVERING] = "recovering",
    [VMIG_ENGINE_UNKNOWN]   = "postmigrate-unknown",
};
/* clang-format on */

static bool
final(enum vmig_engine_status s)
{
    return s == VMIG_ENGINE_COMPLETED || s == VMIG_ENGINE_FAILED ||
           s == VMIG_ENGINE_CANCELLED;
}

void
vm_mig_status_engine(struct agent_vm *vm, enum vmig_engine_status s)
{
    const char *st =
        (unsigned int)s < VMIG_ENGINE__STATUS_COUNT ? from_engine[s] : NULL;

    if (st == NULL) {
        return;
    }
    pthread_mutex_lock(&vm->lock);
    /* once cancelling, only the end is news */
    if (vm->mig_status == NULL || strcmp(vm->mig_status, "cancelling") != 0 ||
        final(s)) {
        vm_mig_status_set_locked(vm, st);
    }
    pthread_mutex_unlock(&vm->lock);
}

const char *
vm_mig_status(struct agent_vm *vm)
{
    const char *s;

    pthread_mutex_lock(&vm->lock);
    s = vm->mig_status != NULL ? vm->mig_status : "none";
    pthread_mutex_unlock(&vm->lock);
    return s;
}
