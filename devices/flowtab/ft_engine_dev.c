/* SPDX-License-Identifier: MIT */
/*
 * ft_engine_dev.c - see ft_engine_dev.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <vmig/mig.h>
#include "ft_engine_dev.h"

void
ft_edev_init(struct ft_edev *e, struct ft_model *m)
{
    memset(e, 0, sizeof(*e));
    e->m = m;
}

static int
op_get_flags(void *opaque, uint64_t *flags)
{
    struct ft_edev *e = opaque;

    *flags = vmig_mig_flags(ft_model_mig(e->m));
    return 0;
}

static int
op_get_state(void *opaque, enum vmig_state *state)
{
    struct ft_edev *e = opaque;

    *state = vmig_mig_state(ft_model_mig(e->m));
    return 0;
}

/* Remember the session a state change opened (or kept open). */
static void
learn_session(struct ft_edev *e)
{
    struct vmig_session_info si;

    vmig_mig_session(ft_model_mig(e->m), &si);
    if (si.kind == VMIG_SESSION_SAVE && si.generation != e->sgen) {
        e->sgen = si.generation;
        e->in_burst = false;
    } else if (si.kind == VMIG_SESSION_RESUME) {
        e->rgen = si.generation;
    }
}

static int
op_set_state(void *opaque, enum vmig_state target)
{
    struct ft_edev *e = opaque;
    int ret = vmig_mig_set_state(ft_model_mig(e->m), target);

    learn_session(e);
    return ret;
}

static bool
is_precopy(enum vmig_state s)
{
    return s == VMIG_STATE_PRE_COPY || s == VMIG_STATE_PRE_COPY_P2P;
}

static ssize_t
op_read(void *opaque, void *buf, size_t cap)
{
    struct ft_edev *e = opaque;
    ssize_t n;

    if (!is_precopy(vmig_mig_state(ft_model_mig(e->m)))) {
        e->in_burst = false;
        return ft_mig_read(e->m, e->sgen, buf, cap);
    }
    if (!e->in_burst) {
        uint64_t initial, dirty;
        int ret = ft_mig_precopy_info(e->m, &initial, &dirty);

        if (ret < 0) {
            /* the state changed under us: let the read say why */
            return ft_mig_read(e->m, e->sgen, buf, cap);
        }
        if (initial + dirty == 0) {
            return -ENOMSG;
        }
        e->in_burst = true;
        e->burst_left = initial + dirty;
        e->bursts++;
    }
    if (e->burst_left == 0) {
        e->in_burst = false;
        return -ENOMSG;
    }
    n = ft_mig_read(e->m, e->sgen, buf,
                    cap < e->burst_left ? cap : (size_t)e->burst_left);
    if (n > 0) {
        e->burst_left -= (uint64_t)n;
    } else {
        e->in_burst = false;
    }
    return n;
}

static int
op_write(void *opaque, const void *buf, size_t len)
{
    struct ft_edev *e = opaque;
    ssize_t n = ft_mig_write(e->m, e->rgen, buf, len);

    return n < 0 ? (int)n : 0;
}

/* No PCI ids; the descriptor names the geometry, compared byte for byte. */
static ssize_t
op_describe(void *opaque, struct vmig_pci_ids *ids, void *buf, size_t cap)
{
    struct ft_edev *e = opaque;
    int n;

    ids->valid = false;
    n = snprintf(buf, cap, "flowtab state=%llu chunk=%u",
                 (unsigned long long)ft_model_state_bytes(e->m),
                 ft_model_chunk_bytes(e->m));
    return n < 0 || (size_t)n >= cap ? -E2BIG : n;
}

static int
op_reset(void *opaque)
{
    struct ft_edev *e = opaque;

    vmig_mig_reset(ft_model_mig(e->m));
    e->in_burst = false;
    return 0;
}

static int
op_precopy_info(void *opaque, uint64_t *initial, uint64_t *dirty)
{
    struct ft_edev *e = opaque;

    return ft_mig_precopy_info(e->m, initial, dirty);
}

static int
op_data_size(void *opaque, uint64_t *bytes)
{
    struct ft_edev *e = opaque;

    return ft_mig_data_size(e->m, bytes);
}

static const struct vmig_engine_dev_ops ft_edev_ops_table = {
    .get_flags = op_get_flags,
    .get_state = op_get_state,
    .set_state = op_set_state,
    .read = op_read,
    .write = op_write,
    .describe = op_describe,
    .reset = op_reset,
    .precopy_info = op_precopy_info,
    .data_size = op_data_size,
};

const struct vmig_engine_dev_ops *
ft_edev_ops(void)
{
    return &ft_edev_ops_table;
}
