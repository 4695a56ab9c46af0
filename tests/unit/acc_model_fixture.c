/* SPDX-License-Identifier: MIT */
/*
 * acc_model_fixture.c - the accelerator model tests' rig as cmocka
 * fixtures (acc_model_fixture.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include "acc_model_fixture.h"
#include "acc_rig.h"

const struct acc_gdrv_config drv_cfg = {
    .qp_count = QPS,
    .sq_size = 16,
    .cq_size = 16,
    .eq_size = 8,
    .aeq_size = 16,
};

int
setup_iso(void **state, uint32_t iso)
{
    struct acc_rig *r = calloc(1, sizeof(*r));

    if (r == NULL || acc_rig_init(r, RAM_SIZE, QPS, iso) < 0) {
        free(r);
        return -1;
    }
    if (acc_gdrv_init(&r->drv, r->mem.base, r->mem.size, DRV_GPA, &drv_cfg,
                      &acc_rig_bar_ops, r) < 0) {
        acc_rig_fini(r);
        free(r);
        return -1;
    }
    *state = r;
    return 0;
}

int
setup(void **state)
{
    return setup_iso(state, ACC_ISO_QP);
}

int
setup_iso_device(void **state)
{
    return setup_iso(state, ACC_ISO_DEVICE);
}

int
teardown(void **state)
{
    struct acc_rig *r = *state;

    acc_rig_fini(r);
    free(r);
    return 0;
}
