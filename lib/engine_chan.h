/* SPDX-License-Identifier: MIT */
/*
 * engine_chan.h - parallel channels inside the engine (<vmig/engine_chan.h>
 * is the VMM's side): one migration's extra connections, shared by the
 * source (engine_chan_src.c) and the destination (engine_chan_dst.c), and
 * the hooks the phases of engine_src.c and engine_dst.c call.
 *
 * Everything in struct eng_mc below the lock is guarded by the engine's
 * lock (e->lock) and signalled with @cond; each channel's connection is
 * used by its own thread only once that thread runs.
 */
#ifndef VMIG_ENGINE_CHAN_H_PRIV
#define VMIG_ENGINE_CHAN_H_PRIV

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <vmig/engine_chan.h>
#include <vmig/migproto.h>
#include "engine_dst_state.h"
#include "engine_src_state.h"

/* One extra connection (index 1 .. count-1; slot 0, the main one, unused). */
struct eng_mc_chan {
    struct eng_mc *mc;
    unsigned int index;
    struct vmig_chan *ch;   /* from the VMM; given back by release */
    struct vmig_mp_conn *c; /* the stream over it */
    pthread_t th;
    bool th_live;    /* a thread runs (or ran) on it: join it */
    bool done;       /* its work ended (CHANNEL_END sent / read) */
    bool first_out;  /* source: its first device frame is out, or it
                      * found no device to take (its own thread's) */
    uint64_t frames; /* data frames sent / received on it */
    uint8_t *buf;    /* source: one chunk of device data */
};

struct eng_mc {
    struct vmig_engine *e;
    struct eng_src *s; /* the role's state: one of the two */
    struct eng_dst *d;
    unsigned int count;    /* connections, the main one included */
    uint64_t id_hi, id_lo; /* the migration id the channels join with */
    int abort;             /* atomic: every channel stops at once */
    /* atomic: when any connection of this migration, the main one
     * included, last heard from the peer (CLOCK_MONOTONIC ms); each
     * connection's peer timeout counts from it too (chan_priv.h,
     * vmig__chan_share_heard()) */
    uint64_t heard;
    pthread_cond_t cond;

    /* under e->lock */
    unsigned int joined; /* destination: extra channels joined */
    unsigned int ndone;  /* extra channels whose work ended */
    bool go;             /* destination: CHANNEL_SYNC handled */
    bool stopped;        /* destination: torn down, no more joins */
    int err;             /* the first failure (negative errno) */
    /* source: the stop-copy work still to hand out */
    unsigned int next_dev;
    unsigned int dev_first; /* channels with first_out set */
    bool ram_spread;        /* guest RAM goes over the channels too */
    unsigned int ram_region;
    uint64_t ram_off;
    uint64_t ram_pages; /* pages sent by every channel */
    /* destination: which channel carries each source device (0: none) */
    unsigned int owner[VMIG_MP_MAX_DEVICES];
    pthread_mutex_t ram_lock; /* destination: serialises the ram_write hook */

    struct eng_mc_chan ch[VMIG_MP_MAX_CHANNELS];
};

/* --- source (engine_chan_src.c) */

/* The CHANNELS feature bit when this migration may offer it, else 0. */
uint64_t vmig__mc_offer(const struct eng_src *s);
/* Phase after HELLO: CHANNELS / CHANNELS_ACK, then every extra
 * connection opened and joined; nothing changes on either side yet. */
int vmig__mc_src_open(struct eng_src *s);
/* Stop-copy over every channel: config, CHANNEL_SYNC, the vCPU state, the
 * devices' data and guest RAM spread, then RAM_PASS_END when RAM moved. */
int vmig__mc_src_stop_copy(struct eng_src *s);
/* Join what runs and give every extra connection back to the VMM. */
void vmig__mc_src_free(struct eng_src *s);

/* --- destination (engine_chan_dst.c) */

/* Whether this destination grants the CHANNELS feature. */
bool vmig__mc_grantable(struct vmig_engine *e, const struct eng_dst *d);
/* Phase after HELLO: CHANNELS answered, the extra channels awaited. */
int vmig__mc_dst_grant(struct eng_dst *d);
/* Phase after SWITCHOVER: every extra channel delivered all it carried. */
int vmig__mc_dst_finish(struct eng_dst *d);
/* Stop every channel thread (no more joins) and join it; idempotent.
 * Before the devices are reset on failure. */
void vmig__mc_dst_stop(struct eng_dst *d);
/* Stop, then give every extra connection back to the VMM. */
void vmig__mc_dst_free(struct eng_dst *d);

/* --- both (engine_chan_dst.c) */

/* A fresh state for @count connections; NULL without memory. */
struct eng_mc *vmig__mc_new(struct vmig_engine *e, unsigned int count);
/* Free it: every thread joined, every connection given back before. */
void vmig__mc_free(struct eng_mc *mc);
/* With e->lock held: wait for mc->cond at most @ms milliseconds. */
void vmig__mc_wait(struct eng_mc *mc, unsigned int ms);
/* Every channel stops: the first failure @err (negative) is recorded. */
void vmig__mc_fail(struct eng_mc *mc, int err);

#endif /* VMIG_ENGINE_CHAN_H_PRIV */
