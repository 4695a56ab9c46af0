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
    uint64_t sent0;       /* wire bytes sent when precopy began */
    uint64_t ram_rate;    /* bytes/s of the last RAM pass that moved enough
                           * to measure (its sending and its dirty
                           * collection); 0: none yet */
    uint64_t *bm[VMIG_ENGINE_MAX_REGIONS];
};

struct eng_src {
    struct vmig_engine *e;
    struct vmig_mp_conn *c;
    struct vmig_engine_params p; /* as they were when the migration began */
    uint64_t features;           /* accepted by the destination */

    /* switchover-ack */
    uint32_t ack_req;   /* id of the last SWITCHOVER_REQ sent; 0: none */
    uint32_t ack_got;   /* id of the last SWITCHOVER_ACK received */
    uint64_t t_ack_req; /* monotonic ns it was sent */

    /* how far the phases got: what a failure must undo */
    bool refused_here; /* we refused (mixed P2P): tell the peer */
    bool pc_on;        /* precopy began */
    bool touched;      /* a device left RUNNING */
    bool paused;       /* the vCPUs are paused */
    bool committed;    /* SWITCHOVER was sent */
    bool vcpu_sent;    /* a VCPU frame went out */

    uint64_t pause_real; /* CLOCK_REALTIME ns at the pause */
    uint64_t pause_mono; /* monotonic ns at the pause */
    uint64_t pc_sent;    /* wire bytes sent before the pause */
    uint64_t downtime_us;

    /* the destination's ERROR, when it sent one: its errno (positive;
     * 0: none) and reason (a check reports them as its answer) */
    int peer_err;
    char peer_reason[VMIG_MP_REASON_MAX + 1];

    struct eng_pc pc;
    struct eng_src_dev dev[VMIG_ENGINE_MAX_DEVICES];
};

#endif /* VMIG_ENGINE_SRC_STATE_H */
