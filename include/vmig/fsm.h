/* SPDX-License-Identifier: MIT */
/*
 * fsm.h - the VFIO migration v2 state machine, with the kernel's semantics.
 *
 * States and feature flags carry the Linux uAPI values
 * (include/uapi/linux/vfio.h, enum vfio_device_mig_state and
 * VFIO_MIGRATION_*), so they can be passed to a kernel device or put on the
 * vfio-user wire unchanged.  vmig_fsm_next() is the kernel's
 * vfio_mig_get_next_state() algorithm, with one deliberate difference: a
 * transition the raw table forbids (STOP_COPY -> PRE_COPY/PRE_COPY_P2P) is
 * -EINVAL here, where the kernel looped forever until 2026.
 *
 * See docs/fsm.md for the tables, the session rules and the legacy v1
 * state words.
 */
#ifndef VMIG_FSM_H
#define VMIG_FSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmig/export.h>

/* enum vfio_device_mig_state; the numbers are ABI. */
enum vmig_state {
    VMIG_STATE_ERROR = 0,
    VMIG_STATE_STOP = 1,
    VMIG_STATE_RUNNING = 2,
    VMIG_STATE_STOP_COPY = 3,
    VMIG_STATE_RESUMING = 4,
    VMIG_STATE_RUNNING_P2P = 5,
    VMIG_STATE_PRE_COPY = 6,
    VMIG_STATE_PRE_COPY_P2P = 7,
    VMIG_STATE__COUNT
};

/* struct vfio_device_feature_migration flags; the numbers are ABI. */
#define VMIG_MIGRATION_STOP_COPY (1u << 0)
#define VMIG_MIGRATION_P2P (1u << 1)
#define VMIG_MIGRATION_PRE_COPY (1u << 2)
#define VMIG_MIGRATION__ALL                                                    \
    (VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_P2P | VMIG_MIGRATION_PRE_COPY)

/* Longest path vmig_fsm_path() can return, both ends included. */
#define VMIG_FSM_PATH_MAX 8

/**
 * struct vmig_fsm_path - every state a combination transition passes.
 * @len:   number of entries in @state; 1 when cur == target.
 * @state: state[0] is the current state, state[len - 1] the target.
 */
struct vmig_fsm_path {
    unsigned int len;
    enum vmig_state state[VMIG_FSM_PATH_MAX];
};

/*
 * What a single arc does to the device's data session.
 * A session is the saving or resuming stream between the device and the
 * VMM (the kernel's data_fd).
 */
enum vmig_arc_kind {
    VMIG_ARC_INVALID = 0,  /* not an arc of any feature set */
    VMIG_ARC_NONE,         /* a legal arc that opens/ends no session */
    VMIG_ARC_OPEN_SAVE,    /* RUNNING->PRE_COPY, RUNNING_P2P->PRE_COPY_P2P,
                              STOP->STOP_COPY */
    VMIG_ARC_OPEN_RESUME,  /* STOP->RESUMING */
    VMIG_ARC_KEEP_SESSION, /* moves inside {PRE_COPY, PRE_COPY_P2P,
                              STOP_COPY} */
    VMIG_ARC_END_SAVE,     /* PRE_COPY->RUNNING, PRE_COPY_P2P->RUNNING_P2P,
                              STOP_COPY->STOP */
    VMIG_ARC_END_RESUME,   /* RESUMING->STOP: validate the loaded state */
    VMIG_ARC__COUNT
};

/**
 * vmig_state_name() - "STOP", "RUNNING", ... for a state number.
 * @state: any number; out-of-range values are accepted.
 *
 * Return: a static string; "INVALID" for numbers outside 0..7.
 */
VMIG_EXPORT const char *vmig_state_name(unsigned int state);

/**
 * vmig_state_from_name() - Parse a state name (case-insensitive, "-" and
 * "_" equivalent, so "pre-copy" and "PRE_COPY" both work).
 * @name: the text.
 * @out:  receives the state; untouched on failure.
 *
 * Return: 0, or -EINVAL for an unknown name.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_state_from_name(const char *name,
                                                     enum vmig_state *out);

/**
 * vmig_state_required_flags() - Feature flags a device needs for @state.
 * @state: state number.
 *
 * Return: the flag mask (STOP_COPY for the base states, +P2P, +PRE_COPY);
 * UINT32_MAX for ERROR and out-of-range numbers, which no device supports
 * as a target.
 */
VMIG_EXPORT uint32_t vmig_state_required_flags(unsigned int state);

/**
 * vmig_state_supported() - Whether a device with @flags has @state.
 * @flags: the device's migration flags.
 * @state: state number.
 *
 * Return: true when every flag @state needs is in @flags; false for ERROR.
 */
VMIG_EXPORT bool vmig_state_supported(uint64_t flags, unsigned int state);

/**
 * vmig_flags_validate() - Check a migration-flags word from a device.
 * @flags: the word.
 *
 * STOP_COPY is mandatory; bits other than STOP_COPY, P2P and PRE_COPY are
 * refused so that future bits can be defined without breaking anyone
 * (a driver must sanitize what userspace gives it, as the kernel does).
 *
 * Return: 0, or -EINVAL.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_flags_validate(uint64_t flags);

/**
 * vmig_flags_format() - "STOP_COPY|P2P|PRE_COPY" into @buf.
 * @flags: any word; unknown bits are shown as "0x..".
 * @buf:   output buffer, always NUL-terminated when @len > 0.
 * @len:   size of @buf.
 *
 * Return: @buf.
 */
VMIG_EXPORT const char *vmig_flags_format(uint64_t flags, char *buf,
                                          size_t len);

/**
 * vmig_fsm_raw_next() - The raw transition table T[cur][target].
 * @cur:    state number.
 * @target: state number.
 *
 * This is the table before feature filtering, as in the kernel's
 * vfio_mig_get_next_state().  Out-of-range inputs give ERROR.
 *
 * Return: the next state, or VMIG_STATE_ERROR when there is no way.
 */
VMIG_EXPORT enum vmig_state vmig_fsm_raw_next(unsigned int cur,
                                              unsigned int target);

/**
 * vmig_fsm_next() - The next single arc from @cur towards @target.
 * @flags:  the device's migration flags (must pass vmig_flags_validate()).
 * @cur:    the device's current state.
 * @target: the state the user asked for.
 * @next:   receives the next state; untouched on failure.  Equal to @cur
 *          when @cur == @target (a no-op).
 *
 * Return: 0, or -EINVAL when @flags is invalid, @cur or @target is out of
 * range or unsupported by @flags (ERROR is never supported), or no path
 * exists (STOP_COPY -> PRE_COPY, STOP_COPY -> PRE_COPY_P2P).
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_fsm_next(uint64_t flags, unsigned int cur,
                                              unsigned int target,
                                              enum vmig_state *next);

/**
 * vmig_fsm_path() - The whole path of a combination transition.
 * @flags:  the device's migration flags.
 * @cur:    current state.
 * @target: requested state.
 * @out:    receives the path; untouched on failure.
 *
 * Return: 0, or the error vmig_fsm_next() gives for the first step.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_fsm_path(uint64_t flags, unsigned int cur,
                                              unsigned int target,
                                              struct vmig_fsm_path *out);

/**
 * vmig_fsm_path_format() - "STOP -> RUNNING_P2P -> RUNNING" into @buf.
 * @path: a path from vmig_fsm_path().
 * @buf:  output, always NUL-terminated when @len > 0.
 * @len:  size of @buf.
 *
 * Return: @buf.
 */
VMIG_EXPORT const char *vmig_fsm_path_format(const struct vmig_fsm_path *path,
                                             char *buf, size_t len);

/**
 * vmig_arc_classify() - What the single arc @from -> @to does to the data
 * session.
 * @from: state number.
 * @to:   state number.
 *
 * An arc is legal when some feature set takes it as one step (for example
 * RUNNING -> STOP is a single arc for a device without P2P).  @from == @to
 * is a no-op and gives VMIG_ARC_NONE for every state but ERROR.
 *
 * Return: the kind; VMIG_ARC_INVALID for arcs no feature set takes.
 */
VMIG_EXPORT enum vmig_arc_kind vmig_arc_classify(unsigned int from,
                                                 unsigned int to);

/**
 * vmig_arc_kind_name() - "open-save", "end-resume", ... for logs and docs.
 * @kind: an arc kind.
 *
 * Return: a static string; "invalid" for unknown values.
 */
VMIG_EXPORT const char *vmig_arc_kind_name(enum vmig_arc_kind kind);

/* Legacy v1 device_state bits (the kernel's first migration uAPI, before
 * the v2 state machine) and the NDMA bit proposed for it. */
#define VMIG_V1_RUNNING (1u << 0)
#define VMIG_V1_SAVING (1u << 1)
#define VMIG_V1_RESUMING (1u << 2)
#define VMIG_V1_NDMA (1u << 3)

/**
 * vmig_v1_decode() - Map a legacy v1 state word to a v2 state.
 * @word: RUNNING/SAVING/RESUMING/NDMA bits.
 * @out:  receives the state; untouched on failure.
 *
 * 000 STOP, 001 RUNNING, 010 STOP_COPY, 011 PRE_COPY, 100 RESUMING;
 * NDMA|001 RUNNING_P2P, NDMA|011 PRE_COPY_P2P; NDMA with 000, 010 or 100
 * is redundant and means the same as without it.  RESUMING with RUNNING
 * or SAVING (101, 110, 111; 110 and 111 are the v1 error words) and any
 * bit above NDMA are refused.
 *
 * Return: 0, or -EINVAL.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_v1_decode(uint32_t word,
                                               enum vmig_state *out);

/**
 * vmig_v1_encode() - The canonical v1 word for a v2 state.
 * @state: a state.
 * @out:   receives the word; untouched on failure.
 *
 * The canonical word never carries a redundant NDMA bit.  ERROR maps to
 * SAVING|RESUMING (110), the word the v1 kernel reported on error.
 *
 * Return: 0, or -EINVAL for out-of-range states.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_v1_encode(unsigned int state,
                                               uint32_t *out);

#endif /* VMIG_FSM_H */
