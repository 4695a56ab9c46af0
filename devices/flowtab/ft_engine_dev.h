/* SPDX-License-Identifier: MIT */
/*
 * ft_engine_dev.h - the flowtab device model (devices/flowtab) as an
 * in-process engine device backend (struct vmig_engine_dev_ops).
 *
 * The backend drives the model's framework object (ft_model_dev()): its
 * state, its saving and resuming sessions (a reset in between reads as
 * -ENODEV), PRECOPY_INFO and MIG_DATA_SIZE.
 *
 * PRE_COPY reads come in bursts: the first read after "nothing pending"
 * asks PRECOPY_INFO and the burst hands out at most initial + dirty bytes
 * of that moment, then -ENOMSG, so a device dirtied faster than it is read
 * still lets the engine end its pass (the engine's contract).
 *
 * Not thread-safe: the engine calls a backend from its migrating thread.
 */
#ifndef FT_ENGINE_DEV_H
#define FT_ENGINE_DEV_H

#include <stdbool.h>
#include <stdint.h>
#include <vmig/engine.h>
#include "flowtab_model.h"

/**
 * struct ft_edev - one flowtab model behind the engine.
 * @m:          the model (borrowed).
 * @sgen:       generation of the saving session being read (a new one
 *              starts without a burst).
 * @in_burst:   a PRE_COPY burst is under way.
 * @burst_left: bytes the burst may still hand out.
 * @bursts:     PRE_COPY bursts started (diagnostics).
 */
struct ft_edev {
    struct ft_model *m;
    uint64_t sgen;
    bool in_burst;
    uint64_t burst_left;
    uint64_t bursts;
};

/**
 * ft_edev_init() - Wrap @m.
 * @e: backend to fill.
 * @m: the model (borrowed; must outlive the backend's use).
 */
void ft_edev_init(struct ft_edev *e, struct ft_model *m);

/**
 * ft_edev_ops() - The ops table; the opaque is a struct ft_edev.
 *
 * Return: a static table.
 */
const struct vmig_engine_dev_ops *ft_edev_ops(void);

#endif /* FT_ENGINE_DEV_H */
