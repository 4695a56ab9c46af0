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
    bool rx_stopcopy;   /* data without the PRECOPY flag arrived */
    XXH3_state_t *hash; /* destination: received data; source: sent data */
    /* source, per migration: */
    uint64_t tx_off;   /* bytes of the device stream sent */
    bool tx_pc;        /* in PRE_COPY / PRE_COPY_P2P for this migration */
    bool tx_init_done; /* its initial precopy data has all been sent */
    unsigned int tx_restarts;
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
    /* vmig_engine_fail(): why the cancel above is a failure (0: it is
     * not), the device concerned (-1: none) */
    int fail_err;
    int fail_dev;
    char fail_reason[VMIG_MP_REASON_MAX + 1];
    uint64_t downtime_us;

    /* destination, per migration (migrating thread only): */
    uint8_t *vcpu;
    size_t vcpu_len;
    /* source index -> our index */
    int map[VMIG_ENGINE_MAX_DEVICES];
    unsigned int src_ndev;

    /* source, per migration (migrating thread only): */
    uint32_t ack_req;   /* id of the last SWITCHOVER_REQ sent; 0: none */
    uint32_t ack_got;   /* id of the last SWITCHOVER_ACK received */
    uint64_t t_ack_req; /* monotonic ns it was sent */
};

uint64_t vmig__mono_ns(void);
uint64_t vmig__real_ns(void);
int vmig__engine_begin(struct vmig_engine *e, enum vmig_engine_role role);
void vmig__engine_end(struct vmig_engine *e, int ret);
/* A failure vmig_engine_fail() asked for: its errno (positive) with the
 * device (-1: none) and reason copied out; 0 when there is none. */
int vmig__engine_failure(struct vmig_engine *e, int *dev, char *reason,
                         size_t len);
void vmig__engine_set_status(struct vmig_engine *e, enum vmig_engine_status s);
void vmig__engine_set_error(struct vmig_engine *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The preamble exchange; a TLS peer on this plaintext connection
 * (-EPROTONOSUPPORT) is named in the stats' error. */
int vmig__engine_handshake(struct vmig_engine *e, struct vmig_mp_conn *c,
                           bool source);
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

/* Bytes this side sent on @c so far. */
static inline uint64_t
vmig__wire_sent(struct vmig_mp_conn *c)
{
    uint64_t sent = 0;

    vmig_mp_conn_bytes(c, &sent, NULL);
    return sent;
}

/* engine_src.c, shared with engine_precopy.c */
int vmig__src_check_return(struct vmig_engine *e, struct vmig_mp_conn *c);
int vmig__src_wait_ack(struct vmig_engine *e, struct vmig_mp_conn *c);
int vmig__src_send_pages(struct vmig_engine *e, struct vmig_mp_conn *c,
                         unsigned int r, uint64_t off, uint32_t np,
                         bool zero_pages, bool hole_check, bool live,
                         unsigned int pass);
int vmig__src_pass_end(struct vmig_mp_conn *c, unsigned int pass, bool last,
                       uint64_t pages);
int vmig__src_send_ram(struct vmig_engine *e, struct vmig_mp_conn *c,
                       bool zero_pages, bool live, unsigned int pass,
                       bool last);
int vmig__src_dev_pump(struct vmig_engine *e, struct vmig_mp_conn *c,
                       unsigned int i, bool precopy, uint64_t budget,
                       bool *dev_err);

/* engine_precopy.c: the source's precopy state for one migration. */
struct eng_pc {
    bool ram;           /* RAM is precopied (the VMM tracks writes) */
    bool dirty_started; /* dirty_stop is due */
    bool zero;          /* zero pages negotiated */
    bool ack;           /* switchover-ack negotiated */
    bool ack_sent;      /* a SWITCHOVER_REQ covers the current streams */
    unsigned int ndev_pc;
    unsigned int pass; /* last RAM pass sent */
    unsigned int max_iter;
    unsigned int max_restarts;
    uint64_t dirty_pages; /* set in the bitmaps */
    uint64_t sent0;       /* wire bytes sent when precopy began */
    uint64_t *bm[VMIG_ENGINE_MAX_REGIONS];
};

bool vmig__pc_wanted(struct vmig_engine *e, uint64_t features,
                     const struct vmig_engine_params *p);
int vmig__pc_begin(struct vmig_engine *e, uint64_t features,
                   const struct vmig_engine_params *p, struct eng_pc *pc,
                   bool *touched);
int vmig__pc_iterate(struct vmig_engine *e, struct vmig_mp_conn *c,
                     struct eng_pc *pc, const struct vmig_engine_params *p);
int vmig__pc_final_ram(struct vmig_engine *e, struct vmig_mp_conn *c,
                       struct eng_pc *pc);
void vmig__pc_end(struct vmig_engine *e, struct eng_pc *pc);

#endif /* VMIG_ENGINE_PRIV_H */
