/* SPDX-License-Identifier: MIT */
/*
 * engine_vm.h - a test VM for the engine tests (engine_vm.c): guest RAM
 * running the ledger program (<vmig_testkit/guest.h>) on a vCPU thread,
 * memdev devices worked from the vCPU's hook, and an engine over them.
 * The destination's snapshot of RAM and device digests is taken just
 * before its vCPU resumes, so a test can compare it with the source.
 */
#ifndef VMIG_TESTS_ENGINE_VM_H
#define VMIG_TESTS_ENGINE_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <vmig/engine.h>
#include <vmig_testkit/guest.h>
#include <vmig_testkit/memdev.h>

#define TVM_MAX_DEV 4

/* How a test VM is made. */
struct tvm_cfg {
    size_t ram_size;
    size_t dev_state;
    unsigned int ndev; /* at most TVM_MAX_DEV */
    const char *const *names;
    const uint64_t *flags; /* VMIG_MIGRATION_* per device */
    uint8_t revision;
    const struct vmig_engine_vm_ops *vm_ops;   /* NULL: tvm_vm_ops */
    const struct vmig_engine_dev_ops *dev_ops; /* NULL: the memdev's */
};

struct tvm {
    vmig_ctx_t *ctx;
    uint8_t *ram;
    size_t ram_size;
    size_t dev_state; /* each device's state size */
    unsigned int ndev;
    struct vmig_vcpu *vcpu;
    struct vmig_memdev *dev[TVM_MAX_DEV];
    struct vmig_engine *eng;
    /* snapshot taken by the destination just before its vCPU resumes */
    uint64_t snap_ram;
    uint64_t snap_dev[TVM_MAX_DEV];
    int resumes;
    int pauses;
    int holes; /* atomic: RAM chunks tvm_vm_hole() reported zero */
    void *ext; /* the test's own (freed by tvm_free()) */
};

/* The VM ops: pause (counted), resume (snapshot, counted), vCPU save and
 * load; each alone for a test that adds ops of its own. */
int tvm_vm_pause(void *o);
int tvm_vm_resume(void *o);
ssize_t tvm_vm_save(void *o, void *buf, size_t cap);
int tvm_vm_load(void *o, const void *buf, size_t len);
extern const struct vmig_engine_vm_ops tvm_vm_ops;

/* A VMM that knows some RAM is zero (here: by looking; a real one asks
 * its memfd for holes); counted in vm->holes so a test sees the engine
 * use it. */
int tvm_vm_hole(void *o, unsigned int region, uint64_t off, uint64_t len);

/* A VM named @name (its context's log prefix); with @program the guest
 * program runs in RAM (else RAM is zero: a destination), devices seeded
 * from @seed and configured (0xc0 + index, zero without @program). */
struct tvm *tvm_make(const char *name, bool program, uint64_t seed,
                     const struct tvm_cfg *cfg);
void tvm_free(struct tvm *vm);

/*
 * The end-to-end engine tests' VM (test_engine.c, test_engine_zstd.c):
 * TVM_STD_RAM of RAM with holes reported (tvm_vm_hole), two memdev
 * devices of TVM_STD_DEV_STATE each, "acc0" with P2P and "nic0" without
 * (it must reach STOP in the first phase, so migrating the pair needs
 * allow_mixed_p2p, which is set).  @dev_ops NULL: the memdev's.
 */
#define TVM_STD_RAM (8u << 20)
#define TVM_STD_DEV_STATE (2u << 20)
#define TVM_STD_NDEV 2
struct tvm *tvm_std_new(const char *name, bool program, uint64_t seed,
                        uint8_t revision,
                        const struct vmig_engine_dev_ops *dev_ops);

/* A loopback listener on an ephemeral port (*@port), a connection to
 * one; a test failure when the socket cannot be had. */
int tvm_listen(int *port);
int tvm_connect(int port);

/* @src moved to @dst: the source paused with its devices in STOP and
 * nothing changed since, the destination resumed once with the same RAM,
 * device state and config. */
void tvm_check_moved(struct tvm *src, struct tvm *dst);

/*
 * tvm_check_moved(), and the engines agree: both COMPLETED, all RAM and
 * the first device's state counted, the first device byte sent inside
 * the downtime; @dst's resume count is cleared for the next migration.
 */
void tvm_check_landed(struct tvm *src, struct tvm *dst);

/* The migration failed (@ret) with status @want_status and a message;
 * the VM runs intact on @src. */
void tvm_check_rolled_back(struct tvm *src, int ret, int want_status);

void msleep(unsigned int ms);

/* Let the guest run until it has done @n steps (RAM then has non-zero
 * data in every 4 MiB chunk, so the stream's layout is predictable). */
void wait_steps(struct tvm *vm, uint64_t n);

/*
 * The VM runs here intact: steps advance, devices RUNNING and working,
 * RAM verifies, no hook failed.
 */
void assert_vm_alive(struct tvm *vm);

#endif /* VMIG_TESTS_ENGINE_VM_H */
