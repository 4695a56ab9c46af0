/* SPDX-License-Identifier: MIT */
/*
 * memdev.h - an in-process device backend for the migration engine.
 *
 * A memdev is a device model whose internal state is a byte array that
 * changes while the device runs (vmig_memdev_work()).  It follows the
 * VFIO v2 state machine through <vmig/device.h> (combination transitions arc
 * by arc, data sessions, reset), serializes its state with a header and a
 * digest, validates a loaded state on RESUMING -> STOP and applies nothing
 * before that.  It also keeps a 256-byte "config space" standing for what
 * the VMM owns of a device (PCI config it wrote, IRQ wiring), carried by
 * the engine's config hooks.  Tests and the agent use it until real
 * vfio-user devices are plugged in; faults can be injected.
 */
#ifndef VMIG_MEMDEV_H
#define VMIG_MEMDEV_H

#include <stddef.h>
#include <stdint.h>
#include <vmig/ctx.h>
#include <vmig/engine.h>
#include <vmig/export.h>

struct vmig_memdev;

#define VMIG_MEMDEV_CONFIG_SIZE 256
#define VMIG_MEMDEV_VENDOR 0x1b36 /* QEMU's vendor id, as emulated devices */
#define VMIG_MEMDEV_DEVICE 0x7e57

/**
 * struct vmig_memdev_params - what a memdev looks like.
 * @state_size: bytes of internal state (at least 64).
 * @flags:      VMIG_MIGRATION_STOP_COPY, optionally P2P.  No PRE_COPY:
 *              a memdev saves one snapshot, it tracks no dirty state.
 * @seed:       initial contents are derived from it.
 * @revision:   PCI revision; a destination accepts an equal or older one.
 */
struct vmig_memdev_params {
    size_t state_size;
    uint64_t flags;
    uint64_t seed;
    uint8_t revision;
};

enum vmig_memdev_fault {
    VMIG_MEMDEV_FAULT_NONE = 0,
    VMIG_MEMDEV_FAULT_CORRUPT_SAVE,   /* flip one byte of the next save */
    VMIG_MEMDEV_FAULT_FAIL_STOP_COPY, /* the next STOP -> STOP_COPY fails */
    VMIG_MEMDEV_FAULT_FAIL_RUNNING,   /* the next arc into RUNNING fails once */
};

/**
 * vmig_memdev_new() - Create a device in RUNNING.
 * @ctx: logging context (borrowed).
 * @p:   parameters.
 * @out: receives the device; untouched on failure.
 *
 * Return: 0, -EINVAL, -ENOMEM.
 */
VMIG_MUST_CHECK int vmig_memdev_new(vmig_ctx_t *ctx,
                                    const struct vmig_memdev_params *p,
                                    struct vmig_memdev **out);

/**
 * vmig_memdev_free() - Destroy.  NULL is accepted.
 * @md: device.
 */
void vmig_memdev_free(struct vmig_memdev *md);

/**
 * vmig_memdev_ops() - The engine backend ops; the opaque pointer is the
 * struct vmig_memdev itself.
 *
 * Return: a static table.
 */
const struct vmig_engine_dev_ops *vmig_memdev_ops(void);

/**
 * vmig_memdev_work() - Let the device do @n units of work (each changes a
 * few bytes of its state and the work counter).  Thread-safe.
 * @md: device.
 * @n:  units.
 *
 * Return: 0, or -EBUSY when the device is not running (stopped devices
 * do no work: that is what the stop phase guarantees).
 */
VMIG_MUST_CHECK int vmig_memdev_work(struct vmig_memdev *md, uint64_t n);

/**
 * vmig_memdev_digest() - XXH3 of the state and the work counter.
 * @md: device.
 *
 * Return: the digest.
 */
uint64_t vmig_memdev_digest(struct vmig_memdev *md);

/**
 * vmig_memdev_work_done() - Units of work done over the device's life
 * (migrated with its state).
 * @md: device.
 *
 * Return: the count.
 */
uint64_t vmig_memdev_work_done(struct vmig_memdev *md);

/**
 * vmig_memdev_state() - The device's migration state.
 * @md: device.
 *
 * Return: a state.
 */
enum vmig_state vmig_memdev_state(struct vmig_memdev *md);

/**
 * vmig_memdev_config() - Access the config space the VMM owns.
 * @md:  device.
 * @buf: receives VMIG_MEMDEV_CONFIG_SIZE bytes, or NULL.
 * @set: when not NULL, VMIG_MEMDEV_CONFIG_SIZE bytes to store first.
 */
void vmig_memdev_config(struct vmig_memdev *md, uint8_t *buf,
                        const uint8_t *set);

/**
 * vmig_memdev_inject() - Arm a one-shot fault.
 * @md:    device.
 * @fault: the fault.
 */
void vmig_memdev_inject(struct vmig_memdev *md, enum vmig_memdev_fault fault);

#endif /* VMIG_MEMDEV_H */
