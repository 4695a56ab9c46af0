/* SPDX-License-Identifier: MIT */
/*
 * flowtab_priv.h - what the files of the flowtab model share (the model's
 * struct, its state layout and helpers); see flowtab_model.c.
 *
 *   flowtab_model.c   lifetime, registers, inbound P2P, inspection
 *   flowtab_state.c   the state memory, power-on contents, dirty chunks
 *   flowtab_worker.c  the flow table, ring processing, run modes
 *   flowtab_mig.c     the migration callbacks: saving and resuming
 *                     sessions of the flowtab stream
 */
#ifndef FLOWTAB_PRIV_H
#define FLOWTAB_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <xxhash.h>
#include "flowtab_model.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the stream and register layouts are little-endian");

#define FT_CTRL_MAGIC 0x4c52544342415446ull /* "FTABCTRL" */
#define REC_HDR_BYTES sizeof(struct ft_rec_hdr)
#define HDR_REC_BYTES (REC_HDR_BYTES + sizeof(struct ft_rec_stream_hdr))
#define END_REC_BYTES (REC_HDR_BYTES + sizeof(struct ft_rec_end))

/* The control block at offset 0 of the state. */
struct ft_ctrl {
    uint64_t magic;
    uint32_t ctrl;
    uint32_t status;
    uint64_t ring_iova;
    uint64_t cmpl_iova;
    uint64_t stats_iova;
    uint32_t ring_size;
    uint32_t tail;
    uint32_t head;
    uint32_t rsvd;
    uint64_t capacity;
    uint64_t flows;
    uint64_t packets;
    uint64_t bytes;
    uint64_t p2p_tx;
    uint64_t p2p_rx;
    uint64_t errors;
};
_Static_assert(sizeof(struct ft_ctrl) <= FT_CTRL_BYTES, "ctrl fits");

/* Flow key; space 0 = guest traffic, 1 = records received by P2P. */
struct ft_key {
    uint32_t src;
    uint32_t dst;
    uint16_t sport;
    uint16_t dport;
    uint8_t proto;
    uint8_t space;
    uint16_t origin;
};
_Static_assert(sizeof(struct ft_key) == 16, "key layout");

struct ft_flow {
    struct ft_key key;
    uint64_t packets;
    uint64_t bytes;
    uint64_t first_seq;
    uint64_t last_seq;
    uint32_t used;
    uint32_t rsvd;
    uint64_t rsvd2;
};
_Static_assert(sizeof(struct ft_flow) == FT_FLOW_BYTES, "flow layout");

enum run_mode { MODE_STOPPED, MODE_NO_P2P, MODE_FULL };
enum out_kind { OUT_NONE, OUT_INITIAL, OUT_DIRTY, OUT_END };

struct save_session {
    bool open;
    bool hdr_pending;
    bool end_sent;
    uint64_t *unsent;
    uint64_t *dirty;
    uint64_t nunsent;
    uint64_t ndirty;
    uint64_t unsent_cur;
    uint64_t dirty_cur;
    uint64_t records;
    uint64_t *csums; /* per chunk: csum of the record last sent */
    uint8_t *out;
    size_t out_len;
    size_t out_pos;
    enum out_kind out_kind;
};

struct load_session {
    bool open;
    int err;
    uint8_t *staging;
    uint64_t *got;
    uint64_t *csums; /* per chunk: csum of the record last loaded */
    uint64_t ngot;
    bool seen_hdr;
    bool seen_end;
    XXH3_state_t *xxh;
    struct ft_rec_hdr h;
    size_t hlen;
    size_t paylen;
    size_t payhave;
    uint8_t small[32]; /* HDR and END payloads */
};

struct ft_model {
    vmig_ctx_t *ctx;
    struct vmig_dev *dev; /* the device's one state machine */
    const struct ft_dma_ops *dma;
    void *dma_opaque;
    struct ft_config cfg;
    uint64_t state_bytes;
    uint32_t chunk_bytes;
    unsigned int chunk_shift;
    uint64_t nchunks;
    uint64_t capacity;
    pthread_t thread;
    bool thread_started;

    pthread_mutex_t lock;
    pthread_cond_t work_cv;
    pthread_cond_t idle_cv;
    /* guarded by lock: */
    const struct ft_peer_ops *peer;
    void *peer_opaque;
    uint8_t *state;
    uint8_t *spare; /* the state replaced by the last load; next staging */
    enum run_mode mode;
    bool quit;
    bool hold;
    unsigned int p2p_inflight;
    uint64_t reset_epoch;
    struct ft_diag diag;
    struct save_session save;
    struct load_session load;
};

#define LOG(d, lvl, ...) vmig_log((d)->ctx, (lvl), __VA_ARGS__)

static inline struct ft_ctrl *
C(const struct ft_model *d)
{
    return (struct ft_ctrl *)(void *)d->state;
}

static inline struct ft_flow *
table(const struct ft_model *d)
{
    return (struct ft_flow *)(void *)(d->state + FT_CTRL_BYTES);
}

static inline bool
bit_test(const uint64_t *bm, uint64_t i)
{
    return (bm[i / 64] >> (i % 64)) & 1u;
}

static inline void
bit_set(uint64_t *bm, uint64_t i)
{
    bm[i / 64] |= 1ull << (i % 64);
}

static inline void
bit_clear(uint64_t *bm, uint64_t i)
{
    bm[i / 64] &= ~(1ull << (i % 64));
}

/* Next set bit at or after *cur, wrapping; the caller knows one is set. */
static inline uint64_t
bit_next(const uint64_t *bm, uint64_t nbits, uint64_t *cur)
{
    uint64_t words = (nbits + 63) / 64;
    uint64_t w = (*cur % nbits) / 64;

    for (uint64_t n = 0; n <= words; n++, w = (w + 1) % words) {
        uint64_t v = bm[w];

        if (n == 0) {
            v &= ~0ull << ((*cur % nbits) % 64);
        }
        if (v != 0) {
            uint64_t i = w * 64 + (uint64_t)__builtin_ctzll(v);

            *cur = i + 1 < nbits ? i + 1 : 0;
            return i;
        }
    }
    return UINT64_MAX;
}

/* flowtab_state.c */
uint8_t *ft__big_alloc(uint64_t len, bool populate);
void ft__big_free(uint8_t *p, uint64_t len);
/* Record that [off, off + len) of the state is about to change. */
void ft__mark_dirty(struct ft_model *d, uint64_t off, uint64_t len);
/* The control block, about to be written. */
struct ft_ctrl *ft__ctrl_w(struct ft_model *d);
void ft__state_power_on(struct ft_model *d);

/* flowtab_worker.c */
enum run_mode ft__mode_of(enum vmig_state s);
/* Count one packet in the flow @key; insert the flow when new.  0 or
 * -ENOSPC. */
int ft__flow_update(struct ft_model *d, const struct ft_key *key, uint32_t len,
                    uint64_t seq, struct ft_flow **out);
/* The worker may process a descriptor now. */
bool ft__can_progress(const struct ft_model *d);
/* Change the run mode; when lowering it, wait for in-flight work. */
void ft__set_mode(struct ft_model *d, enum run_mode m);
void ft__kick(struct ft_model *d);
long ft__process_batch(struct ft_model *d, unsigned int max);
/* Write the statistics block (if any) to guest memory; lock held. */
void ft__stats_dma(struct ft_model *d);
void *ft__worker(void *arg);

/* flowtab_mig.c */
void ft__save_close(struct ft_model *d);
void ft__load_close(struct ft_model *d);

#endif /* FLOWTAB_PRIV_H */
