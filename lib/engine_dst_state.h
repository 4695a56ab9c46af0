/* SPDX-License-Identifier: MIT */
/*
 * engine_dst_state.h - what the destination side knows about one
 * migration: the connection, the source's HELLO and our answer, which of
 * our devices is which of the source's, per device what arrived so far,
 * and how far the phases got (what a failure must undo).  Created by
 * vmig_engine_incoming_chan() and freed when it returns; only the
 * migrating thread touches it.  Shared by engine_dst.c (the phases),
 * engine_dst_hello.c (the verdict on HELLO) and engine_dst_frames.c (the
 * frames of the stream).
 */
#ifndef VMIG_ENGINE_DST_STATE_H
#define VMIG_ENGINE_DST_STATE_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <vmig/engine.h>
#include "xxh_fast.h"

struct eng_mc;

/* One of our devices: what it is to the source, what arrived for it. */
struct eng_dst_dev {
    int src_index;  /* the source's index for this device, -1 if none */
    uint64_t flags; /* VMIG_MIGRATION_*, read when HELLO is judged */
    uint8_t *config;
    size_t config_len;
    bool config_seen;
    uint64_t rx_off;    /* device stream bytes received */
    bool rx_ended;      /* DEV_END arrived and matched */
    bool rx_stopcopy;   /* data without the PRECOPY flag arrived */
    XXH3_state_t *hash; /* of the bytes received */
};

struct eng_dst {
    struct vmig_engine *e;
    struct vmig_chan *ch;
    struct vmig_mp_conn *c;
    struct vmig_engine_params p;
    struct vmig_mp_hello *h;          /* the source's offer */
    struct vmig_mp_hello_reply *rp;   /* our answer */
    uint64_t features;                /* accepted */
    int map[VMIG_ENGINE_MAX_DEVICES]; /* source index -> ours, or -1 */
    unsigned int src_ndev;

    /* what arrived besides device data */
    uint8_t *vcpu;
    size_t vcpu_len;
    struct vmig_mp_switchover sw;
    uint64_t t_sw;   /* monotonic ns SWITCHOVER arrived */
    uint32_t sw_seq; /* its sequence number */

    /* how far the phases got: what a failure must undo */
    bool touched;      /* devices left RUNNING (RESUMING) */
    bool resumed;      /* the vCPUs were resumed here */
    bool send_err;     /* on failure, an ERROR is due (the peer listens) */
    bool peer_aborted; /* the source sent ABORT */
    /* the commit protocol (engine_dst_finish.c) */
    uint64_t id;       /* this migration's id, sent in READY */
    bool ready;        /* READY was sent: resume only on GO */
    bool confirm_lost; /* resumed on GO, CONFIRM not delivered */

    /* why it failed, for the ERROR frame */
    int fail_dev; /* the source's device index, or -1 */
    char reason[VMIG_MP_REASON_MAX + 1];

    struct eng_dst_dev dev[VMIG_ENGINE_MAX_DEVICES];
    /* parallel channels (engine_chan_dst.c), or NULL; after CHANNEL_SYNC
     * device data arrives on them only */
    struct eng_mc *mc;
    bool chan_sync;
};

static inline void vmig__dst_fail(struct eng_dst *d, int dev, const char *fmt,
                                  ...) __attribute__((format(printf, 3, 4)));

/* Why the migration failed, for the ERROR frame: the first reason wins. */
static inline void
vmig__dst_fail(struct eng_dst *d, int dev, const char *fmt, ...)
{
    va_list ap;

    if (d->reason[0] != '\0') {
        return;
    }
    d->fail_dev = dev;
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
    va_end(ap);
}

/*
 * Judge the source's HELLO (d->h) into our answer (d->rp), matching
 * devices by name into d->map.  Return true when the migration may go on.
 * engine_dst_hello.c.
 */
bool vmig__dst_evaluate(struct eng_dst *d);

/*
 * vmig_mp_recv_placed()'s place callback (@opaque: the struct eng_dst):
 * RAM pages go straight from the socket into guest RAM when the frame's
 * header is sound (the RAM handler then checks it again and skips the
 * copy).  The checksum is verified after the write; a bad frame fails
 * the migration and the destination's RAM is discarded with it.
 * engine_dst_frames.c.
 */
void *vmig__dst_place(void *opaque, const struct vmig_mp_hdr *hdr,
                      const uint8_t *head, size_t tail_len);

/* Guest RAM at @off of region @region for @len bytes, or NULL when the
 * range is not inside the region; zeroing pages there.  engine_dst_frames.c. */
uint8_t *vmig__dst_ram_at(const struct vmig_engine *e, uint32_t region,
                          uint64_t off, uint64_t len);
void vmig__dst_zero(struct vmig_engine *e, unsigned int region, uint8_t *p,
                    size_t len);

/*
 * Apply RAM frame @m (received as @f) on either connection: check its
 * range and the zero-page feature, then write it where it lands - through
 * ops->ram_write, by zeroing, or by a copy unless the frame was placed
 * there already.  @lock (NULL: none) is held around ram_write and zeroing
 * (the extra channels apply RAM concurrently).  Return 0, or -errno with
 * what went wrong in @why; accounting is the caller's.
 * engine_dst_frames.c.
 */
int vmig__dst_apply_ram(struct eng_dst *d, const struct vmig_mp_frame *f,
                        const struct vmig_mp_ram *m, pthread_mutex_t *lock,
                        char *why, size_t wl);

/*
 * One frame of the stream: skipped (an unknown optional type), refused
 * (unknown mandatory, out of place, malformed), or handed to its
 * handler.  Return 0 to go on, 1 after SWITCHOVER, or a negative errno.
 * engine_dst_frames.c.
 */
int vmig__dst_frame(struct eng_dst *d, const struct vmig_mp_frame *f);

/* Positive results of the phases besides 1 (a compatibility check). */
#define VMIG__DST_PENDING 2  /* source lost after READY: hold the VM */
#define VMIG__DST_ANSWERED 3 /* a RECOVER about a past migration */

/* engine_dst.c: free the state; everything but running (validate,
 * config, vCPU state); run (devices, vCPUs, CONFIRM); discard after a
 * failure (ERROR when the source listens, devices reset, vCPUs paused),
 * returning the migration's error. */
void vmig__dst_free(struct eng_dst *d);
int vmig__dst_load(struct eng_dst *d);
int vmig__dst_run(struct eng_dst *d);
int vmig__dst_discard(struct eng_dst *d, int ret);

/* engine_dst.c: a connection that is not a recovery contact. */
int vmig__dst_incoming(struct vmig_engine *e, struct vmig_chan *ch);

/* engine_dst_finish.c: READY, then wait for GO and run: 0, a negative
 * errno (discard), or VMIG__DST_PENDING. */
int vmig__dst_commit(struct eng_dst *d);
/* engine_dst_finish.c: wait for GO on d->c (after READY), then run. */
int vmig__dst_await_go(struct eng_dst *d);
/* engine_dst_finish.c: keep @d (its connection closed) for a recovery
 * connection; status RECOVERING. */
void vmig__dst_park(struct eng_dst *d);
/* engine_dst_finish.c: RECOVER @f as the first frame: answer from what
 * the engine remembers; VMIG__DST_ANSWERED. */
int vmig__dst_answer(struct eng_dst *d, const struct vmig_mp_frame *f);
/* engine_dst_finish.c: RECOVER_REPLY for migration @id. */
int vmig__dst_reply(struct eng_dst *d, uint64_t id, unsigned int state,
                    const char *reason);
/* engine_dst_finish.c: ERROR EBUSY with @reason, then let the source
 * read it before the caller closes. */
void vmig__dst_busy(struct eng_dst *d, const char *reason);
/* engine_dst_finish.c: a HELLO while a recovery window is open: ERROR
 * EBUSY; VMIG__DST_ANSWERED. */
int vmig__dst_refuse_busy(struct eng_dst *d);

/* engine_dst_recover.c: a connection while a loaded VM waits for GO. */
int vmig__dst_recover_chan(struct vmig_engine *e, struct vmig_chan *ch);

#endif /* VMIG_ENGINE_DST_STATE_H */
