/* SPDX-License-Identifier: MIT */
/*
 * vfudev.c - the agent's vfio-user devices: device server programs it
 * spawns (each listening on a socket in a private 0700 directory) or
 * servers it connects to, their guest RAM mapping (the RAM memfd passed
 * with DMA_MAP), their IRQ eventfds, and their engine backends
 * (<vmig/engine_vfu.h>).
 *
 * --device SPEC, repeatable:
 *   testdev[,seed=N][,size=MIB]      spawn vfu-testdev
 *   acc[,qps=N][,isolation=device|queue-pair]   spawn vmig-acc
 *   flowtab[,state=MIB][,no-p2p][,peer=NAME]...  spawn vmig-flowtab
 *   socket=PATH                      connect to a running server
 * plus, for any of them, name=NAME (default vfuN: devices are matched by
 * name on the destination) and prog=PATH (the program to spawn).
 *
 * peer=NAME wires a flowtab device's P2P to another flowtab device of
 * the same VM (both spawned here): it is started with
 * --peer=DIR/NAME.sock.p2p, that server's P2P port, and the guest then
 * forwards part of its traffic to it (ftwork.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vmig/engine_vfu.h>
#include <vmig/log.h>
#include <vmig/ramdirty.h>
#include <vmig/vfu_client.h>
#include "agent.h"

#define SPAWN_WAIT_MS 5000
#define MAX_VECTORS 4 /* wired per IRQ index */

int
vfudev_parse(const char *spec, struct vfu_spec *out, unsigned int idx)
{
    char buf[512], *save = NULL, *tok;
    bool first = true;

    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "vfu%u", idx);
    if (strlen(spec) >= sizeof(buf)) {
        return -EINVAL;
    }
    snprintf(buf, sizeof(buf), "%s", spec);
    for (tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save), first = false) {
        char *eq = strchr(tok, '=');

        if (first && eq == NULL) {
            if (strcmp(tok, "testdev") != 0 && strcmp(tok, "acc") != 0 &&
                strcmp(tok, "flowtab") != 0) {
                return -EINVAL;
            }
            snprintf(out->kind, sizeof(out->kind), "%s", tok);
            continue;
        }
        if (eq == NULL && out->nargs < VFU_SPEC_ARGS &&
            strspn(tok, "abcdefghijklmnopqrstuvwxyz-") == strlen(tok) &&
            strlen(tok) < sizeof(out->args[0]) - 2) {
            /* a bare flag: --no-p2p */
            snprintf(out->args[out->nargs++], sizeof(out->args[0]), "--%s",
                     tok);
            continue;
        }
        if (eq == NULL || eq == tok || eq[1] == '\0') {
            return -EINVAL;
        }
        *eq = '\0';
        if (strcmp(tok, "socket") == 0) {
            if (strlen(eq + 1) >= sizeof(out->socket)) {
                return -EINVAL;
            }
            snprintf(out->socket, sizeof(out->socket), "%s", eq + 1);
        } else if (strcmp(tok, "name") == 0) {
            if (strlen(eq + 1) >= sizeof(out->name)) {
                return -EINVAL;
            }
            snprintf(out->name, sizeof(out->name), "%s", eq + 1);
        } else if (strcmp(tok, "prog") == 0) {
            snprintf(out->prog, sizeof(out->prog), "%s", eq + 1);
        } else if (strcmp(tok, "peer") == 0) {
            if (strlen(eq + 1) >= sizeof(out->peer)) {
                return -EINVAL;
            }
            snprintf(out->peer, sizeof(out->peer), "%s", eq + 1);
        } else if (out->nargs < VFU_SPEC_ARGS &&
                   strspn(tok, "abcdefghijklmnopqrstuvwxyz-") == strlen(tok)) {
            snprintf(out->args[out->nargs++], sizeof(out->args[0]), "--%s=%s",
                     tok, eq + 1);
        } else {
            return -EINVAL;
        }
    }
    if ((out->kind[0] == '\0') == (out->socket[0] == '\0')) {
        return -EINVAL; /* exactly one of a kind to spawn or a socket */
    }
    if (out->kind[0] == '\0') {
        snprintf(out->kind, sizeof(out->kind), "external");
    }
    if (out->peer[0] != '\0' && strcmp(out->kind, "flowtab") != 0) {
        return -EINVAL; /* only a spawned flowtab device forwards */
    }
    return 0;
}

int
vfudev_check_peers(const struct vfu_spec *specs, unsigned int n, char *err,
                   size_t errlen)
{
    for (unsigned int i = 0; i < n; i++) {
        const struct vfu_spec *s = &specs[i];
        bool found = false;

        if (s->peer[0] == '\0') {
            continue;
        }
        for (unsigned int k = 0; k < n && !found; k++) {
            found = k != i && strcmp(specs[k].name, s->peer) == 0 &&
                    strcmp(specs[k].kind, "flowtab") == 0;
        }
        if (!found) {
            snprintf(err, errlen,
                     "device '%s': peer=%s names no other flowtab device of "
                     "this VM",
                     s->name, s->peer);
            return -EINVAL;
        }
    }
    return 0;
}

/* The program for @kind: prog=, next to this binary, in the build tree,
 * or on $PATH. */
static void
find_prog(const struct vfu_spec *sp, char *out, size_t len)
{
    const char *name = "vfu-testdev";
    const char *tree = "../tools/vfu-testdev/vfu-testdev";
    char self[PATH_MAX], *slash;
    ssize_t n;

    if (strcmp(sp->kind, "acc") == 0) {
        name = "vmig-acc";
        tree = "../devices/acc/vmig-acc";
    } else if (strcmp(sp->kind, "flowtab") == 0) {
        name = "vmig-flowtab";
        tree = "../devices/flowtab/vmig-flowtab";
    }
    if (sp->prog[0] != '\0') {
        snprintf(out, len, "%s", sp->prog);
        return;
    }
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        slash = strrchr(self, '/');
        if (slash != NULL) {
            slash[1] = '\0';
            if (snprintf(out, len, "%s%s", self, name) < (int)len &&
                access(out, X_OK) == 0) {
                return;
            }
            if (snprintf(out, len, "%s%s", self, tree) < (int)len &&
                access(out, X_OK) == 0) {
                return;
            }
        }
    }
    snprintf(out, len, "%s", name);
}

static pid_t
spawn(struct agent_vm *vm, struct agent_vfu *d, const char *path)
{
    char prog[PATH_MAX], sock_arg[300], peer_arg[320];
    char *argv[VFU_SPEC_ARGS + 4];
    unsigned int k = 0;
    pid_t pid;

    find_prog(&d->spec, prog, sizeof(prog));
    snprintf(sock_arg, sizeof(sock_arg), "--socket-path=%s", path);
    argv[k++] = prog;
    argv[k++] = sock_arg;
    if (d->spec.peer[0] != '\0') {
        /* the peer's P2P port (its server listens at SOCKET.p2p); it
         * connects on the first record, so the order of spawning does
         * not matter */
        snprintf(peer_arg, sizeof(peer_arg), "--peer=%s/%s.sock.p2p",
                 vm->vfu_dir, d->spec.peer);
        argv[k++] = peer_arg;
    }
    for (unsigned int i = 0; i < d->spec.nargs; i++) {
        argv[k++] = d->spec.args[i];
    }
    argv[k] = NULL;
    pid = fork();
    if (pid < 0) {
        return -errno;
    }
    if (pid == 0) {
        /* the device must not outlive its VMM (SIGKILL: nothing to save) */
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        /* its socket and files: ours only, whatever our caller's umask */
        umask(077);
        execvp(prog, argv);
        fprintf(stderr, "vmig: cannot run %s: %s\n", prog, strerror(errno));
        _exit(127);
    }
    vmig_log(vm->ctx, VMIG_LOG_INFO, "%s: spawned %s (pid %d) on %s",
             d->spec.name, prog, (int)pid, path);
    return pid;
}

static int
connect_wait(struct agent_vm *vm, struct agent_vfu *d, const char *path)
{
    int ret = -ENOENT;

    for (int ms = 0; ms < SPAWN_WAIT_MS; ms += 10) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        int status;

        ret = vmig_vfu_client_connect(vm->ctx, path, VMIG_VFU_EXT__ALL, &d->c);
        if (ret != -ENOENT && ret != -ECONNREFUSED) {
            return ret;
        }
        if (d->pid > 0 && waitpid(d->pid, &status, WNOHANG) == d->pid) {
            d->pid = 0;
            vmig_log(vm->ctx, VMIG_LOG_ERR,
                     "%s: the device server exited (status %d) before "
                     "listening",
                     d->spec.name, status);
            return -ECHILD;
        }
        if (d->pid <= 0) {
            return ret; /* a given socket: no waiting */
        }
        nanosleep(&ts, NULL);
    }
    return ret;
}

static int
irq_fd(void *opaque, unsigned int index, unsigned int vector)
{
    struct agent_vfu *d = opaque;
    int efd;

    (void)index;
    (void)vector;
    if (d->nefd == VFU_MAX_EFD) {
        return -E2BIG;
    }
    efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0) {
        return -errno;
    }
    d->efd[d->nefd++] = efd;
    return efd;
}

/* Wire every vector (up to MAX_VECTORS per index) to an eventfd. */
static int
wire_irqs(struct agent_vm *vm, struct agent_vfu *d)
{
    struct vmig_vfu_device_info di;
    int ret = vmig_vfu_client_device_info(d->c, &di);

    for (unsigned int i = 0; ret == 0 && i < di.num_irqs; i++) {
        struct vmig_vfu_irq_info ii;

        if (vmig_vfu_client_irq_info(d->c, i, &ii) < 0) {
            continue;
        }
        for (unsigned int v = 0; ret == 0 && v < ii.count && v < MAX_VECTORS;
             v++) {
            int efd = irq_fd(d, i, v);

            ret = efd < 0 ? efd : vmig_engine_vfu_set_irq(d->b, i, v, efd);
        }
    }
    if (ret < 0) {
        vmig_log(vm->ctx, VMIG_LOG_ERR, "%s: cannot wire its IRQs: %s",
                 d->spec.name, strerror(-ret));
    }
    return ret;
}

/*
 * Can the device log its DMA writes (vfio-user DMA_LOGGING_START)?  Asked
 * once at start-up, over all of guest RAM, with the page sizes
 * <vmig/ramdirty.h> would offer, and stopped again at once.
 */
static bool
probe_dma_log(struct agent_vm *vm, struct agent_vfu *d)
{
    struct vmig_vfu_log_range r = {.iova = 0, .length = vm->o.ram_size};
    int ret = -EOPNOTSUPP;

    for (uint64_t pg = VMIG_MP_PAGE_SIZE; pg <= VMIG_RAMDIRTY_MAX_DEV_PAGE;
         pg *= 2) {
        ret = vmig_vfu_client_log_start(d->c, pg, &r, 1);
        if (ret != -EINVAL && ret != -EOPNOTSUPP) {
            break;
        }
    }
    if (ret < 0) {
        vmig_log(vm->ctx, VMIG_LOG_INFO, "%s: no DMA logging: %s", d->spec.name,
                 strerror(-ret));
        return false;
    }
    if (vmig_vfu_client_log_stop(d->c) < 0) {
        vmig_log(vm->ctx, VMIG_LOG_WARNING,
                 "%s: DMA_LOGGING_STOP after the probe failed; treating "
                 "the device as unable to log",
                 d->spec.name);
        return false;
    }
    return true;
}

static int
dev_up(struct agent_vm *vm, struct agent_vfu *d)
{
    struct vmig_engine_vfu_params p = {
        .name = d->spec.name, .irq_fd = irq_fd, .opaque = d};
    char path[300];
    int ret;

    if (d->spec.socket[0] != '\0') {
        snprintf(path, sizeof(path), "%s", d->spec.socket);
    } else {
        snprintf(path, sizeof(path), "%s/%s.sock", vm->vfu_dir, d->spec.name);
        d->pid = spawn(vm, d, path);
        if (d->pid < 0) {
            ret = d->pid;
            d->pid = 0;
            return ret;
        }
    }
    ret = connect_wait(vm, d, path);
    if (ret < 0) {
        vmig_log(vm->ctx, VMIG_LOG_ERR, "%s: cannot connect to %s: %s",
                 d->spec.name, path, strerror(-ret));
        return ret;
    }
    ret = vmig_engine_vfu_new(vm->ctx, d->c, &p, &d->b);
    if (ret == 0) {
        ret = vmig_engine_vfu_add_ram(d->b, 0, vm->o.ram_size, vm->memfd, 0,
                                      vm->ram);
    }
    if (ret == 0) {
        ret = vmig_engine_vfu_dma_map(d->b, 0, vm->o.ram_size,
                                      VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE);
    }
    if (ret == 0) {
        ret = wire_irqs(vm, d);
    }
    if (ret == 0) {
        d->dma_log = probe_dma_log(vm, d);
    }
    return ret;
}

/*
 * Test-only fault: VMIG_TEST_CORRUPT_DEVICE_BYTE=N flips byte N of the
 * state the first vfio-user device sends, once per agent process, after
 * the device produced it and before the engine frames it: the destination
 * must refuse the state and the source must roll back intact.
 */
static void *corrupt_dev;
static long long corrupt_at = -1;
static unsigned long long corrupt_off;

/*
 * The engine reaches every vfio-user device through these: the backend's
 * ops, except that a device whose server died (devwatch.c) is refused at
 * once - a destination's verdict names it, a migration reading or moving
 * it fails - instead of each call finding the closed socket its own way.
 */
static struct vmig_engine_dev_ops agent_ops;
static struct agent_vm *ops_vm; /* one VM per agent process */

static struct agent_vfu *
of_backend(void *b)
{
    for (unsigned int i = 0; ops_vm != NULL && i < ops_vm->o.nvfu; i++) {
        if (ops_vm->vfu[i].b == b) {
            return &ops_vm->vfu[i];
        }
    }
    return NULL;
}

static bool
dead(void *b)
{
    struct agent_vfu *d = of_backend(b);

    return d != NULL && vfudev_failed(d);
}

static int
w_set_state(void *opaque, enum vmig_state target)
{
    return dead(opaque) ? -EIO
                        : vmig_engine_vfu_ops()->set_state(opaque, target);
}

static int
w_compat(void *opaque, const struct vmig_mp_dev *src, char *reason,
         size_t reason_len)
{
    struct agent_vfu *d = of_backend(opaque);

    if (d != NULL && vfudev_failed(d)) {
        snprintf(reason, reason_len, "here, %s", d->fail_reason);
        return 0;
    }
    return vmig_engine_vfu_ops()->compat(opaque, src, reason, reason_len);
}

static int
w_write(void *opaque, const void *buf, size_t len)
{
    return dead(opaque) ? -EIO : vmig_engine_vfu_ops()->write(opaque, buf, len);
}

static ssize_t
w_read(void *opaque, void *buf, size_t cap)
{
    ssize_t n;

    if (dead(opaque)) {
        return -EIO; /* not ENODEV: that is a reset to the precopy loop */
    }
    n = vmig_engine_vfu_ops()->read(opaque, buf, cap);
    if (n > 0 && opaque == corrupt_dev && corrupt_at >= 0) {
        if ((unsigned long long)corrupt_at < corrupt_off + (size_t)n) {
            ((unsigned char *)
                 buf)[(unsigned long long)corrupt_at - corrupt_off] ^= 0x01;
            corrupt_at = -1;
        }
        corrupt_off += (size_t)n;
    }
    return n;
}

static const struct vmig_engine_dev_ops *
dev_ops(struct agent_vm *vm, struct agent_vfu *d)
{
    const char *v = getenv("VMIG_TEST_CORRUPT_DEVICE_BYTE");
    char *end = NULL;
    long long at;

    if (ops_vm == NULL) {
        ops_vm = vm;
        agent_ops = *vmig_engine_vfu_ops();
        agent_ops.set_state = w_set_state;
        agent_ops.compat = w_compat;
        agent_ops.write = w_write;
        agent_ops.read = w_read;
    }
    if (v == NULL || v[0] == '\0' || d != &vm->vfu[0]) {
        return &agent_ops;
    }
    at = strtoll(v, &end, 10);
    if (end == v || *end != '\0' || at < 0) {
        return &agent_ops;
    }
    corrupt_dev = d->b;
    corrupt_at = at;
    corrupt_off = 0;
    vmig_log(vm->ctx, VMIG_LOG_WARNING,
             "test fault armed: byte %lld of device %s's outgoing "
             "state will be flipped once",
             at, d->spec.name);
    return &agent_ops;
}

int
vfudev_up(struct agent_vm *vm)
{
    bool spawning = false;

    for (unsigned int i = 0; i < vm->o.nvfu; i++) {
        spawning |= vm->o.vfu[i].socket[0] == '\0';
    }
    if (spawning) {
        int ret;

        rundir_clean_stale(vm->ctx);
        ret = rundir_create(vm->vfu_dir, sizeof(vm->vfu_dir));
        if (ret < 0) {
            vmig_log(vm->ctx, VMIG_LOG_ERR,
                     "cannot create the device sockets' directory in %s: "
                     "%s",
                     getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp",
                     strerror(-ret));
            return ret;
        }
        ret = rundir_watch(vm->vfu_dir);
        if (ret < 0) {
            vmig_log(vm->ctx, VMIG_LOG_WARNING,
                     "cannot watch %s for removal if this agent is killed: "
                     "%s; the next agent removes it",
                     vm->vfu_dir, strerror(-ret));
        }
    }
    for (unsigned int i = 0; i < vm->o.nvfu; i++) {
        struct agent_vfu *d = &vm->vfu[i];
        int ret;

        d->spec = vm->o.vfu[i];
        ret = dev_up(vm, d);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

int
vfudev_add(struct agent_vm *vm)
{
    for (unsigned int i = 0; i < vm->o.nvfu; i++) {
        struct agent_vfu *d = &vm->vfu[i];
        int ret =
            vmig_engine_add_device(vm->eng, d->spec.name, dev_ops(vm, d), d->b);

        if (ret < 0) {
            vmig_log(vm->ctx, VMIG_LOG_ERR,
                     "%s: cannot add the device to the migration engine: "
                     "%s%s",
                     d->spec.name, strerror(-ret),
                     ret == -EINVAL ? " (device names must be unique: "
                                      "give each --device its own name=)"
                                    : "");
            return ret;
        }
    }
    return 0;
}

struct agent_vfu *
vfudev_find(struct agent_vm *vm, const char *name)
{
    for (unsigned int i = 0; i < vm->o.nvfu; i++) {
        if (strcmp(vm->vfu[i].spec.name, name) == 0 &&
            !__atomic_load_n(&vm->vfu[i].removed, __ATOMIC_ACQUIRE)) {
            return &vm->vfu[i];
        }
    }
    return NULL;
}

void
vfudev_down(struct agent_vm *vm)
{
    for (unsigned int i = 0; i < AGENT_MAX_DEV; i++) {
        struct agent_vfu *d = &vm->vfu[i];

        vmig_engine_vfu_free(d->b);
        vmig_vfu_client_free(d->c);
        if (d->pid > 0 && kill(d->pid, SIGTERM) == 0) {
            int status;

            for (int ms = 0; ms < 2000; ms += 10) {
                struct timespec ts = {0, 10 * 1000 * 1000};

                if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
                    d->pid = 0;
                    break;
                }
                nanosleep(&ts, NULL);
            }
            if (d->pid > 0) {
                kill(d->pid, SIGKILL);
                (void)waitpid(d->pid, &status, 0);
            }
        }
        for (unsigned int k = 0; k < d->nefd; k++) {
            close(d->efd[k]);
        }
        if (d->spec.socket[0] == '\0' && d->spec.name[0] != '\0' &&
            vm->vfu_dir[0] != '\0') {
            char path[300];

            snprintf(path, sizeof(path), "%s/%s.sock", vm->vfu_dir,
                     d->spec.name);
            (void)unlink(path);
        }
        memset(d, 0, sizeof(*d));
    }
    if (vm->vfu_dir[0] != '\0') {
        /* with what a killed server left in it (flowtab's .p2p socket) */
        (void)rundir_remove(vm->vfu_dir);
        vm->vfu_dir[0] = '\0';
    }
}

/* The guest's work on its vfio-user devices, after each batch of steps:
 * the test device's SCRATCH register follows the guest's step count, so
 * its state changes as the VM runs and a lost or stale state shows. */
int
vfudev_guest_work(struct agent_vm *vm, uint64_t steps)
{
    for (unsigned int i = 0; i < vm->o.nvfu; i++) {
        struct agent_vfu *d = &vm->vfu[i];

        if (strcmp(d->spec.kind, "testdev") == 0 && !vfudev_failed(d)) {
            int ret = vmig_vfu_client_region_write(d->c, 0, 0, &steps, 8);

            if (ret < 0) {
                return ret;
            }
        }
    }
    return 0;
}

json_object *
vfudev_describe(struct agent_vm *vm, unsigned int i)
{
    struct agent_vfu *d = &vm->vfu[i];
    json_object *o = json_object_new_object();
    struct vmig_pci_ids ids;
    enum vmig_state st = VMIG_STATE_ERROR;
    uint64_t flags = 0, scratch = 0;
    size_t desc_len;
    char fl[64];

    vmig_engine_vfu_identity(d->b, &ids, &desc_len);
    json_object_object_add(o, "name", json_object_new_string(d->spec.name));
    json_object_object_add(o, "type", json_object_new_string(d->spec.kind));
    json_object_object_add(o, "transport", json_object_new_string("vfio-user"));
    if (d->pid > 0) {
        json_object_object_add(o, "pid", json_object_new_int(d->pid));
    }
    if (vfudev_failed(d)) {
        /* its server died: nothing more to ask it */
        json_object_object_add(o, "state", json_object_new_string("failed"));
        json_object_object_add(o, "error",
                               json_object_new_string(d->fail_reason));
        return o;
    }
    if (ids.valid) {
        json_object_object_add(o, "vendor", json_object_new_int(ids.vendor));
        json_object_object_add(o, "device", json_object_new_int(ids.device));
        json_object_object_add(o, "revision",
                               json_object_new_int(ids.revision));
    }
    json_object_object_add(o, "descriptor",
                           json_object_new_boolean(desc_len > 0));
    if (vmig_engine_vfu_ops()->get_flags(d->b, &flags) == 0) {
        json_object_object_add(
            o, "migration-flags",
            json_object_new_string(vmig_flags_format(flags, fl, sizeof(fl))));
    }
    if (vmig_vfu_client_get_state(d->c, &st) == 0) {
        json_object_object_add(o, "state",
                               json_object_new_string(vmig_state_name(st)));
    }
    if (strcmp(d->spec.kind, "testdev") == 0 && st == VMIG_STATE_RUNNING &&
        vmig_vfu_client_region_read(d->c, 0, 0, &scratch, 8) == 0) {
        json_object_object_add(o, "scratch",
                               json_object_new_int64((int64_t)scratch));
    }
    return o;
}
