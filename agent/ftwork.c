/* SPDX-License-Identifier: MIT */
/*
 * ftwork.c - the guest's network traffic on its flowtab devices: the vCPU,
 * after each batch of program steps, posts packets through the flowtab
 * guest driver (devices/flowtab/ft_guest.h) and checks every completion
 * (in order, once, status OK, the flow's packet and byte counters equal to
 * what it sent).  The device DMAs completions and statistics into guest
 * RAM and its flow table changes with every packet, which is what precopy
 * has to keep up with.
 *
 * Guest RAM: one slot of GUESTMAP_FT_SLOT bytes per flowtab device, right
 * after the ledger program (guestmap.c): a small header of our own
 * (how often the device was found reset, and the counters from before)
 * then the driver area.  Everything lives in guest RAM, so a migration
 * carries the workload and the destination's vCPU attaches to it.
 *
 * A device reset (x-vmig-device-reset; also in the middle of a
 * migration, whose data session it then ends with an error) returns the
 * device to power-on: ring processing off, flow table empty.  The guest notices
 * STATUS.ENABLED clear, as a driver recovering from a function reset,
 * and formats its driver area again: its expectations restart from zero
 * as the device's counters do, so checking stays exact.
 *
 * P2P: a device given a peer (--device flowtab,peer=NAME) gets every
 * FT_FWD_EVERY-th packet flagged FWD, so the two devices post records
 * into each other all the time.  The report counts what the devices'
 * statistics blocks say was sent (p2p_tx) and received (p2p_rx).  Sent
 * records are posted writes, some in flight at any moment, so the report
 * first quiesces P2P as a migration's first phase does: every device with
 * a peer to RUNNING_P2P (each step returns once its writes in flight have
 * landed, and no new one starts), the counters read, then back to
 * RUNNING.  Summed over the VM, sent minus received is then exactly the
 * records lost (zero unless a device refused a peer's write because it
 * was already stopped - what the two-phase device stop prevents).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/log.h>
#include <vmig/vfu_client.h>
#include "agent.h"
#include "ft_guest.h"

#define FT_HDR_BYTES 4096u
#define FT_RING 256u
#define FT_FLOWS 64u
#define FT_BATCH 16u
/* with a peer, more per step: P2P traffic flows hard, so records are
 * always in flight (which is what a migration must not lose) */
#define FT_BATCH_P2P 128u
#define FT_FWD_EVERY 1u /* with a peer: every packet is forwarded */
/* records sent to the peer and not yet counted there, at most: the
 * driver's end-to-end flow control, so the device's queue of posted
 * writes (64 Ki) never fills and drops one */
#define FT_P2P_WINDOW 16384u
#define FTW_MAGIC 0x4b524f5754465476ull /* "vFTWORK" */

/* At the start of each slot, in guest RAM. */
struct ftw_hdr {
    uint64_t magic;
    uint64_t resets;     /* device resets the guest recovered from */
    uint64_t completed;  /* completions checked before the last reset */
    uint64_t posted;     /* packets posted before the last reset */
    uint64_t reg_errors; /* failed register accesses */
    uint64_t lost;       /* outstanding packets a reset dropped */
    uint64_t bad;        /* wrong completions before the last reset */
    uint64_t p2p_tx;     /* the device's p2p_tx before the last reset */
    uint64_t p2p_rx;     /* the device's p2p_rx before the last reset */
};

struct ftdev {
    struct agent_vfu *dev;
    struct ft_guest g;
    bool attached;
    bool started;
    int peer; /* index of the peer's ftdev, -1 without */
};

struct ftwork {
    unsigned int n;
    struct ftdev d[AGENT_MAX_DEV];
};

static uint64_t
slot_gpa(const struct agent_vm *vm, unsigned int i)
{
    return guestmap_ft_slot(&vm->o, i);
}

static struct ftw_hdr *
hdr_of(struct agent_vm *vm, unsigned int i)
{
    return (struct ftw_hdr *)(void *)(vm->ram + slot_gpa(vm, i));
}

static int
reg_read(void *opaque, uint32_t off, uint32_t *val)
{
    struct agent_vfu *d = opaque;

    return vmig_vfu_client_region_read(d->c, 0, off, val, 4);
}

static int
reg_write(void *opaque, uint32_t off, uint32_t val)
{
    struct agent_vfu *d = opaque;

    return vmig_vfu_client_region_write(d->c, 0, off, &val, 4);
}

static int
format(struct agent_vm *vm, unsigned int i, struct ftdev *f)
{
    struct ft_guest_regs regs = {reg_read, reg_write, f->dev};

    return ft_guest_init(&f->g, vm->ram, vm->o.ram_size,
                         slot_gpa(vm, i) + FT_HDR_BYTES, FT_RING, FT_FLOWS,
                         vm->o.seed * 131 + i + 1, &regs);
}

static int
attach(struct agent_vm *vm, unsigned int i, struct ftdev *f)
{
    struct ft_guest_regs regs = {reg_read, reg_write, f->dev};
    struct ftw_hdr *h = hdr_of(vm, i);
    int ret;

    if (h->magic == FTW_MAGIC) {
        ret = ft_guest_attach(&f->g, vm->ram, vm->o.ram_size,
                              slot_gpa(vm, i) + FT_HDR_BYTES, &regs);
        if (ret == 0) {
            return 0;
        }
    }
    if (!vm->o.program || f->started) {
        return -EAGAIN; /* a destination: nothing migrated here yet */
    }
    f->started = true;
    memset(h, 0, sizeof(*h));
    ret = format(vm, i, f);
    if (ret < 0) {
        vmig_log(vm->ctx, VMIG_LOG_ERR,
                 "%s: cannot start the flowtab guest traffic: %s",
                 f->dev->spec.name, strerror(-ret));
        return ret;
    }
    h->magic = FTW_MAGIC;
    return 0;
}

/* The device forgot its ring (a reset): start over, as a driver would. */
static int
recover(struct agent_vm *vm, unsigned int i, struct ftdev *f)
{
    struct ftw_hdr *h = hdr_of(vm, i);
    uint64_t completed = f->g.a->completed, posted = f->g.a->posted;
    uint64_t bad = f->g.a->bad;
    uint64_t tx = f->g.stats->p2p_tx, rx = f->g.stats->p2p_rx;
    uint32_t outstanding = ft_guest_outstanding(&f->g);
    int ret = format(vm, i, f);

    if (ret < 0) {
        return ret;
    }
    h->resets++;
    h->completed += completed;
    h->posted += posted;
    h->lost += outstanding;
    h->bad += bad;
    h->p2p_tx += tx;
    h->p2p_rx += rx;
    vmig_log(vm->ctx, VMIG_LOG_NOTICE,
             "%s: guest found the device reset; ring set up again (%u "
             "packets in flight dropped)",
             f->dev->spec.name, outstanding);
    return 0;
}

/* P2P records sent by @i and counted by its peer, over every reset */
static uint64_t
p2p_total(struct agent_vm *vm, unsigned int i, bool rx)
{
    const struct ftdev *f = &vm->ft->d[i];
    const struct ftw_hdr *h = hdr_of(vm, i);

    if (!f->attached) {
        return 0;
    }
    return rx ? h->p2p_rx + f->g.stats->p2p_rx : h->p2p_tx + f->g.stats->p2p_tx;
}

/* Forward every FT_FWD_EVERY-th packet while fewer than FT_P2P_WINDOW
 * records are in flight to the peer; 0 (none) without a peer. */
static unsigned int
fwd_every(struct agent_vm *vm, unsigned int i, const struct ftdev *f)
{
    int64_t inflight;

    if (f->peer < 0 || !vm->ft->d[f->peer].attached) {
        return 0;
    }
    inflight = (int64_t)(p2p_total(vm, i, false) -
                         p2p_total(vm, (unsigned int)f->peer, true));
    return inflight < (int64_t)FT_P2P_WINDOW ? FT_FWD_EVERY : 0;
}

static int
step_one(struct agent_vm *vm, unsigned int i, struct ftdev *f)
{
    uint32_t status;
    long n;
    int ret;

    if (vfudev_failed(f->dev)) {
        return 0; /* its server died (devwatch.c) */
    }
    if (!f->attached) {
        ret = attach(vm, i, f);
        if (ret < 0) {
            return ret == -EAGAIN ? 0 : ret;
        }
        f->attached = true;
    }
    ret = reg_read(f->dev, FT_REG_STATUS, &status);
    if (ret < 0) {
        hdr_of(vm, i)->reg_errors++;
        return ret;
    }
    if (status & (FT_STATUS_DMA_ERR | FT_STATUS_CFG_ERR)) {
        return -EIO; /* shows in the report: the device stopped */
    }
    if (!(status & FT_STATUS_ENABLED)) {
        return recover(vm, i, f);
    }
    n = ft_guest_reap(&f->g);
    if (n < 0) {
        return (int)n;
    }
    n = ft_guest_post(&f->g, f->peer >= 0 ? FT_BATCH_P2P : FT_BATCH,
                      fwd_every(vm, i, f));
    if (n < 0) {
        hdr_of(vm, i)->reg_errors++;
        return (int)n;
    }
    return 0;
}

int
ftwork_step(struct agent_vm *vm)
{
    struct ftwork *w = vm->ft;
    int ret = 0;

    if (w == NULL) {
        return 0;
    }
    for (unsigned int i = 0; i < w->n; i++) {
        int r = step_one(vm, i, &w->d[i]);

        if (r < 0 && ret == 0) {
            ret = r;
        }
    }
    return ret;
}

int
ftwork_new(struct agent_vm *vm)
{
    unsigned int n = guestmap_ft_count(&vm->o);

    if (n == 0) {
        return 0;
    }
    if (ft_guest_area_bytes(FT_RING, FT_FLOWS) + FT_HDR_BYTES >
            GUESTMAP_FT_SLOT ||
        guestmap_prog_size(&vm->o) < VMIG_GUEST_MIN_RAM) {
        vmig_log(vm->ctx, VMIG_LOG_ERR,
                 "guest RAM too small for %u flowtab device(s): give more "
                 "--ram",
                 n);
        return -E2BIG;
    }
    vm->ft = calloc(1, sizeof(*vm->ft));
    if (vm->ft == NULL) {
        return -ENOMEM;
    }
    for (unsigned int i = 0; i < vm->o.nvfu; i++) {
        if (strcmp(vm->vfu[i].spec.kind, "flowtab") == 0) {
            vm->ft->d[vm->ft->n].peer = -1;
            vm->ft->d[vm->ft->n++].dev = &vm->vfu[i];
        }
    }
    for (unsigned int i = 0; i < vm->ft->n; i++) {
        for (unsigned int k = 0; k < vm->ft->n; k++) {
            if (k != i && strcmp(vm->ft->d[i].dev->spec.peer,
                                 vm->ft->d[k].dev->spec.name) == 0) {
                vm->ft->d[i].peer = (int)k;
            }
        }
    }
    return 0;
}

void
ftwork_free(struct agent_vm *vm)
{
    free(vm->ft);
    vm->ft = NULL;
}

/*
 * Quiesce P2P (@on: every RUNNING device with a peer to RUNNING_P2P, a
 * bit set in *@moved for each) or undo it (back to RUNNING).  The vCPU is
 * paused, so nothing else uses the devices' connections.
 */
static void
p2p_quiesce(struct agent_vm *vm, bool on, unsigned int *moved)
{
    for (unsigned int i = 0; i < vm->ft->n; i++) {
        struct agent_vfu *d = vm->ft->d[i].dev;
        enum vmig_state st;
        int ret;

        if (on) {
            if (d->spec.peer[0] == '\0' || vfudev_failed(d) ||
                vmig_vfu_client_get_state(d->c, &st) < 0 ||
                st != VMIG_STATE_RUNNING) {
                continue;
            }
            ret = vmig_vfu_client_set_state(d->c, VMIG_STATE_RUNNING_P2P);
            if (ret == 0) {
                *moved |= 1u << i;
            }
        } else if (*moved & (1u << i)) {
            ret = vmig_vfu_client_set_state(d->c, VMIG_STATE_RUNNING);
        } else {
            continue;
        }
        if (ret < 0) {
            vmig_log(vm->ctx, VMIG_LOG_ERR,
                     "%s: cannot move the device to %s to count its P2P "
                     "traffic: %s",
                     d->spec.name, on ? "RUNNING_P2P" : "RUNNING",
                     strerror(-ret));
        }
    }
}

json_object *
ftwork_report(struct agent_vm *vm, int *verdict)
{
    json_object *a;
    unsigned int moved = 0;
    int64_t inflight[AGENT_MAX_DEV] = {0};

    *verdict = 0;
    if (vm->ft == NULL) {
        return NULL;
    }
    for (unsigned int i = 0; i < vm->ft->n; i++) {
        int p = vm->ft->d[i].peer;

        if (p >= 0 && vm->ft->d[p].attached) {
            inflight[i] = (int64_t)(p2p_total(vm, i, false) -
                                    p2p_total(vm, (unsigned int)p, true));
        }
    }
    p2p_quiesce(vm, true, &moved);
    a = json_object_new_array();
    for (unsigned int i = 0; i < vm->ft->n; i++) {
        struct ft_guest_regs regs = {reg_read, reg_write, vm->ft->d[i].dev};
        const struct ftw_hdr *h = hdr_of(vm, i);
        json_object *o = json_object_new_object();
        struct ft_guest g;
        bool ok;

        json_object_object_add(
            o, "name", json_object_new_string(vm->ft->d[i].dev->spec.name));
        if (h->magic != FTW_MAGIC ||
            ft_guest_attach(&g, vm->ram, vm->o.ram_size,
                            slot_gpa(vm, i) + FT_HDR_BYTES, &regs) < 0) {
            json_object_object_add(o, "started",
                                   json_object_new_boolean(false));
            json_object_array_add(a, o);
            continue;
        }
        ok = g.a->bad + h->bad == 0;
        json_object_object_add(o, "started", json_object_new_boolean(true));
        json_object_object_add(
            o, "posted",
            json_object_new_int64((int64_t)(h->posted + g.a->posted)));
        json_object_object_add(
            o, "completed",
            json_object_new_int64((int64_t)(h->completed + g.a->completed)));
        json_object_object_add(
            o, "bad", json_object_new_int64((int64_t)(g.a->bad + h->bad)));
        json_object_object_add(o, "resets",
                               json_object_new_int64((int64_t)h->resets));
        json_object_object_add(o, "lost",
                               json_object_new_int64((int64_t)h->lost));
        if (vm->ft->d[i].dev->spec.peer[0] != '\0') {
            json_object_object_add(
                o, "peer", json_object_new_string(vm->ft->d[i].dev->spec.peer));
            json_object_object_add(
                o, "p2p-sent",
                json_object_new_int64((int64_t)(h->p2p_tx + g.stats->p2p_tx)));
            json_object_object_add(
                o, "p2p-received",
                json_object_new_int64((int64_t)(h->p2p_rx + g.stats->p2p_rx)));
            json_object_object_add(o, "p2p-in-flight",
                                   json_object_new_int64(inflight[i]));
            json_object_object_add(o, "p2p-quiesced",
                                   json_object_new_boolean((moved >> i) & 1u));
        }
        json_object_object_add(o, "verified", json_object_new_boolean(ok));
        if (!ok) {
            *verdict = -EBADMSG;
        }
        json_object_array_add(a, o);
    }
    p2p_quiesce(vm, false, &moved);
    return a;
}
