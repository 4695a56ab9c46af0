/* SPDX-License-Identifier: MIT */
/*
 * fuzz_flowtab_env - what vmig-flowtab does with incoming migration data:
 * the device-state envelope (descriptor, records, checksums, END) around
 * the flowtab stream, loaded through flowtab_env.c into the model.
 *
 * Input: byte 0 picks how the rest is cut into writes (0: one write,
 * else pieces of (b0 % 61 + 1) * 7 bytes), the rest is an envelope for a
 * device of 8 KiB state in 4 KiB chunks.  Whatever the input, nothing
 * crashes, and unless RESUMING -> STOP succeeds the device's state is
 * exactly what it was.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/ctx.h>
#include <vmig/device.h>
#include "../../devices/flowtab/flowtab_env.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void *
no_dma(void *opaque, uint64_t iova, size_t len, bool write)
{
    (void)opaque;
    (void)iova;
    (void)len;
    (void)write;
    return NULL;
}

static const struct ft_dma_ops dma = {.translate = no_dma};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static vmig_ctx_t *ctx;
    struct ft_env env;
    struct ft_config cfg = {.state_bytes = 8192,
                            .chunk_bytes = 4096,
                            .no_thread = true,
                            .mig_ops = ft_env_dev_ops(),
                            .mig_opaque = &env};
    struct ft_p2p_rec rec = {.seq = 1, .src = 1, .len = 60};
    struct ft_model *d;
    struct vmig_dev *mig;
    uint64_t h0, l0, h1, l1;
    size_t piece;
    int ret;

    if (ctx == NULL && vmig_ctx_new("fuzz", NULL, NULL, &ctx) != 0) {
        abort();
    }
    if (size < 1 || ft_model_new(ctx, &cfg, &dma, NULL, &d) != 0) {
        return 0;
    }
    mig = ft_model_dev(d);
    /* some state of its own, so "untouched" means something */
    if (ft_env_init(&env, ctx, d, FT_MIG_FLAGS, NULL, NULL) != 0 ||
        ft_model_p2p_write(d, 0, &rec, sizeof(rec)) != 0 ||
        vmig_dev_set_state(mig, VMIG_STATE_STOP) != 0) {
        abort();
    }
    ft_model_digest(d, &h0, &l0);
    if (vmig_dev_set_state(mig, VMIG_STATE_RESUMING) != 0) {
        abort();
    }
    piece = data[0] == 0 ? size : (size_t)(data[0] % 61 + 1) * 7;
    for (size_t off = 1; off < size; off += piece) {
        size_t n = size - off < piece ? size - off : piece;

        if (vmig_dev_write(mig, data + off, n) < 0) {
            break;
        }
    }
    /* as the server's RESUMING -> STOP: the envelope, then the model */
    ret = vmig_dev_set_state(mig, VMIG_STATE_STOP);
    if (ret != 0) {
        ft_model_digest(d, &h1, &l1);
        if (h0 != h1 || l0 != l1 ||
            vmig_dev_state(mig) != VMIG_STATE_RESUMING) {
            abort(); /* a refused stream changed the device */
        }
    } else if (vmig_dev_set_state(mig, VMIG_STATE_RUNNING) != 0) {
        abort(); /* a committed state must be runnable */
    }
    ft_model_free(d);
    ft_env_fini(&env);
    return 0;
}
