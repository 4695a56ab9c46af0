/* SPDX-License-Identifier: MIT */
/*
 * acc_model_fixture.h - the accelerator model tests' rig (acc_rig.h) with
 * its guest driver, as cmocka setup/teardown (acc_model_fixture.c): 8 MiB
 * of guest RAM, two queue pairs, isolation per queue pair or per device.
 */
#ifndef ACC_MODEL_FIXTURE_H
#define ACC_MODEL_FIXTURE_H

#include <stdint.h>
#include "acc_rig.h"

#define RAM_SIZE (8u << 20)
#define DRV_GPA 0x1000u
#define BUF_GPA (1u << 20)
#define QPS 2u

extern const struct acc_gdrv_config drv_cfg;

/* *state: a struct acc_rig with isolation @iso (setup: ACC_ISO_QP,
 * setup_iso_device: ACC_ISO_DEVICE); teardown frees it. */
int setup_iso(void **state, uint32_t iso);
int setup(void **state);
int setup_iso_device(void **state);
int teardown(void **state);

#endif /* ACC_MODEL_FIXTURE_H */
