/* SPDX-License-Identifier: MIT */
/*
 * engine_src_state.h - what the source side knows about one migration:
 * the connection, the negotiated features, per device its stream
 * position, and how far the phases got (which is what a rollback must
 * undo).  Created by vmig_engine_migrate_chan() and freed when it returns;
 * only the migrating thread touches it, so it needs no lock.  Shared by
 * engine_src.c (the phases), engine_precopy.c and engine_send.c.
 */
#ifndef VMIG_ENGINE_SRC_STATE_H
#define VMIG_ENGINE_SRC_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include <vmig/engine.h>
#include "xxh_fast.h"

struct eng_mc;

/* One device's outgoing stream. */
struct eng_src_dev {
    uint64_t flags;    /* VMIG_MIGRATION_*, read when HELLO is built */
    uint64_t tx_off;   /* bytes of the device stream sent */
    bool tx_pc;        /* in PRE_COPY / PRE_COPY_P2P for this migration */
    bool tx_init_done; /* its initial precopy data has all been sent */
    unsigned int tx_restarts;
    uint64_t pc_rate;   /* bytes/s of its last precopy burst that moved
                         * enough to measure; 0: none yet */
    XXH3_state_t *hash; /* of the bytes sent, for DEV_END */
};

/* Precopy (engine_precopy.c). */
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
    uint64_t pass_pages;  /* a pass would send: dirty_pages and the clean
                           * pages its runs bridge */
    uint64_t sent0;       /* wire bytes sent when precopy began */
    uint64_t ram_rate;    /* bytes/s of the last RAM pass that moved enough
                           * to measure (its sending and its dirty
                           * collection); 0: none yet */
    /* what the switchover estimate needs besides the bytes: when the last
     * iteration's measurement ended (its dirty collection, monotonic ns),
     * how long that collection and the iteration took, the device bytes
     * pending after it, the time the precopy devices took to report
     * their state (a measured stand-in for a stop arc) */
    uint64_t t_meas;
    uint64_t collect_ns;
    uint64_t pass_ns;
    uint64_t dev_pending;
    uint64_t arc_ns;
    uint64_t *bm[VMIG_ENGINE_MAX_REGIONS];
};

struct eng_src {
    struct vmig_engine *e;
    struct vmig_chan *ch; /* the caller's, until the migration call ends */
    struct vmig_mp_conn *c;
    struct vmig_engine_params p; /* as they were when the migration began */
    uint64_t features;           /* accepted by the destination */

    /* switchover-ack */
    uint32_t ack_req;   /* id of the last SWITCHOVER_REQ sent; 0: none */
    uint32_t ack_got;   /* id of the last SWITCHOVER_ACK received */
    uint64_t t_ack_req; /* monotonic ns it was sent */

    /* how far the phases got: what a failure must undo */
    bool refused_here;  /* we refused (mixed P2P): tell the peer */
    bool pc_on;         /* precopy began */
    bool touched;       /* a device left RUNNING */
    bool paused;        /* the vCPUs are paused */
    bool committed;     /* past the commit point (GO, or SWITCHOVER
                         * without the commit protocol) */
    bool go_sent;       /* GO may have reached the destination */
    bool dst_discarded; /* after GO: the destination said it discarded
                         * the VM (ERROR, RECOVER_REPLY DISCARDED), or
                         * the operator overrode: resuming here is safe */
    bool vcpu_sent;     /* a VCPU frame went out */
    uint64_t mig_id;    /* the destination's id for this migration (READY) */

    uint64_t pause_real; /* CLOCK_REALTIME ns at the pause */
    uint64_t pause_mono; /* monotonic ns at the pause */
    int first_dev_seen;  /* atomic: a stop-copy DEV_DATA frame went out */
    uint64_t pc_sent;    /* wire bytes sent before the pause */
    uint64_t downtime_us;

    /* the destination's ERROR, when it sent one: its errno (positive;
     * 0: none) and reason (a check reports them as its answer) */
    int peer_err;
    char peer_reason[VMIG_MP_REASON_MAX + 1];

    struct eng_pc pc;
    struct eng_src_dev dev[VMIG_ENGINE_MAX_DEVICES];
    struct eng_mc *mc; /* parallel channels (engine_chan_src.c), or NULL */
};

struct vmig_mp_frame;

/* engine_src.c: free the state; the completion after CONFIRM (@confirm
 * NULL: learnt on a recovery connection); the rollback after a failure
 * before GO (or a discard after it), which returns the migration's error
 * (@ret, or the destination's when its ERROR turned up only then);
 * resuming the VM here. */
void vmig__src_free(struct eng_src *s);
void vmig__src_finish(struct eng_src *s, const struct vmig_mp_frame *confirm);
int vmig__src_rollback(struct eng_src *s, int ret);
void vmig__src_resume_here(struct eng_src *s);

/* engine_commit.c: after SWITCHOVER with the commit protocol: READY, GO,
 * CONFIRM into @f (*@confirmed false when the outcome was learnt on a
 * recovery connection instead); -EINPROGRESS when it cannot be learnt. */
int vmig__src_commit(struct eng_src *s, struct vmig_mp_frame *f,
                     bool *confirmed);
/* engine_commit.c: keep the paused VM of an unknown outcome (status
 * UNKNOWN) for vmig_engine_recover() / vmig_engine_resume_source(). */
void vmig__src_park(struct eng_src *s);
/* engine_commit.c: ask the destination until the outcome is known: 0
 * (it runs the VM), a negative errno with dst_discarded (resume here),
 * or -EINPROGRESS. */
int vmig__src_recover(struct eng_src *s);

#endif /* VMIG_ENGINE_SRC_STATE_H */
