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
    unsigned int ndev;
    struct vmig_vcpu *vcpu;
    struct vmig_memdev *dev[TVM_MAX_DEV];
    struct vmig_engine *eng;
    /* snapshot taken by the destination just before its vCPU resumes */
    uint64_t snap_ram;
    uint64_t snap_dev[TVM_MAX_DEV];
    int resumes;
    int pauses;
    void *ext; /* the test's own (freed by tvm_free()) */
};

/* The VM ops: pause (counted), resume (snapshot, counted), vCPU save and
 * load; each alone for a test that adds ops of its own. */
int tvm_vm_pause(void *o);
int tvm_vm_resume(void *o);
ssize_t tvm_vm_save(void *o, void *buf, size_t cap);
int tvm_vm_load(void *o, const void *buf, size_t len);
extern const struct vmig_engine_vm_ops tvm_vm_ops;

/* A VM named @name (its context's log prefix); with @program the guest
 * program runs in RAM (else RAM is zero: a destination), devices seeded
 * from @seed and configured (0xc0 + index, zero without @program). */
struct tvm *tvm_make(const char *name, bool program, uint64_t seed,
                     const struct tvm_cfg *cfg);
void tvm_free(struct tvm *vm);

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
