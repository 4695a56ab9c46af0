/* SPDX-License-Identifier: MIT */
/*
 * fuzz_acc_state.c - acc_model_load() on arbitrary bytes.
 *
 * Each input is tried as it is and again with its CRC32C trailer fixed up,
 * so the fuzzer also reaches the field validation behind the checksum.
 * Whatever loads must save back to the very same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "acc_flatmem.h"
#include "acc_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct acc_model *model;
static struct acc_flatmem mem;

static struct acc_model *
get_model(void)
{
    struct acc_model_config cfg = {
        .name = "fuzz",
        .qp_count = 2,
        .isolation = ACC_ISO_QP,
        .dma = &acc_flatmem_dma_ops,
        .dma_opaque = &mem,
    };

    if (model == NULL) {
        if (acc_flatmem_new(4096, &mem) < 0 ||
            acc_model_new(&cfg, &model) < 0) {
            abort();
        }
        acc_model_stop(model);
    }
    return model;
}

static void
try_load(struct acc_model *m, const uint8_t *p, size_t n)
{
    uint8_t out[ACC_STATE_SIZE(ACC_QP_MAX)];
    char why[256];
    size_t len = 0;

    if (acc_model_load(m, p, n, why, sizeof(why)) < 0) {
        if (why[0] == '\0') {
            abort(); /* every refusal says why */
        }
        return;
    }
    if (acc_model_save(m, out, sizeof(out), &len) < 0 || len != n ||
        memcmp(out, p, n) != 0) {
        abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct acc_model *m = get_model();
    uint8_t *copy;
    uint32_t crc;

    try_load(m, data, size);
    if (size < 4 || size > 4096) {
        return 0;
    }
    copy = malloc(size);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, data, size);
    crc = acc_crc32c(0, copy, size - 4);
    for (int i = 0; i < 4; i++) {
        copy[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    }
    try_load(m, copy, size);
    free(copy);
    return 0;
}
