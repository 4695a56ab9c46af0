/* SPDX-License-Identifier: MIT */
/*
 * fsm.c - the VFIO migration v2 state machine (Linux uAPI semantics).
 *
 * The machine, in the words of include/uapi/linux/vfio.h:
 *   STOP         the device does not change state, issue DMA or interrupts;
 *   RUNNING      the device works normally;
 *   STOP_COPY    STOP, and the saving session streams the final state;
 *   RESUMING     STOP, and the resuming session accepts a state to load;
 *   RUNNING_P2P  RUNNING, but the device issues no DMA/P2P of its own
 *                (it still accepts inbound P2P), so every device of a VM can
 *                be quiesced before any final state is read (a device's
 *                DMA into a peer would change the peer's state after it was
 *                saved);
 *   PRE_COPY     RUNNING, with a saving session for initial/dirty data;
 *   PRE_COPY_P2P RUNNING_P2P with the PRE_COPY saving session;
 *   ERROR        the device failed an arc and is in no defined state; only a
 *                device reset leaves it.
 * A device supports a state when it has every flag the state needs
 * (state_flags below).  The raw table T (fsm_raw) gives, for each current
 * state and target, the next state on the shortest path when every state is
 * available; vmig_fsm_next() skips states the device lacks by following T
 * from the skipped state, exactly as the kernel's vfio_mig_get_next_state().
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <vmig/fsm.h>
#include <vmig/vfio_uapi.h>
#include "internal.h"

/* Our numbers are the kernel's; fail the build if a header disagrees. */
_Static_assert((int)VMIG_STATE_ERROR == (int)VFIO_DEVICE_STATE_ERROR, "uapi");
_Static_assert((int)VMIG_STATE_STOP == (int)VFIO_DEVICE_STATE_STOP, "uapi");
_Static_assert((int)VMIG_STATE_RUNNING == (int)VFIO_DEVICE_STATE_RUNNING,
               "uapi");
_Static_assert((int)VMIG_STATE_STOP_COPY == (int)VFIO_DEVICE_STATE_STOP_COPY,
               "uapi");
_Static_assert((int)VMIG_STATE_RESUMING == (int)VFIO_DEVICE_STATE_RESUMING,
               "uapi");
_Static_assert((int)VMIG_STATE_RUNNING_P2P ==
                   (int)VFIO_DEVICE_STATE_RUNNING_P2P,
               "uapi");
_Static_assert((int)VMIG_STATE_PRE_COPY == (int)VFIO_DEVICE_STATE_PRE_COPY,
               "uapi");
_Static_assert((int)VMIG_STATE_PRE_COPY_P2P ==
                   (int)VFIO_DEVICE_STATE_PRE_COPY_P2P,
               "uapi");
_Static_assert(VMIG_MIGRATION_STOP_COPY == VFIO_MIGRATION_STOP_COPY, "uapi");
_Static_assert(VMIG_MIGRATION_P2P == VFIO_MIGRATION_P2P, "uapi");
_Static_assert(VMIG_MIGRATION_PRE_COPY == VFIO_MIGRATION_PRE_COPY, "uapi");
_Static_assert(VMIG_V1_RUNNING == VFIO_DEVICE_STATE_V1_RUNNING, "uapi");
_Static_assert(VMIG_V1_SAVING == VFIO_DEVICE_STATE_V1_SAVING, "uapi");
_Static_assert(VMIG_V1_RESUMING == VFIO_DEVICE_STATE_V1_RESUMING, "uapi");

#define S(x) VMIG_STATE_##x

/* clang-format off */
static const char *const state_names[VMIG_STATE__COUNT] = {
    [S(ERROR)] = "ERROR",         [S(STOP)] = "STOP",
    [S(RUNNING)] = "RUNNING",     [S(STOP_COPY)] = "STOP_COPY",
    [S(RESUMING)] = "RESUMING",   [S(RUNNING_P2P)] = "RUNNING_P2P",
    [S(PRE_COPY)] = "PRE_COPY",   [S(PRE_COPY_P2P)] = "PRE_COPY_P2P",
};
/* clang-format on */

/* Flags a device needs to have each state; ERROR is never a target. */
static const uint32_t state_flags[VMIG_STATE__COUNT] = {
    [S(ERROR)] = UINT32_MAX,
    [S(STOP)] = VMIG_MIGRATION_STOP_COPY,
    [S(RUNNING)] = VMIG_MIGRATION_STOP_COPY,
    [S(STOP_COPY)] = VMIG_MIGRATION_STOP_COPY,
    [S(RESUMING)] = VMIG_MIGRATION_STOP_COPY,
    [S(RUNNING_P2P)] = VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_P2P,
    [S(PRE_COPY)] = VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_PRE_COPY,
    [S(PRE_COPY_P2P)] = VMIG_MIGRATION__ALL,
};

/*
 * The raw table T[cur][target] (the kernel's vfio_from_fsm_table).  Cells
 * left out are ERROR (0): "no way".  Notable cells:
 *  - STOP_COPY -> PRE_COPY / PRE_COPY_P2P is ERROR: once the final state
 *    is being read, the device cannot go back to precopy;
 *  - paths never pass through STOP_COPY, RESUMING, PRE_COPY or
 *    PRE_COPY_P2P on the way elsewhere, so only the last arc of a
 *    combination transition can open a session.
 */
/* clang-format off */
static const uint8_t fsm_raw[VMIG_STATE__COUNT][VMIG_STATE__COUNT] = {
    [S(STOP)] = {
        [S(STOP)] = S(STOP),                [S(RUNNING)] = S(RUNNING_P2P),
        [S(STOP_COPY)] = S(STOP_COPY),      [S(RESUMING)] = S(RESUMING),
        [S(RUNNING_P2P)] = S(RUNNING_P2P),  [S(PRE_COPY)] = S(RUNNING_P2P),
        [S(PRE_COPY_P2P)] = S(RUNNING_P2P),
    },
    [S(RUNNING)] = {
        [S(STOP)] = S(RUNNING_P2P),         [S(RUNNING)] = S(RUNNING),
        [S(STOP_COPY)] = S(RUNNING_P2P),    [S(RESUMING)] = S(RUNNING_P2P),
        [S(RUNNING_P2P)] = S(RUNNING_P2P),  [S(PRE_COPY)] = S(PRE_COPY),
        [S(PRE_COPY_P2P)] = S(RUNNING_P2P),
    },
    [S(STOP_COPY)] = {
        [S(STOP)] = S(STOP),                [S(RUNNING)] = S(STOP),
        [S(STOP_COPY)] = S(STOP_COPY),      [S(RESUMING)] = S(STOP),
        [S(RUNNING_P2P)] = S(STOP),
        /* PRE_COPY, PRE_COPY_P2P: ERROR, no way back */
    },
    [S(RESUMING)] = {
        [S(STOP)] = S(STOP),                [S(RUNNING)] = S(STOP),
        [S(STOP_COPY)] = S(STOP),           [S(RESUMING)] = S(RESUMING),
        [S(RUNNING_P2P)] = S(STOP),         [S(PRE_COPY)] = S(STOP),
        [S(PRE_COPY_P2P)] = S(STOP),
    },
    [S(RUNNING_P2P)] = {
        [S(STOP)] = S(STOP),                [S(RUNNING)] = S(RUNNING),
        [S(STOP_COPY)] = S(STOP),           [S(RESUMING)] = S(STOP),
        [S(RUNNING_P2P)] = S(RUNNING_P2P),  [S(PRE_COPY)] = S(RUNNING),
        [S(PRE_COPY_P2P)] = S(PRE_COPY_P2P),
    },
    [S(PRE_COPY)] = {
        [S(STOP)] = S(RUNNING),             [S(RUNNING)] = S(RUNNING),
        [S(STOP_COPY)] = S(PRE_COPY_P2P),   [S(RESUMING)] = S(RUNNING),
        [S(RUNNING_P2P)] = S(RUNNING),      [S(PRE_COPY)] = S(PRE_COPY),
        [S(PRE_COPY_P2P)] = S(PRE_COPY_P2P),
    },
    [S(PRE_COPY_P2P)] = {
        [S(STOP)] = S(RUNNING_P2P),         [S(RUNNING)] = S(RUNNING_P2P),
        [S(STOP_COPY)] = S(STOP_COPY),      [S(RESUMING)] = S(RUNNING_P2P),
        [S(RUNNING_P2P)] = S(RUNNING_P2P),  [S(PRE_COPY)] = S(PRE_COPY),
        [S(PRE_COPY_P2P)] = S(PRE_COPY_P2P),
    },
};
/* clang-format on */

/*
 * Every single arc some feature set takes, and what it does to the data
 * session: RUNNING -> PRE_COPY, RUNNING_P2P -> PRE_COPY_P2P and STOP ->
 * STOP_COPY open a saving session, STOP -> RESUMING a resuming one; moves
 * among the PRE_COPY states and STOP_COPY keep it; the arcs back end it,
 * RESUMING -> STOP validating what was loaded.  The arcs that exist only
 * when an intermediate state is missing: STOP <-> RUNNING (no P2P) and
 * PRE_COPY -> STOP_COPY (no P2P).  Self arcs are no-ops.  Omitted cells
 * are VMIG_ARC_INVALID.
 */
#define A(x) VMIG_ARC_##x
/* clang-format off */
static const uint8_t arc_kind[VMIG_STATE__COUNT][VMIG_STATE__COUNT] = {
    [S(STOP)] = {
        [S(STOP)] = A(NONE),                [S(RUNNING)] = A(NONE),
        [S(RUNNING_P2P)] = A(NONE),         [S(STOP_COPY)] = A(OPEN_SAVE),
        [S(RESUMING)] = A(OPEN_RESUME),
    },
    [S(RUNNING)] = {
        [S(RUNNING)] = A(NONE),             [S(STOP)] = A(NONE),
        [S(RUNNING_P2P)] = A(NONE),         [S(PRE_COPY)] = A(OPEN_SAVE),
    },
    [S(STOP_COPY)] = {
        [S(STOP_COPY)] = A(NONE),           [S(STOP)] = A(END_SAVE),
    },
    [S(RESUMING)] = {
        [S(RESUMING)] = A(NONE),            [S(STOP)] = A(END_RESUME),
    },
    [S(RUNNING_P2P)] = {
        [S(RUNNING_P2P)] = A(NONE),         [S(STOP)] = A(NONE),
        [S(RUNNING)] = A(NONE),             [S(PRE_COPY_P2P)] = A(OPEN_SAVE),
    },
    [S(PRE_COPY)] = {
        [S(PRE_COPY)] = A(NONE),            [S(RUNNING)] = A(END_SAVE),
        [S(PRE_COPY_P2P)] = A(KEEP_SESSION),
        [S(STOP_COPY)] = A(KEEP_SESSION),
    },
    [S(PRE_COPY_P2P)] = {
        [S(PRE_COPY_P2P)] = A(NONE),        [S(RUNNING_P2P)] = A(END_SAVE),
        [S(PRE_COPY)] = A(KEEP_SESSION),    [S(STOP_COPY)] = A(KEEP_SESSION),
    },
};
/* clang-format on */

/* clang-format off */
static const char *const arc_kind_names[VMIG_ARC__COUNT] = {
    [A(INVALID)] = "invalid",         [A(NONE)] = "none",
    [A(OPEN_SAVE)] = "open-save",     [A(OPEN_RESUME)] = "open-resume",
    [A(KEEP_SESSION)] = "keep",       [A(END_SAVE)] = "end-save",
    [A(END_RESUME)] = "end-resume",
};
/* clang-format on */

const char *
vmig_state_name(unsigned int state)
{
    if (state >= VMIG_STATE__COUNT) {
        return "INVALID";
    }
    return state_names[state];
}

int
vmig_state_from_name(const char *name, enum vmig_state *out)
{
    if (name == NULL) {
        return -EINVAL;
    }
    for (unsigned int s = 0; s < VMIG_STATE__COUNT; s++) {
        const char *a = name;
        const char *b = state_names[s];

        while (*a != '\0' && *b != '\0') {
            char ca = (*a == '-') ? '_' : (char)toupper((unsigned char)*a);

            if (ca != *b) {
                break;
            }
            a++;
            b++;
        }
        if (*a == '\0' && *b == '\0') {
            *out = (enum vmig_state)s;
            return 0;
        }
    }
    return -EINVAL;
}

uint32_t
vmig_state_required_flags(unsigned int state)
{
    if (state >= VMIG_STATE__COUNT) {
        return UINT32_MAX;
    }
    return state_flags[state];
}

bool
vmig_state_supported(uint64_t flags, unsigned int state)
{
    uint32_t need = vmig_state_required_flags(state);

    return need != UINT32_MAX && (flags & need) == need;
}

int
vmig_flags_validate(uint64_t flags)
{
    if ((flags & ~(uint64_t)VMIG_MIGRATION__ALL) != 0) {
        return -EINVAL;
    }
    if (!(flags & VMIG_MIGRATION_STOP_COPY)) {
        return -EINVAL;
    }
    return 0;
}

const char *
vmig_flags_format(uint64_t flags, char *buf, size_t len)
{
    static const struct {
        uint64_t bit;
        const char *name;
    } bits[] = {
        {VMIG_MIGRATION_STOP_COPY, "STOP_COPY"},
        {VMIG_MIGRATION_P2P, "P2P"},
        {VMIG_MIGRATION_PRE_COPY, "PRE_COPY"},
    };
    size_t used = 0;
    uint64_t rest = flags;

    if (len == 0) {
        return buf;
    }
    buf[0] = '\0';
    for (size_t i = 0; i < VMIG_ARRAY_SIZE(bits); i++) {
        if (flags & bits[i].bit) {
            int n = snprintf(buf + used, len - used, "%s%s",
                             used > 0 ? "|" : "", bits[i].name);
            rest &= ~bits[i].bit;
            if (n < 0 || (size_t)n >= len - used) {
                return buf;
            }
            used += (size_t)n;
        }
    }
    if (rest != 0 || used == 0) {
        snprintf(buf + used, len - used, "%s%#llx", used > 0 ? "|" : "",
                 (unsigned long long)rest);
    }
    return buf;
}

enum vmig_state
vmig_fsm_raw_next(unsigned int cur, unsigned int target)
{
    if (cur >= VMIG_STATE__COUNT || target >= VMIG_STATE__COUNT) {
        return VMIG_STATE_ERROR;
    }
    return (enum vmig_state)fsm_raw[cur][target];
}

int
vmig_fsm_next(uint64_t flags, unsigned int cur, unsigned int target,
              enum vmig_state *next)
{
    unsigned int n;
    unsigned int hops = 0;

    if (vmig_flags_validate(flags) < 0) {
        return -EINVAL;
    }
    if (!vmig_state_supported(flags, cur) ||
        !vmig_state_supported(flags, target)) {
        return -EINVAL;
    }
    n = fsm_raw[cur][target];
    /*
     * Skip states the device lacks.  The ERROR test is what the kernel
     * lacked until 2026: T[STOP_COPY][PRE_COPY] is ERROR, ERROR is never
     * supported, and T[ERROR][x] is ERROR, so without it the loop spins.
     */
    while (n != VMIG_STATE_ERROR && !vmig_state_supported(flags, n)) {
        n = fsm_raw[n][target];
        hops++;
        if (VMIG_NEVER(hops > VMIG_STATE__COUNT)) {
            return -EINVAL;
        }
    }
    if (n == VMIG_STATE_ERROR) {
        return -EINVAL;
    }
    *next = (enum vmig_state)n;
    return 0;
}

int
vmig_fsm_path(uint64_t flags, unsigned int cur, unsigned int target,
              struct vmig_fsm_path *out)
{
    struct vmig_fsm_path p = {.len = 1};
    enum vmig_state s;
    int ret;

    if (out == NULL) {
        return -EINVAL;
    }
    /* validates flags, cur and target; also the no-op case */
    ret = vmig_fsm_next(flags, cur, target, &s);
    if (ret < 0) {
        return ret;
    }
    p.state[0] = (enum vmig_state)cur;
    while (p.state[p.len - 1] != (enum vmig_state)target) {
        ret = vmig_fsm_next(flags, p.state[p.len - 1], target, &s);
        if (ret < 0) {
            return ret;
        }
        if (VMIG_NEVER(p.len >= VMIG_FSM_PATH_MAX)) {
            return -EINVAL;
        }
        p.state[p.len++] = s;
    }
    *out = p;
    return 0;
}

const char *
vmig_fsm_path_format(const struct vmig_fsm_path *path, char *buf, size_t len)
{
    size_t used = 0;

    if (len == 0) {
        return buf;
    }
    buf[0] = '\0';
    for (unsigned int i = 0; i < path->len && i < VMIG_FSM_PATH_MAX; i++) {
        int n = snprintf(buf + used, len - used, "%s%s", i > 0 ? " -> " : "",
                         vmig_state_name(path->state[i]));
        if (n < 0 || (size_t)n >= len - used) {
            break;
        }
        used += (size_t)n;
    }
    return buf;
}

enum vmig_arc_kind
vmig_arc_classify(unsigned int from, unsigned int to)
{
    if (from >= VMIG_STATE__COUNT || to >= VMIG_STATE__COUNT) {
        return VMIG_ARC_INVALID;
    }
    return (enum vmig_arc_kind)arc_kind[from][to];
}

const char *
vmig_arc_kind_name(enum vmig_arc_kind kind)
{
    if ((unsigned int)kind >= VMIG_ARC__COUNT) {
        return "invalid";
    }
    return arc_kind_names[kind];
}

/*
 * Legacy v1 words, indexed by the word itself (NDMA is bit 3).  0 marks a
 * word that is refused; valid entries store state + 1.
 */
#define V1(st) ((uint8_t)(S(st) + 1))
/* clang-format off */
static const uint8_t v1_to_state[16] = {
    [0x0] = V1(STOP),
    [0x1] = V1(RUNNING),
    [0x2] = V1(STOP_COPY),
    [0x3] = V1(PRE_COPY),
    [0x4] = V1(RESUMING),
    /* 0x5 RESUMING|RUNNING, 0x6/0x7 error words: refused */
    [0x8] = V1(STOP),         /* NDMA redundant */
    [0x9] = V1(RUNNING_P2P),  /* new useful row */
    [0xa] = V1(STOP_COPY),    /* NDMA redundant */
    [0xb] = V1(PRE_COPY_P2P), /* new useful row */
    [0xc] = V1(RESUMING),     /* NDMA redundant */
    /* 0xd..0xf: as 0x5..0x7 */
};
/* clang-format on */

static const uint8_t state_to_v1[VMIG_STATE__COUNT] = {
    [S(ERROR)] = VMIG_V1_SAVING | VMIG_V1_RESUMING,
    [S(STOP)] = 0,
    [S(RUNNING)] = VMIG_V1_RUNNING,
    [S(STOP_COPY)] = VMIG_V1_SAVING,
    [S(RESUMING)] = VMIG_V1_RESUMING,
    [S(RUNNING_P2P)] = VMIG_V1_NDMA | VMIG_V1_RUNNING,
    [S(PRE_COPY)] = VMIG_V1_SAVING | VMIG_V1_RUNNING,
    [S(PRE_COPY_P2P)] = VMIG_V1_NDMA | VMIG_V1_SAVING | VMIG_V1_RUNNING,
};

int
vmig_v1_decode(uint32_t word, enum vmig_state *out)
{
    if (word >= VMIG_ARRAY_SIZE(v1_to_state) || v1_to_state[word] == 0) {
        return -EINVAL;
    }
    *out = (enum vmig_state)(v1_to_state[word] - 1);
    return 0;
}

int
vmig_v1_encode(unsigned int state, uint32_t *out)
{
    if (state >= VMIG_STATE__COUNT) {
        return -EINVAL;
    }
    *out = state_to_v1[state];
    return 0;
}
