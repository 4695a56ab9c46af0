/* SPDX-License-Identifier: MIT */
/*
 * accwork.c - the guest's accelerator workload: the vCPU, after each batch
 * of program steps, drives a vmig-acc device through its guest driver
 * (devices/acc/guest-driver.h) and the self-checking workload
 * (guest-work.h): deterministic compression/digest requests, every
 * completion checked against a reference computation, a done map and
 * counters - all of it in guest RAM, in the upper half (the ledger
 * program keeps the lower half).  BAR0 is reached through vfio-user region
 * accesses; the device DMAs straight into the guest RAM memfd it mapped.
 *
 * Nothing of the workload lives in the agent: after a migration the
 * destination's vCPU finds the driver and workload state in the RAM it
 * received and attaches new views to its own device.
 *
 * A device reset (x-vmig-device-reset; also in the middle of a migration)
 * returns the device to power-on: disabled, its queues forgotten.  The
 * guest notices STATUS.ENABLED clear, as a driver recovering from a
 * function reset, sets its queues up again and submits every unfinished
 * request again (acc_gwork_resubmit()), so each still completes exactly
 * once and the ledger verifies.
 *
 * Guest addresses: guestmap.c (driver state and rings at RAM/2,
 * workload at RAM/2 + RAM/8).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <vmig/log.h>
#include <vmig/vfu_client.h>
#include "agent.h"
#include "guest-driver.h"
#include "guest-work.h"

/* clang-format off */
static const struct acc_gdrv_config acc_cfg = {
    .qp_count = 4, .sq_size = 16, .cq_size = 32, .eq_size = 256,
    .aeq_size = 64,
};
/* clang-format on */
#define ACC_MAX_IN 4096u

static uint32_t
bar_read32(void *opaque, uint32_t off)
{
    struct agent_vfu *d = opaque;
    uint32_t v;

    if (vmig_vfu_client_region_read(d->c, 0, off, &v, 4) < 0) {
        return UINT32_MAX; /* as a PCI read of a vanished device */
    }
    return v;
}

static void
bar_write32(void *opaque, uint32_t off, uint32_t val)
{
    struct agent_vfu *d = opaque;

    if (vmig_vfu_client_region_write(d->c, 0, off, &val, 4) < 0) {
        d->bar_errors++;
    }
}

static const struct acc_bar_ops bar_ops = {
    .read32 = bar_read32,
    .write32 = bar_write32,
};

static uint64_t
drv_gpa(const struct agent_vm *vm)
{
    return guestmap_acc_drv(&vm->o);
}

static uint64_t
work_gpa(const struct agent_vm *vm)
{
    return guestmap_acc_work(&vm->o);
}

struct accwork {
    struct agent_vfu *dev;
    struct acc_gdrv drv;
    struct acc_gwork w;
    bool attached;
    /* the full ledger re-check, done once the workload is finished (guest
     * state no longer changes then) by accwork_report() */
    bool ledger_done;
    int ledger_ret;
    struct acc_gwork_state ledger_of; /* the state it was computed on */
    struct acc_gwork_ledger ledger;
    uint64_t resets; /* device resets this vCPU recovered from */
};

static struct agent_vfu *
find_acc(struct agent_vm *vm)
{
    for (unsigned int i = 0; i < vm->o.nvfu; i++) {
        if (strcmp(vm->vfu[i].spec.kind, "acc") == 0) {
            return &vm->vfu[i];
        }
    }
    return NULL;
}

/* Set up the workload in fresh guest RAM (the source's first run). */
static int
start(struct agent_vm *vm, struct accwork *a)
{
    uint64_t dg = drv_gpa(vm), wg = work_gpa(vm);
    int ret;

    if (acc_gdrv_mem_size(&acc_cfg) > wg - dg) {
        return -E2BIG;
    }
    ret = acc_gdrv_init(&a->drv, vm->ram, vm->o.ram_size, dg, &acc_cfg,
                        &bar_ops, a->dev);
    if (ret == 0) {
        ret = acc_gwork_init(&a->w, &a->drv, wg, vm->o.acc_requests, ACC_MAX_IN,
                             (uint32_t)vm->o.seed);
    }
    if (ret < 0) {
        vmig_log(vm->ctx, VMIG_LOG_ERR,
                 "%s: cannot start the accelerator workload (%llu "
                 "requests in %llu MiB of guest RAM): %s",
                 a->dev->spec.name, (unsigned long long)vm->o.acc_requests,
                 (unsigned long long)(vm->o.ram_size >> 20), strerror(-ret));
    }
    return ret;
}

/* The device forgot its queues (a reset): set them up again, with the
 * geometry in guest RAM, and queue every unfinished request again. */
static int
recover(struct agent_vm *vm, struct accwork *a)
{
    const struct acc_gdrv_state *st = a->drv.st;
    struct acc_gdrv_config cfg = {.qp_count = st->qp_count,
                                  .sq_size = st->sq_size,
                                  .cq_size = st->cq_size,
                                  .eq_size = st->eq_size,
                                  .aeq_size = st->aeq_size};
    int ret;

    ret = acc_gdrv_init(&a->drv, vm->ram, vm->o.ram_size, drv_gpa(vm), &cfg,
                        &bar_ops, a->dev);
    if (ret == 0) {
        ret = acc_gwork_resubmit(&a->w, &a->drv);
    }
    if (ret < 0) {
        vmig_log(vm->ctx, VMIG_LOG_ERR,
                 "%s: guest found the device reset and cannot set its "
                 "queues up again: %s",
                 a->dev->spec.name, strerror(-ret));
        return ret;
    }
    a->resets++;
    vmig_log(vm->ctx, VMIG_LOG_NOTICE,
             "%s: guest found the device reset; queues set up again, %d "
             "unfinished requests submitted again",
             a->dev->spec.name, ret);
    return 0;
}

int
accwork_step(struct agent_vm *vm)
{
    struct accwork *a = vm->acc;
    uint32_t status;
    int ret;

    /* a dead device server (devwatch.c): the guest waits on it in vain,
     * the rest of the VM goes on */
    if (a == NULL || vfudev_failed(a->dev)) {
        return 0;
    }
    if (!a->attached) {
        /* a workload in RAM (migrated here, or ours): attach to it */
        ret = acc_gdrv_attach(&a->drv, vm->ram, vm->o.ram_size, drv_gpa(vm),
                              &bar_ops, a->dev);
        if (ret == 0) {
            ret =
                acc_gwork_attach(&a->w, vm->ram, vm->o.ram_size, work_gpa(vm));
        } else if (vm->o.program && !vm->acc_started) {
            vm->acc_started = true;
            ret = start(vm, a);
        }
        if (ret < 0) {
            return ret;
        }
        a->attached = true;
    }
    if (acc_gwork_finished(&a->w)) {
        return 0;
    }
    status = bar_read32(a->dev, ACC_REG_STATUS);
    if (status != UINT32_MAX && !(status & ACC_STATUS_ENABLED)) {
        return recover(vm, a);
    }
    ret = acc_gwork_step(&a->w, &a->drv);
    return ret < 0 ? ret : 0;
}

int
accwork_new(struct agent_vm *vm)
{
    struct agent_vfu *d = find_acc(vm);

    if (d == NULL) {
        return 0;
    }
    vm->acc = calloc(1, sizeof(*vm->acc));
    if (vm->acc == NULL) {
        return -ENOMEM;
    }
    vm->acc->dev = d;
    return 0;
}

void
accwork_free(struct agent_vm *vm)
{
    if (vm->acc != NULL && vm->acc->attached) {
        acc_gwork_fini(&vm->acc->w);
    }
    free(vm->acc);
    vm->acc = NULL;
}

json_object *
accwork_report(struct agent_vm *vm, int *verdict)
{
    struct acc_gwork_ledger lg;
    struct acc_gwork w;
    json_object *o, *lo;
    uint64_t first_bad;
    int ret, lret;

    *verdict = 0;
    if (vm->acc == NULL) {
        return NULL;
    }
    o = json_object_new_object();
    ret = acc_gwork_attach(&w, vm->ram, vm->o.ram_size, work_gpa(vm));
    if (ret < 0) {
        json_object_object_add(o, "started", json_object_new_boolean(false));
        return o;
    }
    json_object_object_add(o, "started", json_object_new_boolean(true));
    json_object_object_add(o, "requests",
                           json_object_new_int64((int64_t)w.st->total));
    json_object_object_add(o, "issued",
                           json_object_new_int64((int64_t)w.st->issued));
    json_object_object_add(o, "completed",
                           json_object_new_int64((int64_t)w.st->completed));
    json_object_object_add(o, "bad", json_object_new_int64((int64_t)w.st->bad));
    json_object_object_add(o, "duplicates",
                           json_object_new_int64((int64_t)w.st->dup));
    json_object_object_add(o, "finished",
                           json_object_new_boolean(acc_gwork_finished(&w)));
    json_object_object_add(o, "resets",
                           json_object_new_int64((int64_t)vm->acc->resets));
    ret = acc_gwork_verify(&w);
    if (ret == -EAGAIN) {
        /* not finished: every completion so far must be right */
        ret = w.st->bad == 0 && w.st->dup == 0 ? 0 : -EBADMSG;
    }
    /* every digest once the workload is done (once: nothing changes after
     * that); the counts on every call before */
    if (vm->acc->ledger_done &&
        memcmp(&vm->acc->ledger_of, w.st, sizeof(*w.st)) == 0) {
        lg = vm->acc->ledger;
        lret = vm->acc->ledger_ret;
    } else {
        lret = acc_gwork_ledger_check(&w, acc_gwork_finished(&w), &lg);
        if (acc_gwork_finished(&w)) {
            vm->acc->ledger = lg;
            vm->acc->ledger_ret = lret;
            vm->acc->ledger_of = *w.st;
            vm->acc->ledger_done = true;
        }
    }
    lo = json_object_new_object();
    json_object_object_add(lo, "entries",
                           json_object_new_int64((int64_t)lg.entries));
    json_object_object_add(lo, "checked",
                           json_object_new_int64((int64_t)lg.checked));
    json_object_object_add(lo, "mismatches",
                           json_object_new_int64((int64_t)lg.mismatch));
    json_object_object_add(lo, "digests",
                           json_object_new_boolean(acc_gwork_finished(&w)));
    json_object_object_add(lo, "verified", json_object_new_boolean(lret == 0));
    first_bad = w.st->first_bad;
    if (ret == 0 && lret < 0) {
        ret = lret;
        first_bad = lg.first_bad; /* the ledger's first mismatch */
    }
    json_object_object_add(o, "verified", json_object_new_boolean(ret == 0));
    if (ret < 0) {
        char why[96];

        snprintf(why, sizeof(why), "request %llu: status %u",
                 (unsigned long long)first_bad,
                 first_bad == w.st->first_bad ? w.st->first_bad_status : 0u);
        json_object_object_add(o, "first-bad", json_object_new_string(why));
        *verdict = ret;
    }
    json_object_object_add(o, "ledger", lo); /* last: a nested object */
    acc_gwork_fini(&w);
    return o;
}
