/* SPDX-License-Identifier: MIT */
/*
 * acc_rig.h - an in-process test rig for the accelerator: memfd guest RAM,
 * a device model, interrupt eventfds and a guest driver view.
 */
#ifndef ACC_RIG_H
#define ACC_RIG_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <vmig/ctx.h>
#include "acc_flatmem.h"
#include "acc_model.h"
#include "guest-driver.h"

struct acc_rig {
    struct acc_flatmem mem;
    struct acc_model *m; /* current device; replaced by a migration */
    struct acc_gdrv drv;
    vmig_ctx_t *ctx;
    int irq_fd[ACC_IRQ__COUNT];
    unsigned int irq_count[ACC_IRQ__COUNT]; /* atomic */
    unsigned int resets;                    /* atomic */
    bool last_reset_guest;
    uint32_t qp_count;
    uint32_t isolation;
    pthread_mutex_t log_lock;
    char log[16384]; /* every message, newline separated, oldest dropped */
};

extern const struct acc_bar_ops acc_rig_bar_ops;
extern const struct acc_model_ops acc_rig_model_ops;

/* Create RAM of @ram_size bytes and a model; no driver yet.  0 or -errno. */
int acc_rig_init(struct acc_rig *r, uint64_t ram_size, uint32_t qp_count,
                 uint32_t isolation);

/* Create another model with the rig's callbacks and RAM. */
int acc_rig_new_model(struct acc_rig *r, uint32_t qp_count, uint32_t isolation,
                      struct acc_model **out);

void acc_rig_fini(struct acc_rig *r);

/*
 * Migrate r->m into a fresh model: stop, save, create, stop, load, free
 * the old one, resume the new one.  Returns the payload size or -errno.
 */
int acc_rig_migrate(struct acc_rig *r);

/* Whether any message logged through r->ctx contains @needle. */
bool acc_rig_log_has(struct acc_rig *r, const char *needle);

/* Reference bitwise CRC32C, independent of the table-driven one. */
uint32_t acc_rig_crc32c_ref(const void *p, size_t n);

#endif /* ACC_RIG_H */
