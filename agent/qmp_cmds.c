/* SPDX-License-Identifier: MIT */
/*
 * qmp_cmds.c - the QMP commands: QEMU's (query-status, query-migrate,
 * migrate, migrate_cancel, migrate-set-parameters, ...) with QEMU's
 * members and messages, and vmig's own x-vmig-*.  Each command gets
 * arguments already checked against its table (struct arg_spec), so it
 * only does its work; a command that fails changes nothing.  See
 * docs/agent.md for what each returns.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/log.h>
#include <vmig/version.h>
#include "qmp.h"

static json_object *
cmd_query_status(struct cmd_ctx *x)
{
    json_object *o = json_object_new_object();
    const char *rs = vm_runstate(x->vm);

    json_object_object_add(o, "status", json_object_new_string(rs));
    json_object_object_add(o, "singlestep", json_object_new_boolean(0));
    json_object_object_add(o, "running",
                           json_object_new_boolean(strcmp(rs, "running") == 0));
    return o;
}

json_object *
qmp_version(void)
{
    json_object *o = json_object_new_object(), *q = json_object_new_object();

    json_object_object_add(q, "major", json_object_new_int(VMIG_VERSION_MAJOR));
    json_object_object_add(q, "minor", json_object_new_int(VMIG_VERSION_MINOR));
    json_object_object_add(q, "micro", json_object_new_int(VMIG_VERSION_PATCH));
    json_object_object_add(o, "qemu", q);
    json_object_object_add(o, "package",
                           json_object_new_string("vmig " VMIG_VERSION_STRING));
    return o;
}

/* Precopy figures of query-migrate (see docs/agent.md). */
static json_object *
precopy_stats(const struct vmig_engine_stats *st)
{
    json_object *p = json_object_new_object();
    unsigned int restarts = 0;

    for (unsigned int i = 0; i < st->ndevices; i++) {
        restarts += st->dev[i].restarts;
    }
    json_object_object_add(p, "enabled", json_object_new_boolean(st->precopy));
    json_object_object_add(p, "iterations",
                           json_object_new_int64(st->iterations));
    json_object_object_add(p, "precopy-bytes",
                           json_object_new_int64((int64_t)st->precopy_bytes));
    json_object_object_add(p, "stopcopy-bytes",
                           json_object_new_int64((int64_t)st->stopcopy_bytes));
    json_object_object_add(p, "dirty-pages",
                           json_object_new_int64((int64_t)st->dirty_pages));
    json_object_object_add(
        p, "estimated-stopcopy-bytes",
        json_object_new_int64((int64_t)st->est_stopcopy_bytes));
    json_object_object_add(
        p, "expected-downtime",
        json_object_new_int64((int64_t)st->expected_downtime_ms));
    json_object_object_add(
        p, "switchover-ack-ms",
        json_object_new_int64((int64_t)st->switchover_ack_ms));
    json_object_object_add(p, "device-restarts",
                           json_object_new_int64(restarts));
    /* the iteration or time cap switched over although the estimate
     * never fit downtime-limit: the downtime may exceed it */
    json_object_object_add(p, "forced-switchover",
                           json_object_new_boolean(st->forced_switchover));
    return p;
}

/* The last migration channel, when there is one: "x-vmig-tls":
 * {"enabled": false} for plaintext, or the TLS session. */
static void
tls_stats(struct agent_vm *vm, json_object *o)
{
    json_object *t;
    struct vmig_chan_info ci;

    if (!vm_chan_info(vm, &ci)) {
        return;
    }
    t = json_object_new_object();
    json_object_object_add(t, "enabled", json_object_new_boolean(ci.tls));
    if (ci.tls) {
        json_object_object_add(t, "version",
                               json_object_new_string(ci.version));
        json_object_object_add(t, "cipher", json_object_new_string(ci.cipher));
        json_object_object_add(t, "auth",
                               json_object_new_string(ci.psk ? "psk" : "x509"));
        json_object_object_add(t, "peer", json_object_new_string(ci.peer));
        json_object_object_add(t, "ktls", json_object_new_boolean(ci.ktls_tx));
    }
    json_object_object_add(o, "x-vmig-tls", t);
}

static void
add_int(json_object *o, const char *key, uint64_t v)
{
    json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

/* MigrationStats (QEMU's "ram"): pages are 4 KiB; vmig has no postcopy
 * or xbzrle, so those counters are 0; multifd-bytes are the bytes on the
 * extra connections of multifd-channels (device state included). */
static json_object *
ram_info(const struct vmig_engine_stats *st, bool completed)
{
    json_object *ram = json_object_new_object();
    uint64_t pages = st->ram_transferred / VMIG_MP_PAGE_SIZE;
    uint64_t normal =
        pages > st->ram_zero_pages ? pages - st->ram_zero_pages : 0;

    add_int(ram, "transferred", st->ram_transferred);
    add_int(ram, "remaining", completed ? 0 : st->ram_remaining);
    add_int(ram, "total", st->ram_total);
    add_int(ram, "duplicate", st->ram_zero_pages);
    add_int(ram, "skipped", 0); /* QEMU's legacy member, always 0 */
    add_int(ram, "normal", normal);
    add_int(ram, "normal-bytes", normal * VMIG_MP_PAGE_SIZE);
    json_object_object_add(ram, "mbps", json_object_new_double(st->mbps));
    add_int(ram, "dirty-sync-count", st->pass);
    add_int(ram, "postcopy-requests", 0);
    add_int(ram, "page-size", VMIG_MP_PAGE_SIZE);
    add_int(ram, "multifd-bytes", st->channel_bytes);
    json_object_object_add(
        ram, "pages-per-second",
        json_object_new_double(st->mbps * 1e6 / 8 / VMIG_MP_PAGE_SIZE));
    add_int(ram, "postcopy-bytes", 0);
    return ram;
}

/* vmig's own members: per device, precopy, role, the engine's phase. */
static void
x_vmig_info(json_object *o, const struct vmig_engine_stats *st)
{
    json_object *devs = json_object_new_array();

    for (unsigned int i = 0; i < st->ndevices; i++) {
        const struct vmig_engine_dev_stats *dv = &st->dev[i];
        json_object *d = json_object_new_object();

        json_object_object_add(d, "name", json_object_new_string(dv->name));
        json_object_object_add(
            d, "state", json_object_new_string(vmig_state_name(dv->state)));
        add_int(d, "transferred", dv->bytes);
        add_int(d, "config-bytes", dv->config_len);
        add_int(d, "precopy-bytes", dv->precopy_bytes);
        add_int(d, "restarts", dv->restarts);
        if (dv->verdict >= 0) {
            json_object_object_add(d, "compatible",
                                   json_object_new_boolean(dv->verdict));
        }
        if (dv->verdict == 0) {
            json_object_object_add(d, "reason",
                                   json_object_new_string(dv->reason));
        }
        json_object_array_add(devs, d);
    }
    json_object_object_add(o, "x-vmig-devices", devs);
    json_object_object_add(o, "x-vmig-precopy", precopy_stats(st));
    if (st->first_dev_byte_us > 0) {
        /* a source: vCPU pause -> first stop-copy device data frame */
        add_int(o, "x-vmig-first-device-byte-us", st->first_dev_byte_us);
    }
    if (st->zstd_raw_bytes > 0) {
        /* a source that compressed: the payload of its RAM and device
         * data frames, and what they took on the wire */
        json_object *z = json_object_new_object();

        json_object_object_add(z, "method", json_object_new_string("zstd"));
        add_int(z, "raw-bytes", st->zstd_raw_bytes);
        add_int(z, "wire-bytes", st->zstd_bytes);
        json_object_object_add(o, "x-vmig-compression", z);
    }
    json_object_object_add(
        o, "x-vmig-role",
        json_object_new_string(
            st->role == VMIG_ENGINE_ROLE_SOURCE ? "source" : "destination"));
    json_object_object_add(
        o, "x-vmig-phase",
        json_object_new_string(vmig_engine_status_name(st->status)));
}

/*
 * query-migrate, member for member as QEMU fills MigrationInfo: nothing
 * before any migration; only the status in "setup"; times, "ram" and
 * "vfio" while active or cancelling and once completed ("downtime" then,
 * "expected-downtime" before); the status and "error-desc" once failed or
 * cancelled (and, vmig's, "postmigrate-unknown": what to do).  vmig adds
 * its x-vmig-* members whenever the engine has
 * figures (a refused migration's per-device reasons are there).
 */
static json_object *
cmd_query_migrate(struct cmd_ctx *x)
{
    const char *status = vm_mig_status(x->vm);
    struct vmig_engine_stats *st;
    json_object *o = json_object_new_object(), *vfio;
    bool completed = strcmp(status, "completed") == 0;
    bool running =
        strcmp(status, "active") == 0 || strcmp(status, "cancelling") == 0;
    bool early;
    char err[600];

    if (strcmp(status, "none") == 0) {
        return o; /* QEMU answers {} before any migration */
    }
    json_object_object_add(o, "status", json_object_new_string(status));
    if (strcmp(status, "setup") == 0) {
        return o;
    }
    st = malloc(sizeof(*st));
    if (st == NULL) {
        json_object_put(o);
        snprintf(x->err, sizeof(x->err), "out of memory");
        return NULL;
    }
    vmig_engine_stats(x->vm->eng, st);
    if ((running || completed) && st->status != VMIG_ENGINE_NONE) {
        add_int(o, "setup-time", st->setup_time_ms);
        add_int(o, "total-time", st->total_time_ms);
        if (completed && st->role == VMIG_ENGINE_ROLE_SOURCE) {
            add_int(o, "downtime", st->downtime_ms);
        } else if (!completed) {
            add_int(o, "expected-downtime", st->expected_downtime_ms);
        }
        json_object_object_add(o, "ram", ram_info(st, completed));
        vfio = json_object_new_object();
        add_int(vfio, "transferred", st->dev_total);
        json_object_object_add(o, "vfio", vfio);
    }
    early = vm_connect_error(x->vm, err, sizeof(err));
    if (strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0) {
        if (early) {
            /* it ended before reaching the engine (no connection, TLS
             * refused): what the engine holds is an earlier migration */
            json_object_object_add(o, "error-desc",
                                   json_object_new_string(err));
        } else if (st->status == VMIG_ENGINE_FAILED ||
                   st->status == VMIG_ENGINE_CANCELLED) {
            json_object_object_add(o, "error-desc",
                                   json_object_new_string(st->error));
        }
    }
    if (st->status == VMIG_ENGINE_UNKNOWN && st->error[0] != '\0') {
        /* vmig's: why the outcome is unknown and what to do */
        json_object_object_add(o, "error-desc",
                               json_object_new_string(st->error));
    }
    if (st->status != VMIG_ENGINE_NONE && !early) {
        x_vmig_info(o, st);
    }
    tls_stats(x->vm, o);
    free(st);
    return o;
}

static const struct arg_spec migrate_args[] = {
    {.name = "uri", .type = json_type_string, .required = true},
    {.name = "detach", .type = json_type_boolean},
    {.name = "resume", .type = json_type_boolean},
    /* vmig: migration parameters applied only if the migration starts
     * (what `vmig migrate --max-bandwidth ...` sends) */
    {.name = "x-vmig-parameters",
     .type = json_type_object,
     .sub = qmp_param_args},
    {.name = NULL},
};

/*
 * All or nothing: the arguments were checked, the parameters are staged
 * on a copy, and vm_migrate() commits them only when the migration
 * starts, so a refused `migrate` (one already running, a VM that left)
 * changes no parameter.
 */
static json_object *
cmd_migrate(struct cmd_ctx *x)
{
    json_object *params = NULL;
    struct mig_params p;

    if (qmp_arg_bool(x->args, "resume", false)) {
        snprintf(x->err, sizeof(x->err),
                 "Cannot resume if there is no paused migration");
        return NULL;
    }
    vm_params_get(x->vm, &p);
    if (json_object_object_get_ex(x->args, "x-vmig-parameters", &params)) {
        qmp_params_stage(&p, params);
    }
    if (vm_migrate(x->vm, qmp_arg_str(x->args, "uri"), &p, x->err,
                   sizeof(x->err)) < 0) {
        return NULL;
    }
    return json_object_new_object();
}

static json_object *
cmd_migrate_cancel(struct cmd_ctx *x)
{
    (void)vm_cancel(x->vm);
    return json_object_new_object();
}

static const struct arg_spec recover_args[] = {
    {.name = "destination-gone", .type = json_type_boolean},
    {.name = NULL},
};

/*
 * vmig's: the last outgoing migration's outcome is unknown (status
 * postmigrate-unknown: GO was sent, the destination's answer lost): ask
 * the destination again, or with destination-gone resume the VM here.
 */
static json_object *
cmd_migrate_recover(struct cmd_ctx *x)
{
    json_object *v;
    bool gone = x->args != NULL &&
                json_object_object_get_ex(x->args, "destination-gone", &v) &&
                json_object_get_boolean(v);

    return vm_recover(x->vm, gone, x->err, sizeof(x->err)) < 0
               ? NULL
               : json_object_new_object();
}

static const struct arg_spec uri_args[] = {
    {.name = "uri", .type = json_type_string, .required = true},
    {.name = NULL},
};

static json_object *
cmd_migrate_incoming(struct cmd_ctx *x)
{
    if (vm_start_incoming(x->vm, qmp_arg_str(x->args, "uri"), x->err,
                          sizeof(x->err)) < 0) {
        return NULL;
    }
    return json_object_new_object();
}

static json_object *
cmd_set_params(struct cmd_ctx *x)
{
    if (qmp_params_apply(x->vm, x->args, x->err, sizeof(x->err)) < 0) {
        return NULL;
    }
    return json_object_new_object();
}

static json_object *
cmd_query_params(struct cmd_ctx *x)
{
    struct mig_params p;
    json_object *o;

    vm_params_get(x->vm, &p);
    o = qmp_params_query(&p);
    /* read-only: false when a device cannot log its DMA */
    json_object_object_add(o, "x-vmig-ram-precopy",
                           json_object_new_boolean(x->vm->ram_precopy));
    if (p.eng.test_one_phase_stop) {
        /* VMIG_TEST_ONE_PHASE_STOP=1: shown only when on */
        json_object_object_add(o, "x-vmig-test-one-phase-stop",
                               json_object_new_boolean(1));
    }
    return o;
}

static const struct arg_spec reset_args[] = {
    {.name = "device", .type = json_type_string, .required = true},
    {.name = NULL},
};

static const struct arg_spec del_args[] = {
    {.name = "id", .type = json_type_string, .required = true},
    {.name = NULL},
};

/* QEMU's device_del for a vfio-user device (DEVICE_DELETED follows). */
static json_object *
cmd_device_del(struct cmd_ctx *x)
{
    int ret = vm_device_del(x->vm, qmp_arg_str(x->args, "id"), x->err,
                            sizeof(x->err));

    if (ret == -ENODEV) {
        x->cls = "DeviceNotFound";
    }
    return ret < 0 ? NULL : json_object_new_object();
}

static json_object *
cmd_device_reset(struct cmd_ctx *x)
{
    int ret = vm_device_reset(x->vm, qmp_arg_str(x->args, "device"), x->err,
                              sizeof(x->err));

    if (ret == -ENODEV) {
        x->cls = "DeviceNotFound"; /* QEMU's class for an unknown device */
    }
    return ret < 0 ? NULL : json_object_new_object();
}

/*
 * Migration capabilities: QEMU's "events" (MIGRATION events are always
 * sent here; management layers that set it keep working), and
 * "x-vmig-test-one-phase-stop", a test and diagnostic knob (the engine's
 * test_one_phase_stop, as VMIG_TEST_ONE_PHASE_STOP=1 sets it at start):
 * the switchover skips the P2P phase (RUNNING_P2P / PRE_COPY_P2P) and
 * stops and saves each device in turn while the others still run, which
 * loses the P2P writes a running device makes into one already saved.
 * It exists to show what the two-phase stop buys; never use it otherwise.
 */
#define CAP_ONE_PHASE "x-vmig-test-one-phase-stop"

static void
add_cap(json_object *a, const char *name, bool on)
{
    json_object *c = json_object_new_object();

    json_object_object_add(c, "capability", json_object_new_string(name));
    json_object_object_add(c, "state", json_object_new_boolean(on));
    json_object_array_add(a, c);
}

static json_object *
cmd_query_caps(struct cmd_ctx *x)
{
    json_object *a = json_object_new_array();
    struct mig_params p;

    vm_params_get(x->vm, &p);
    add_cap(a, "events", true);
    add_cap(a, CAP_ONE_PHASE, p.eng.test_one_phase_stop);
    return a;
}

static const char *const cap_names[] = {"events", CAP_ONE_PHASE, NULL};

static const struct arg_spec cap_args[] = {
    {.name = "capability",
     .type = json_type_string,
     .required = true,
     .values = cap_names},
    {.name = "state", .type = json_type_boolean, .required = true},
    {.name = NULL},
};

static const struct arg_spec set_caps_args[] = {
    {.name = "capabilities",
     .type = json_type_array,
     .required = true,
     .sub = cap_args},
    {.name = NULL},
};

/* Every element was checked against cap_args.  "events" is always on,
 * whatever is asked (a no-op, accepted at any time); a change of the test
 * knob is refused while a migration runs, as QEMU refuses capabilities
 * then (the migration took its parameters when it started).  All or
 * nothing: the whole list is applied at once. */
static json_object *
cmd_set_caps(struct cmd_ctx *x)
{
    json_object *caps = json_object_object_get(x->args, "capabilities");
    struct mig_params p;
    bool busy, knob = false;

    vm_params_get(x->vm, &p);
    for (size_t i = 0; i < json_object_array_length(caps); i++) {
        json_object *c = json_object_array_get_idx(caps, i);
        const char *name =
            json_object_get_string(json_object_object_get(c, "capability"));

        if (strcmp(name, CAP_ONE_PHASE) == 0) {
            p.eng.test_one_phase_stop =
                json_object_get_boolean(json_object_object_get(c, "state"));
            knob = true;
        }
    }
    if (!knob) {
        return json_object_new_object();
    }
    pthread_mutex_lock(&x->vm->lock);
    busy = x->vm->migrating;
    pthread_mutex_unlock(&x->vm->lock);
    if (busy) {
        snprintf(x->err, sizeof(x->err),
                 "There's a migration process in progress: set %s before "
                 "migrate",
                 CAP_ONE_PHASE);
        return NULL;
    }
    if (p.eng.test_one_phase_stop) {
        vmig_log(x->vm->ctx, VMIG_LOG_WARNING,
                 "*** %s: TEST ONLY, UNSAFE: the next migration stops "
                 "devices one at a time straight to STOP_COPY, so a peer "
                 "still running may DMA into one already saved and that "
                 "write is LOST ***",
                 CAP_ONE_PHASE);
    }
    vm_params_set(x->vm, &p);
    return json_object_new_object();
}

static json_object *
cmd_query_devices(struct cmd_ctx *x)
{
    struct agent_vm *vm = x->vm;
    json_object *a = json_object_new_array();

    for (unsigned int i = 0; i < vm->o.ndev; i++) {
        json_object *d = json_object_new_object();
        char name[16], flags[64], dig[20];

        snprintf(name, sizeof(name), "dev%u", i);
        json_object_object_add(d, "name", json_object_new_string(name));
        json_object_object_add(d, "type", json_object_new_string("memdev"));
        json_object_object_add(d, "vendor",
                               json_object_new_int(VMIG_MEMDEV_VENDOR));
        json_object_object_add(d, "device",
                               json_object_new_int(VMIG_MEMDEV_DEVICE));
        json_object_object_add(d, "revision",
                               json_object_new_int(vm->o.dev_revision));
        json_object_object_add(
            d, "migration-flags",
            json_object_new_string(
                vmig_flags_format(VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_P2P,
                                  flags, sizeof(flags))));
        json_object_object_add(d, "state",
                               json_object_new_string(vmig_state_name(
                                   vmig_memdev_state(vm->dev[i]))));
        json_object_object_add(d, "state-size",
                               json_object_new_int64((int64_t)vm->o.dev_state));
        json_object_object_add(
            d, "work-done",
            json_object_new_int64((int64_t)vmig_memdev_work_done(vm->dev[i])));
        snprintf(dig, sizeof(dig), "%016llx",
                 (unsigned long long)vmig_memdev_digest(vm->dev[i]));
        json_object_object_add(d, "digest", json_object_new_string(dig));
        json_object_array_add(a, d);
    }
    for (unsigned int i = 0; i < vm->o.nvfu; i++) {
        if (!__atomic_load_n(&vm->vfu[i].removed, __ATOMIC_ACQUIRE)) {
            json_object_array_add(a, vfudev_describe(vm, i));
        }
    }
    return a;
}

static json_object *
cmd_check_compat(struct cmd_ctx *x)
{
    struct vmig_engine_check *chk = malloc(sizeof(*chk));
    json_object *o, *devs;

    if (chk == NULL) {
        snprintf(x->err, sizeof(x->err), "out of memory");
        return NULL;
    }
    if (vm_check(x->vm, qmp_arg_str(x->args, "uri"), chk, x->err,
                 sizeof(x->err)) < 0) {
        free(chk);
        return NULL;
    }
    o = json_object_new_object();
    json_object_object_add(o, "compatible",
                           json_object_new_boolean(chk->status == 0));
    if (chk->status != 0) {
        json_object_object_add(o, "reason",
                               json_object_new_string(chk->reason));
    }
    devs = json_object_new_array();
    for (unsigned int i = 0; i < chk->ndevices; i++) {
        json_object *d = json_object_new_object();

        json_object_object_add(d, "name",
                               json_object_new_string(chk->dev[i].name));
        json_object_object_add(
            d, "compatible", json_object_new_boolean(chk->dev[i].verdict == 1));
        if (chk->dev[i].verdict != 1) {
            json_object_object_add(d, "reason",
                                   json_object_new_string(chk->dev[i].reason));
        }
        json_object_array_add(devs, d);
    }
    json_object_object_add(o, "devices", devs);
    free(chk);
    return o;
}

static json_object *
cmd_query_guest(struct cmd_ctx *x)
{
    char why[256] = "";
    uint64_t steps = 0;
    json_object *o, *acc = NULL, *ft = NULL;
    int ret = vm_guest_report(x->vm, &steps, why, sizeof(why), &acc, &ft);

    uint64_t cap = vm_guest_capacity(x->vm);

    o = json_object_new_object();
    json_object_object_add(o, "steps", json_object_new_int64((int64_t)steps));
    /* a program that filled its ledger has finished: its steps no longer
     * move, which is not a stalled vCPU (the devices' workloads go on) */
    json_object_object_add(o, "program-steps",
                           json_object_new_int64((int64_t)cap));
    json_object_object_add(
        o, "program-finished",
        json_object_new_boolean(cap != 0 && steps >= cap && ret != -EBUSY));
    if (ft != NULL) {
        json_object_object_add(o, "flowtab", ft);
    }
    if (acc != NULL) {
        json_object_object_add(o, "accelerator", acc);
    }
    json_object_object_add(o, "verified", json_object_new_boolean(ret == 0));
    if (ret == -EBUSY) {
        /* a migration still owns the vCPU: ask again once it ended */
        json_object_object_add(o, "busy", json_object_new_boolean(1));
    }
    if (ret < 0) {
        json_object_object_add(
            o, "error", json_object_new_string(why[0] ? why : strerror(-ret)));
    }
    return o;
}

static json_object *
cmd_query_version(struct cmd_ctx *x)
{
    (void)x;
    return qmp_version();
}

static json_object *cmd_query_commands(struct cmd_ctx *x);

/* The server quits once the reply is out (SHUTDOWN follows it, as in
 * QEMU). */
static json_object *
cmd_quit(struct cmd_ctx *x)
{
    x->quit = true;
    return json_object_new_object();
}

static const char *const qmp_caps[] = {"oob", NULL};

static const struct arg_spec capabilities_args[] = {
    {.name = "enable", .type = json_type_array, .values = qmp_caps},
    {.name = NULL},
};

/* clang-format off */
static const struct cmd_desc cmd_table[] = {
    /* handled by the server core (connection state); listed for its
     * arguments and query-commands */
    {"qmp_capabilities",           NULL,               capabilities_args, 0},
    /* out of band too (vmig only: they just read), so `vmig cancel` and
     * `vmig status` never wait for a busy monitor */
    {"query-status",               cmd_query_status,   NULL, CMD_ALLOW_OOB},
    {"query-version",              cmd_query_version,  NULL,          0},
    {"query-commands",             cmd_query_commands, NULL,          0},
    {"query-migrate",              cmd_query_migrate,  NULL, CMD_ALLOW_OOB},
    {"query-migrate-parameters",   cmd_query_params,   NULL,          0},
    {"migrate",                    cmd_migrate,        migrate_args,  0},
    /* out of band, so a busy monitor never delays a cancel */
    {"migrate_cancel",             cmd_migrate_cancel, NULL, CMD_ALLOW_OOB},
    {"migrate-cancel",             cmd_migrate_cancel, NULL, CMD_ALLOW_OOB},
    {"migrate-incoming",           cmd_migrate_incoming, uri_args,    0},
    {"x-vmig-migrate-recover",     cmd_migrate_recover, recover_args, 0},
    {"migrate-set-parameters",     cmd_set_params,     qmp_param_args, 0},
    {"query-migrate-capabilities", cmd_query_caps,     NULL,          0},
    {"migrate-set-capabilities",   cmd_set_caps,       set_caps_args, 0},
    {"x-vmig-query-devices",       cmd_query_devices,  NULL,          0},
    {"x-vmig-check-compat",        cmd_check_compat,   uri_args,      0},
    {"x-vmig-query-guest",         cmd_query_guest,    NULL,          0},
    {"x-vmig-device-reset",        cmd_device_reset,   reset_args,    0},
    {"device_del",                 cmd_device_del,     del_args,      0},
    {"quit",                       cmd_quit,           NULL,          0},
};
/* clang-format on */

#define NCMDS (sizeof(cmd_table) / sizeof(cmd_table[0]))

static json_object *
cmd_query_commands(struct cmd_ctx *x)
{
    json_object *a = json_object_new_array();

    (void)x;
    for (size_t i = 0; i < NCMDS; i++) {
        json_object *d = json_object_new_object();

        json_object_object_add(d, "name",
                               json_object_new_string(cmd_table[i].name));
        json_object_array_add(a, d);
    }
    return a;
}

const struct cmd_desc *
qmp_cmd_find(const char *name)
{
    for (size_t i = 0; i < NCMDS; i++) {
        if (strcmp(cmd_table[i].name, name) == 0) {
            return &cmd_table[i];
        }
    }
    return NULL;
}

size_t
qmp_cmd_count(void)
{
    return NCMDS;
}

const struct cmd_desc *
qmp_cmd_at(size_t i)
{
    return i < NCMDS ? &cmd_table[i] : NULL;
}
