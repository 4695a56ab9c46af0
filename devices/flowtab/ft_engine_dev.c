/* SPDX-License-Identifier: MIT */
/*
 * ft_engine_dev.c - see ft_engine_dev.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <vmig/device.h>
#include "ft_engine_dev.h"

void
ft_edev_init(struct ft_edev *e, struct ft_model *m)
{
    memset(e, 0, sizeof(*e));
    e->m = m;
}

static struct vmig_dev *
dev_of(const struct ft_edev *e)
{
    return ft_model_dev(e->m);
}

static int
op_get_flags(void *opaque, uint64_t *flags)
{
    *flags = vmig_dev_flags(dev_of(opaque));
    return 0;
}

static int
op_get_state(void *opaque, enum vmig_state *state)
{
    *state = vmig_dev_state(dev_of(opaque));
    return 0;
}

static int
op_set_state(void *opaque, enum vmig_state target)
{
    struct ft_edev *e = opaque;
    struct vmig_session_info si;
    int ret = vmig_dev_set_state(dev_of(e), target);

    /* a saving session opened since the last read: no burst yet */
    vmig_dev_session(dev_of(e), &si);
    if (si.kind == VMIG_SESSION_SAVE && si.generation != e->sgen) {
        e->sgen = si.generation;
        e->in_burst = false;
    }
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

    if (!is_precopy(vmig_dev_state(dev_of(e)))) {
        e->in_burst = false;
        return vmig_dev_read(dev_of(e), buf, cap, NULL);
    }
    if (!e->in_burst) {
        uint64_t initial, dirty;
        int ret = vmig_dev_precopy_info(dev_of(e), &initial, &dirty);

        if (ret < 0) {
            /* the state changed under us: let the read say why */
            return vmig_dev_read(dev_of(e), buf, cap, NULL);
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
    n = vmig_dev_read(dev_of(e), buf,
                      cap < e->burst_left ? cap : (size_t)e->burst_left, NULL);
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
    return vmig_dev_write(dev_of(opaque), buf, len);
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

    vmig_dev_reset(dev_of(e), VMIG_RESET_HOST);
    e->in_burst = false;
    return 0;
}

static int
op_precopy_info(void *opaque, uint64_t *initial, uint64_t *dirty)
{
    return vmig_dev_precopy_info(dev_of(opaque), initial, dirty);
}

static int
op_data_size(void *opaque, uint64_t *bytes)
{
    return vmig_dev_data_size(dev_of(opaque), bytes);
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
