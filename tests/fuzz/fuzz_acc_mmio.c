/* SPDX-License-Identifier: MIT */
/*
 * fuzz_acc_mmio.c - a hostile guest against the accelerator model.
 *
 * The device starts each input freshly reset and set up by the guest
 * driver (so rings exist), over 64 KiB of guest memory.  The input is a
 * list of 8-byte operations: register writes and reads anywhere in BAR0,
 * 4-byte stores anywhere in guest memory (SQEs, ring entries, buffers),
 * waits for the worker, stop + save + load + resume, and resets.  The
 * device must never crash, never touch memory outside guest RAM (ASan),
 * and every state it saves must load back.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "acc_flatmem.h"
#include "acc_model.h"
#include "guest-driver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM (64u << 10)

static struct acc_model *model;
static struct acc_flatmem mem;

static uint32_t
rd(void *opaque, uint32_t off)
{
    return acc_model_mmio_read(opaque, off);
}

static void
wr(void *opaque, uint32_t off, uint32_t val)
{
    acc_model_mmio_write(opaque, off, val);
}

static const struct acc_bar_ops bar = {rd, wr};

static uint32_t
get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void
save_load(struct acc_model *m)
{
    uint8_t buf[ACC_STATE_SIZE(ACC_QP_MAX)];
    char why[256];
    size_t len = 0;

    acc_model_stop(m);
    if (acc_model_save(m, buf, sizeof(buf), &len) < 0 ||
        acc_model_load(m, buf, len, why, sizeof(why)) < 0) {
        abort(); /* whatever the guest did, the state must round-trip */
    }
    acc_model_resume(m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct acc_model_config cfg = {
        .name = "fuzz",
        .qp_count = 2,
        .isolation = ACC_ISO_QP,
        .dma = &acc_flatmem_dma_ops,
        .dma_opaque = &mem,
    };
    struct acc_gdrv_config dc = {
        .qp_count = 2,
        .sq_size = 8,
        .cq_size = 8,
        .eq_size = 4,
        .aeq_size = 4,
    };
    struct acc_gdrv drv;

    if (model == NULL) {
        if (acc_flatmem_new(RAM, &mem) < 0 || acc_model_new(&cfg, &model) < 0) {
            abort();
        }
    }
    acc_model_reset(model);
    memset(mem.base, 0, mem.size);
    if (acc_gdrv_init(&drv, mem.base, mem.size, 0x40, &dc, &bar, model) < 0) {
        abort();
    }
    for (size_t i = 0; i + 8 <= size && i < 8 * 512; i += 8) {
        const uint8_t *op = data + i;
        uint32_t off = (uint32_t)(op[1] | op[2] << 8), val = get32(op + 3);

        switch (op[0] % 8) {
        case 0:
        case 1:
        case 2:
            acc_model_mmio_write(model, off & 0x7fcu, val);
            break;
        case 3:
            (void)acc_model_mmio_read(model, off & 0x7fcu);
            break;
        case 4:
            memcpy(mem.base + (off * 4u) % (RAM - 4), op + 3, 4);
            break;
        case 5:
            (void)acc_model_wait_idle(model, 5);
            break;
        case 6:
            save_load(model);
            break;
        default:
            if (op[7] == 0x5a) {
                acc_model_reset(model);
            }
            break;
        }
    }
    (void)acc_model_wait_idle(model, 20);
    return 0;
}
