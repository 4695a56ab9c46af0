/* SPDX-License-Identifier: MIT */
/*
 * guest.h - a guest program whose entire state lives in guest RAM, and a
 * vCPU thread that runs it.
 *
 * The program is a hash chain with a ledger: step i computes
 * chain = XXH3(chain, i, seed), records (i + 1, chain) in ledger slot i and
 * scribbles the chain value into a scratch area at a position derived from
 * it, so guest RAM changes all over as the program runs.  Because every
 * byte it depends on is in RAM, migrating RAM migrates the program; and
 * because it is deterministic, vmig_guest_verify() replays it from the
 * seed and compares the whole RAM byte for byte: every step done exactly
 * once, in order, nothing lost or duplicated.
 *
 * RAM layout: page 0 header {magic, seed, steps, chain, ledger capacity,
 * scratch offset, scratch length}; ledger from 4096 (16-byte entries);
 * scratch in the second half.
 */
#ifndef VMIG_GUEST_H
#define VMIG_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <vmig/export.h>

#define VMIG_GUEST_MIN_RAM (64u << 10)

/**
 * vmig_guest_init() - Load the program into @ram (zeroes all of it).
 * @ram:  guest RAM.
 * @size: bytes, at least VMIG_GUEST_MIN_RAM, a multiple of 4096.
 * @seed: program input.
 *
 * Return: 0, or -EINVAL.
 */
VMIG_MUST_CHECK int vmig_guest_init(void *ram, size_t size, uint64_t seed);

/**
 * vmig_guest_step() - Execute one step of the program.
 * @ram:  guest RAM holding a program.
 * @size: bytes.
 *
 * Return: 0; -ENOSPC when the ledger is full (the program has finished);
 * -EINVAL when @ram holds no valid program.
 */
VMIG_MUST_CHECK int vmig_guest_step(void *ram, size_t size);

/**
 * vmig_guest_steps() - Steps completed so far (from the RAM header).
 * @ram: guest RAM.
 *
 * Return: the count.
 */
uint64_t vmig_guest_steps(const void *ram);

/**
 * vmig_guest_capacity() - Steps the program runs before its ledger is full
 * (it has then finished and its RAM no longer changes).
 * @ram:  guest RAM holding a program.
 * @size: bytes.
 *
 * Return: the count, or 0 when @ram holds no valid program.
 */
uint64_t vmig_guest_capacity(const void *ram, size_t size);

/**
 * vmig_guest_verify() - Replay the program from its seed for as many steps
 * as @ram says were done and compare every byte of RAM.
 * @ram:  guest RAM.
 * @size: bytes.
 * @why:  receives a description of the first discrepancy, or NULL.
 * @len:  size of @why.
 *
 * Return: 0 when RAM is exactly what the program produces; -EBADMSG
 * when it differs; -EINVAL when there is no program; -ENOMEM.
 */
VMIG_MUST_CHECK int vmig_guest_verify(const void *ram, size_t size, char *why,
                                      size_t len);

struct vmig_vcpu;

/**
 * vmig_vcpu_step_fn - called by the vCPU thread after each batch of steps
 * (the guest "driving its devices").  Returning an error stops nothing; it
 * is counted in the vCPU's error counter.
 */
typedef int vmig_vcpu_step_fn(void *opaque, uint64_t steps_done);

/**
 * struct vmig_vcpu_params - how the vCPU runs.
 * @steps_per_sec: rate limit; 0 runs flat out.
 * @hook:          called after each batch, or NULL; also every 1 ms once
 *                 the program has filled its RAM and idles (the guest
 *                 still drives its devices then).
 * @opaque:        for @hook.
 */
struct vmig_vcpu_params {
    uint64_t steps_per_sec;
    vmig_vcpu_step_fn *hook;
    void *opaque;
};

/**
 * vmig_vcpu_new() - Create a paused vCPU thread for the program in @ram.
 * @ram:  guest RAM (borrowed).  It may hold no program yet (a migration
 *        destination): the vCPU then idles until one is there.
 * @size: bytes.
 * @p:    parameters (copied).
 * @out:  receives the vCPU; untouched on failure.
 *
 * Return: 0, -EINVAL, -ENOMEM, or a pthread error.
 */
VMIG_MUST_CHECK int vmig_vcpu_new(void *ram, size_t size,
                                  const struct vmig_vcpu_params *p,
                                  struct vmig_vcpu **out);

/**
 * vmig_vcpu_free() - Stop the thread and free.  NULL is accepted.
 * @v: vCPU.
 */
void vmig_vcpu_free(struct vmig_vcpu *v);

/**
 * vmig_vcpu_pause() - Stop executing; returns once no step is running.
 * @v: vCPU.
 *
 * Return: 0.
 */
VMIG_MUST_CHECK int vmig_vcpu_pause(struct vmig_vcpu *v);

/**
 * vmig_vcpu_resume() - Continue executing.
 * @v: vCPU.
 *
 * Return: 0.
 */
VMIG_MUST_CHECK int vmig_vcpu_resume(struct vmig_vcpu *v);

/**
 * vmig_vcpu_running() - Whether the vCPU executes now.
 * @v: vCPU.
 *
 * Return: true when running.
 */
bool vmig_vcpu_running(struct vmig_vcpu *v);

/**
 * vmig_vcpu_save() - The vCPU's registers (a program counter and an
 * accumulator mirroring the RAM header), as an opaque blob.
 * @v:   paused vCPU.
 * @buf: output.
 * @cap: its size.
 *
 * Return: the blob's length, or -EBUSY (running).
 */
VMIG_MUST_CHECK ssize_t vmig_vcpu_save(struct vmig_vcpu *v, void *buf,
                                       size_t cap);

/**
 * vmig_vcpu_load() - Load registers saved by vmig_vcpu_save(); they must
 * agree with the program's state in RAM (loaded first), or be the reset
 * values when RAM holds no program.
 * @v:   paused vCPU.
 * @buf: blob.
 * @len: its length.
 *
 * Return: 0; -EBADMSG (malformed, or disagreeing with RAM); -EBUSY.
 */
VMIG_MUST_CHECK int vmig_vcpu_load(struct vmig_vcpu *v, const void *buf,
                                   size_t len);

/**
 * vmig_vcpu_hook_errors() - How many times the step hook failed.
 * @v: vCPU.
 *
 * Return: the count.
 */
uint64_t vmig_vcpu_hook_errors(struct vmig_vcpu *v);

#endif /* VMIG_GUEST_H */
