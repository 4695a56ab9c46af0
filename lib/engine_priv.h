/* SPDX-License-Identifier: MIT */
/*
 * engine_priv.h - the engine object (what the VMM configured: RAM, devices,
 * params, hooks; the stats; the cancel flag) and the helpers of engine.c
 * every other engine file uses: stats and events, throttling, device
 * transitions.  Per-migration state is not here: engine_src_state.h and
 * engine_dst_state.h.
 */
#ifndef VMIG_ENGINE_PRIV_H
#define VMIG_ENGINE_PRIV_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <vmig/engine.h>
#include "timeio.h"

/* Why a wait for the peer ended after the peer timeout: the peer ("source"
 * or "destination") and the timeout in ms follow.  One wording for the
 * engine's error, the destination's ERROR and an extra channel's. */
#define VMIG__PEER_SILENT_FMT "the %s was silent for %u ms (the peer timeout)"

struct eng_region {
    char name[VMIG_MP_NAME_MAX + 1];
    void *host;
    uint64_t size;
    bool no_punch; /* MADV_REMOVE refused: zero pages with memset */
};

/* A device as the VMM added it; per-migration state is in the source's
 * struct eng_src and the destination's struct eng_dst. */
struct eng_dev {
    char name[VMIG_MP_NAME_MAX + 1];
    const struct vmig_engine_dev_ops *ops;
    void *opaque;
};

struct eng_src;
struct eng_dst;

/*
 * What the commit protocol remembers of the last migration, beyond the
 * call that ran it: its id, what this side knows of its outcome
 * (VMIG_MP_REC_*), until when a recovery contact is expected (monotonic
 * ns; 0: none), and the migration itself while it is unresolved: the
 * destination's loaded VM awaiting GO, or the source's paused VM whose
 * outcome is unknown.
 */
struct eng_rec {
    uint64_t id;
    enum vmig_engine_role role;
    unsigned int state;
    uint64_t deadline;
    char reason[VMIG_MP_REASON_MAX + 1];
    struct eng_dst *dst;
    struct eng_src *src;
    void (*release)(struct vmig_engine *e); /* frees dst or src */
};
struct eng_mc;
struct vmig_engine_chan_ops;

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
    /* the source sent GO (commit protocol) or SWITCHOVER (without it):
     * from here a cancel never resumes the VM here */
    bool committed;
    /* the commit protocol's memory of the last migration
     * (engine_commit.c) */
    struct eng_rec rec;
    /* vmig_engine_fail(): why the cancel above is a failure (0: it is
     * not), the device concerned (an index of dev[]; -1: none) */
    int fail_err;
    int fail_dev;
    char fail_reason[VMIG_MP_REASON_MAX + 1];
    /* the max_bandwidth token bucket (vmig__engine_throttle; the
     * migrating thread only): bytes it holds (negative: owed), when it
     * was last filled (0: not yet in this migration), wire bytes counted */
    double tb_tokens;
    uint64_t tb_ns;
    uint64_t tb_sent;

    /* parallel channels (engine_chan*.c): the VMM's ops, set while not
     * migrating; the destination migration extra channels may join
     * (NULL: none), and the bytes moved on extra channels, for the
     * stats' wire_bytes (both under the lock above) */
    const struct vmig_engine_chan_ops *chan_ops;
    void *chan_opaque;
    struct eng_mc *mc_cur;
    uint64_t wire_extra;
    /* source: compressible payload and what it took, main connection
     * (its latest count) and the extra channels (summed as they end) */
    uint64_t zm_raw, zm_packed, zx_raw, zx_packed;
};

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
/* Compression on @c when @features has it (zstd at @level for what this
 * side sends); a failure is named in the stats' error. */
int vmig__engine_compress(struct vmig_engine *e, struct vmig_mp_conn *c,
                          uint64_t features, int level);
void vmig__engine_pass(struct vmig_engine *e, unsigned int pass);
/* An extra channel @c that sent its last frame: its compression counts
 * into the stats (any thread). */
void vmig__engine_zaccount_extra(struct vmig_engine *e,
                                 const struct vmig_mp_conn *c);
void vmig__engine_account(struct vmig_engine *e, struct vmig_mp_conn *c,
                          uint64_t ram_bytes, uint64_t zero_pages, int dev,
                          uint64_t dev_bytes);
/* The same for bytes moved on an extra channel (any thread): @wire bytes
 * on the wire there; no progress event. */
void vmig__engine_account_extra(struct vmig_engine *e, uint64_t ram_bytes,
                                uint64_t zero_pages, int dev,
                                uint64_t dev_bytes, uint64_t wire);
bool vmig__engine_cancelled(struct vmig_engine *e);
int vmig__engine_throttle(struct vmig_engine *e, struct vmig_mp_conn *c);
/* The most bytes one frame should carry under the live max_bandwidth: a
 * multiple of @unit (at least one), @max when no limit applies. */
uint64_t vmig__engine_frame_cap(struct vmig_engine *e, uint64_t unit,
                                uint64_t max);
void vmig__engine_dev_state(struct vmig_engine *e, unsigned int i,
                            enum vmig_state s);
int vmig__engine_dev_set(struct vmig_engine *e, unsigned int i,
                         enum vmig_state target, bool reset_on_fail);

/* How vmig_engine_free() lets go of an unresolved migration (set by
 * whoever parks one in e->rec). */
void vmig__engine_on_release(struct vmig_engine *e,
                             void (*release)(struct vmig_engine *e));

/* Bytes this side sent on @c so far. */
static inline uint64_t
vmig__wire_sent(struct vmig_mp_conn *c)
{
    uint64_t sent = 0;

    vmig_mp_conn_bytes(c, &sent, NULL);
    return sent;
}

#endif /* VMIG_ENGINE_PRIV_H */
