/* SPDX-License-Identifier: MIT */
/*
 * engine_priv.h - the engine object, shared by engine.c, engine_src.c and
 * engine_dst.c.
 */
#ifndef VMIG_ENGINE_PRIV_H
#define VMIG_ENGINE_PRIV_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>
#include <vmig/engine.h>

struct eng_region {
    char name[VMIG_MP_NAME_MAX + 1];
    void *host;
    uint64_t size;
    bool no_punch; /* MADV_REMOVE refused: zero pages with memset */
};

struct eng_dev {
    char name[VMIG_MP_NAME_MAX + 1];
    const struct vmig_engine_dev_ops *ops;
    void *opaque;
    uint64_t flags; /* read at the start of each migration */
    /* destination, per migration: */
    int src_index; /* the source's index for this device, -1 if none */
    uint8_t *config;
    size_t config_len;
    bool config_seen;
    uint64_t rx_off;
    bool rx_ended;
    XXH3_state_t *hash;
};

struct vmig_engine {
    vmig_ctx_t *ctx;
    const struct vmig_engine_vm_ops *ops;
    void *opaque;
    unsigned int nregions;
    struct eng_region region[VMIG_ENGINE_MAX_REGIONS];
    uint64_t ram_total;
    unsigned int ndev;
    struct eng_dev dev[VMIG_ENGINE_MAX_DEVICES];
    uint8_t *buf;                     /* VMIG_MP_PAYLOAD_MAX bytes of scratch */
    struct vmig_engine_stats *evsnap; /* migrating thread only */

    pthread_mutex_t lock; /* guards everything below */
    bool running;
    struct vmig_engine_stats st;
    struct vmig_engine_params params;
    uint64_t t_start;         /* monotonic ns, migration start */
    uint64_t t_xfer;          /* monotonic ns, bulk transfer start */
    uint64_t t_last_progress; /* monotonic ns */

    int cancel; /* atomic; set by vmig_engine_cancel() */
    uint64_t downtime_us;

    /* destination, per migration (migrating thread only): */
    uint8_t *vcpu;
    size_t vcpu_len;
    /* source index -> our index */
    int map[VMIG_ENGINE_MAX_DEVICES];
    unsigned int src_ndev;
};

uint64_t vmig__mono_ns(void);
uint64_t vmig__real_ns(void);
int vmig__engine_begin(struct vmig_engine *e, enum vmig_engine_role role);
void vmig__engine_end(struct vmig_engine *e, int ret);
void vmig__engine_set_status(struct vmig_engine *e, enum vmig_engine_status s);
void vmig__engine_set_error(struct vmig_engine *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void vmig__engine_pass(struct vmig_engine *e, unsigned int pass);
void vmig__engine_account(struct vmig_engine *e, struct vmig_mp_conn *c,
                          uint64_t ram_bytes, uint64_t zero_pages, int dev,
                          uint64_t dev_bytes);
bool vmig__engine_cancelled(struct vmig_engine *e);
int vmig__engine_throttle(struct vmig_engine *e, struct vmig_mp_conn *c);
void vmig__engine_dev_state(struct vmig_engine *e, unsigned int i,
                            enum vmig_state s);
int vmig__engine_dev_set(struct vmig_engine *e, unsigned int i,
                         enum vmig_state target, bool reset_on_fail);
void vmig__engine_devices_to_running(struct vmig_engine *e);
void vmig__engine_drop_rx(struct vmig_engine *e);

/* Frame payload sizes (docs/migration-protocol.md). */
#define ENG_RAM_HDR 24
#define ENG_DEV_HDR 16
#define ENG_DEV_END_LEN 24
#define ENG_SWITCHOVER_LEN 32
#define ENG_CONFIRM_LEN 32
#define ENG_SETUP_LEN 16
#define ENG_PASS_END_LEN 16
#define ENG_NO_DEVICE 0xffffffffu
#define ENG_SWITCHOVER_HAS_VCPU (1u << 0)

#endif /* VMIG_ENGINE_PRIV_H */
