/* SPDX-License-Identifier: MIT */
/*
 * engine_precopy_vfu_vms.h - the VMs of test_engine_precopy_vfu.c: guest
 * RAM on a memfd, vmig-flowtab server processes behind the vfio-user
 * backend, a vCPU thread driving the flowtab guest driver, the engine's
 * VM hooks (<vmig/ramdirty.h> for dirty pages) and device ops wrapped with
 * test hooks; bringing them up and down, migrating between them and
 * checking what landed (engine_precopy_vfu_vms.c).
 */
#ifndef VMIG_TESTS_ENGINE_PRECOPY_VFU_VMS_H
#define VMIG_TESTS_ENGINE_PRECOPY_VFU_VMS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <vmig/engine.h>
#include <vmig/engine_vfu.h>
#include <vmig/ramdirty.h>
#include <vmig/vfu_client.h>
#include "ft_guest.h"

#define MAXDEV 2
#define RING 256u
#define NFLOWS 4u
#define AREA_A 0x10000u
#define AREA_B 0x100000u
#define BACKLOG 32u

/* the run's scratch directory, failed CHECKs, context and server children
 * (killed at exit unless their case reaped them) */
extern char dir[256];
extern int failures;
extern vmig_ctx_t *ctx;
extern pid_t kids[16];
extern int nkids;

/* ------------------------------------------------------------ the VMs */

struct dev {
    char path[300];
    pid_t pid;
    struct vmig_vfu_client *c;
    struct vmig_engine_vfu *b;
    struct ft_guest g;
    bool guest; /* g is initialised */
    uint64_t area;
};

/* The vCPU: posts to and reaps from every device's driver until told to
 * stop (pause). */
struct vcpu {
    struct vm *vm;
    atomic_bool stop;
    bool on;
    unsigned int fwd_every;
    long err;
    pthread_t t;
};

struct vm {
    const char *name;
    bool source;
    int memfd;
    uint8_t *ram;
    size_t ram_len;
    unsigned int ndev;
    struct dev dev[MAXDEV];
    struct vmig_engine *e;
    struct vcpu v;
    struct vmig_ramdirty *rd;
    atomic_int pauses, resumes, collects;
    atomic_bool running;
    /* converge: dirty this many bytes of RAM (from ram_len - scratch) at
     * the first two collections, as a guest burst of memory writes */
    size_t scratch;
};

/* The source and destination VM of the running case; torn down by main
 * also when a CHECK returned early from the case. */

/* The source and destination VM of the running case; torn down by main
 * also when a CHECK returned early from the case. */
extern struct vm vm_a, vm_b;
/* vmig extensions the clients offer (0: a plain vfio-user client) */
extern uint32_t client_ext;

/* The vfio-user backend's ops (wrap_ops() sets them), and the test hooks
 * the wrapped ops call around read and set_state; compat_yes: the
 * destination VMM's own compat callback says yes. */
extern const struct vmig_engine_dev_ops *vfu;
extern bool (*read_hook)(void *b);
extern void (*state_hook)(void *b, enum vmig_state target);
extern bool compat_yes;

struct spec {
    uint64_t state;
    uint32_t chunk;
    size_t ram;
    bool p2p; /* two devices forwarding into each other */
};

int reg_read(void *opaque, uint32_t off, uint32_t *val);
int reg_write(void *opaque, uint32_t off, uint32_t val);
int digest(struct dev *d, uint64_t out[2]);
int vcpu_start(struct vm *vm);
int drain(struct ft_guest *g);
long vcpu_stop(struct vm *vm);
int h_pause(void *o);
void wrap_ops(void);
int vm_up(struct vm *vm, const char *name, bool source, const struct spec *sp);
void vm_down(struct vm *vm);
int wait_traffic(struct vm *vm, unsigned int i, uint64_t n);
int migrate(struct vm *src, struct vm *dst, const struct vmig_engine_params *p,
            int *dst_ret);
void print_stats(const char *what, struct vm *vm);
void check_landed(struct vm *src, struct vm *dst);

#endif /* VMIG_TESTS_ENGINE_PRECOPY_VFU_VMS_H */
