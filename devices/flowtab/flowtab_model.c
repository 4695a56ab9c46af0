/* SPDX-License-Identifier: MIT */
/*
 * flowtab_model.c - the flowtab device model and its migration callbacks.
 *
 * State layout (d->state, state_bytes long, migrated byte for byte):
 *   [0, FT_CTRL_BYTES)        struct ft_ctrl: registers and counters
 *   [FT_CTRL_BYTES, end)      the flow table: capacity entries of 64 bytes,
 *                             open addressing with linear probing
 * Every write to the state goes through mark_dirty(), which records the
 * chunk for an open saving session.
 *
 * Run modes (derived from the migration state by mode_of()):
 *   FULL     RUNNING, PRE_COPY: ring processing, guest DMA, outbound P2P;
 *   NO_P2P   RUNNING_P2P, PRE_COPY_P2P: as FULL but no P2P is initiated;
 *            the worker holds at the first FWD descriptor (ring order is
 *            kept);
 *   STOPPED  STOP, STOP_COPY, RESUMING: the state does not change.
 * Lowering the mode waits until no outbound P2P write is in flight, so
 * when a step returns the device is quiesced as the uAPI requires
 * ("the device must complete in-progress P2P before returning").
 *
 * Saving session: unsent = chunks not yet sent in this session (initial
 * data), dirty = chunks sent and written since.  A chunk is in at most one
 * of them; one record is staged in out[] and handed to readers in pieces.
 *
 * Migration: the device's framework object (<vmig/device.h>) owns the
 * state machine and the sessions; the callbacks here (ft_model_step(),
 * _save(), _load(), ...) only move the model's run mode and produce or
 * consume the stream.
 *
 * Locking: lock guards everything below it in struct ft_model.  The
 * framework's lock is taken before it (every migration callback runs with
 * it held and takes lock); the peer callback is called with lock
 * released.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
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

static struct ft_ctrl *
C(const struct ft_model *d)
{
    return (struct ft_ctrl *)(void *)d->state;
}

static struct ft_flow *
table(const struct ft_model *d)
{
    return (struct ft_flow *)(void *)(d->state + FT_CTRL_BYTES);
}

static uint8_t *
big_alloc(uint64_t len, bool populate)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : 0),
                   -1, 0);

    return p == MAP_FAILED ? NULL : p;
}

static void
big_free(uint8_t *p, uint64_t len)
{
    if (p != NULL) {
        munmap(p, len);
    }
}

static bool
bit_test(const uint64_t *bm, uint64_t i)
{
    return (bm[i / 64] >> (i % 64)) & 1u;
}

static void
bit_set(uint64_t *bm, uint64_t i)
{
    bm[i / 64] |= 1ull << (i % 64);
}

static void
bit_clear(uint64_t *bm, uint64_t i)
{
    bm[i / 64] &= ~(1ull << (i % 64));
}

/* Next set bit at or after *cur, wrapping; the caller knows one is set. */
static uint64_t
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

static enum run_mode
mode_of(enum vmig_state s)
{
    switch (s) {
    case VMIG_STATE_RUNNING:
    case VMIG_STATE_PRE_COPY:
        return MODE_FULL;
    case VMIG_STATE_RUNNING_P2P:
    case VMIG_STATE_PRE_COPY_P2P:
        return MODE_NO_P2P;
    default:
        return MODE_STOPPED;
    }
}

/* Record that [off, off + len) of the state is about to change. */
static void
mark_dirty(struct ft_model *d, uint64_t off, uint64_t len)
{
    if (!d->save.open) {
        return;
    }
    for (uint64_t c = off >> d->chunk_shift;
         c <= (off + len - 1) >> d->chunk_shift; c++) {
        if (!bit_test(d->save.unsent, c) && !bit_test(d->save.dirty, c)) {
            bit_set(d->save.dirty, c);
            d->save.ndirty++;
        }
    }
}

static struct ft_ctrl *
ctrl_w(struct ft_model *d)
{
    mark_dirty(d, 0, sizeof(struct ft_ctrl));
    return C(d);
}

static void
state_power_on(struct ft_model *d)
{
    struct ft_ctrl *c;

    memset(d->state, 0, d->state_bytes);
    c = C(d);
    c->magic = FT_CTRL_MAGIC;
    c->capacity = d->capacity;
}

/* ---------------------------------------------------------- flow table */

static uint64_t
flow_limit(const struct ft_model *d)
{
    /* keep probe chains short: at most 7/8 full */
    return d->capacity - d->capacity / 8;
}

/* Count one packet in the flow @key; insert the flow when new. */
static int
flow_update(struct ft_model *d, const struct ft_key *key, uint32_t len,
            uint64_t seq, struct ft_flow **out)
{
    struct ft_flow *t = table(d);
    uint64_t i = XXH3_64bits(key, sizeof(*key)) % d->capacity;

    /* Bounded by the capacity, so any table content (even a loaded one
     * with no free slot) terminates. */
    for (uint64_t n = 0; n < d->capacity; n++) {
        struct ft_flow *f = &t[i];

        if (f->used == 0) {
            struct ft_ctrl *c = C(d);

            if (c->flows >= flow_limit(d)) {
                return -ENOSPC;
            }
            mark_dirty(d, FT_CTRL_BYTES + i * FT_FLOW_BYTES, FT_FLOW_BYTES);
            memset(f, 0, sizeof(*f));
            f->key = *key;
            f->used = 1;
            f->first_seq = seq;
            ctrl_w(d)->flows++;
        } else if (memcmp(&f->key, key, sizeof(*key)) != 0) {
            i = i + 1 == d->capacity ? 0 : i + 1;
            continue;
        }
        mark_dirty(d, FT_CTRL_BYTES + i * FT_FLOW_BYTES, FT_FLOW_BYTES);
        f->packets++;
        f->bytes += len;
        f->last_seq = seq;
        *out = f;
        return 0;
    }
    return -ENOSPC;
}

/* -------------------------------------------------------------- worker */

static bool
can_progress(const struct ft_model *d)
{
    const struct ft_ctrl *c = C(d);

    return d->mode != MODE_STOPPED && (c->ctrl & FT_CTRL_ENABLE) &&
           c->head != c->tail && !d->hold;
}

static void
dma_error(struct ft_model *d, const char *what, uint64_t iova)
{
    struct ft_ctrl *c = ctrl_w(d);

    c->status |= FT_STATUS_DMA_ERR;
    c->ctrl &= ~FT_CTRL_ENABLE;
    c->status &= ~FT_STATUS_ENABLED;
    LOG(d, VMIG_LOG_ERR,
        "%s at iova %#llx does not translate; ring processing disabled "
        "(the guest driver must reprogram the device)",
        what, (unsigned long long)iova);
}

static void
stats_dma(struct ft_model *d)
{
    const struct ft_ctrl *c = C(d);
    struct ft_stats *s;

    if (c->stats_iova == 0) {
        return;
    }
    s = d->dma->translate(d->dma_opaque, c->stats_iova, sizeof(*s), true);
    if (s == NULL) {
        dma_error(d, "statistics block", c->stats_iova);
        return;
    }
    s->packets = c->packets;
    s->bytes = c->bytes;
    s->flows = c->flows;
    s->p2p_tx = c->p2p_tx;
    s->p2p_rx = c->p2p_rx;
    s->errors = c->errors;
    /* head last: completions below it are visible once it is */
    __atomic_store_n(&s->head, c->head, __ATOMIC_RELEASE);
}

/*
 * Process the descriptor at head.  Called with lock held; may drop it
 * around the peer write.  Return: 1 when a descriptor was consumed, 0 when
 * nothing may be done now.
 */
static int
process_one(struct ft_model *d)
{
    struct ft_ctrl *c = C(d);
    uint32_t idx;
    const struct ft_desc *dp;
    struct ft_desc desc;
    struct ft_cmpl *cp;
    struct ft_flow *f = NULL;
    struct ft_key key;
    uint16_t status = FT_ST_OK, cflags = 0;

    if (!can_progress(d)) {
        return 0;
    }
    idx = c->head & (c->ring_size - 1);
    dp = d->dma->translate(d->dma_opaque, c->ring_iova + idx * sizeof(desc),
                           sizeof(desc), false);
    if (dp == NULL) {
        dma_error(d, "descriptor", c->ring_iova + idx * sizeof(desc));
        return 0;
    }
    memcpy(&desc, dp, sizeof(desc));
    if ((desc.flags & FT_DESC_FWD) && d->peer != NULL) {
        struct ft_p2p_rec rec = {
            .seq = desc.seq,
            .src = desc.src,
            .dst = desc.dst,
            .sport = desc.sport,
            .dport = desc.dport,
            .proto = desc.proto,
            .len = desc.len,
            .origin = d->cfg.device_id,
        };
        const struct ft_peer_ops *peer = d->peer;
        void *popaque = d->peer_opaque;
        uint64_t epoch = d->reset_epoch;
        int rc;

        if (d->mode != MODE_FULL) {
            d->hold = true; /* RUNNING_P2P: initiate no P2P */
            return 0;
        }
        d->p2p_inflight++;
        pthread_mutex_unlock(&d->lock);
        rc = peer->write(popaque, 0, &rec, sizeof(rec));
        pthread_mutex_lock(&d->lock);
        if (rc < 0) {
            LOG(d, VMIG_LOG_DEBUG, "P2P write of seq %llu not accepted: %s",
                (unsigned long long)desc.seq, strerror(-rc));
        }
        if (epoch != d->reset_epoch) {
            /* reset while the write was in flight: the ring is gone */
            if (--d->p2p_inflight == 0) {
                pthread_cond_broadcast(&d->idle_cv);
            }
            return 1;
        }
        ctrl_w(d)->p2p_tx++;
        cflags |= FT_CMPL_FWD;
        /* still counted in flight: a quiescing step waits for the rest of
         * this descriptor, so the state stops changing when it returns */
    } else {
        d->p2p_inflight++;
    }
    c = C(d);
    cp = d->dma->translate(d->dma_opaque, c->cmpl_iova + idx * sizeof(*cp),
                           sizeof(*cp), true);
    if (cp == NULL) {
        dma_error(d, "completion", c->cmpl_iova + idx * sizeof(*cp));
    } else {
        memset(&key, 0, sizeof(key));
        key.src = desc.src;
        key.dst = desc.dst;
        key.sport = desc.sport;
        key.dport = desc.dport;
        key.proto = desc.proto;
        c = ctrl_w(d);
        if (flow_update(d, &key, desc.len, desc.seq, &f) < 0) {
            status = FT_ST_TABLE_FULL;
            c->errors++;
        }
        c->packets++;
        c->bytes += desc.len;
        cp->seq = desc.seq;
        cp->flow_packets = f != NULL ? f->packets : 0;
        cp->flow_bytes = f != NULL ? f->bytes : 0;
        cp->cookie = desc.cookie;
        cp->status = status;
        cp->flags = cflags;
        c->head++;
    }
    if (--d->p2p_inflight == 0) {
        pthread_cond_broadcast(&d->idle_cv);
    }
    return cp != NULL;
}

static long
process_batch(struct ft_model *d, unsigned int max)
{
    long n = 0;

    while ((unsigned int)n < max && process_one(d) > 0) {
        n++;
    }
    if (n > 0) {
        stats_dma(d);
    }
    return n;
}

static void *
worker(void *arg)
{
    struct ft_model *d = arg;

    pthread_mutex_lock(&d->lock);
    while (!d->quit) {
        if (process_batch(d, d->cfg.batch) > 0) {
            /* let register writes and state changes in */
            pthread_mutex_unlock(&d->lock);
            sched_yield();
            pthread_mutex_lock(&d->lock);
            continue;
        }
        pthread_cond_broadcast(&d->idle_cv);
        pthread_cond_wait(&d->work_cv, &d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

static void
kick(struct ft_model *d)
{
    pthread_cond_broadcast(&d->work_cv);
}

/* Change the run mode; when lowering it, wait for in-flight work. */
static void
set_mode(struct ft_model *d, enum run_mode m)
{
    bool lower = m < d->mode;

    d->mode = m;
    d->hold = false;
    if (lower) {
        while (d->p2p_inflight > 0) {
            pthread_cond_wait(&d->idle_cv, &d->lock);
        }
    }
    kick(d);
}

/* ------------------------------------------------------- saving session */

static void
save_close(struct ft_model *d)
{
    struct save_session *s = &d->save;

    free(s->unsent);
    free(s->dirty);
    free(s->csums);
    free(s->out);
    memset(s, 0, sizeof(*s));
}

static int
save_open(struct ft_model *d)
{
    struct save_session *s = &d->save;
    uint64_t words = (d->nchunks + 63) / 64;

    save_close(d);
    s->unsent = calloc(words, sizeof(uint64_t));
    s->dirty = calloc(words, sizeof(uint64_t));
    s->csums = calloc(d->nchunks, sizeof(uint64_t));
    s->out = malloc(REC_HDR_BYTES + d->chunk_bytes);
    if (s->unsent == NULL || s->dirty == NULL || s->csums == NULL ||
        s->out == NULL) {
        save_close(d);
        return -ENOMEM;
    }
    for (uint64_t c = 0; c < d->nchunks; c++) {
        bit_set(s->unsent, c);
    }
    s->nunsent = d->nchunks;
    s->hdr_pending = true;
    s->open = true;
    return 0;
}

static uint64_t
rec_seal(uint8_t *rec, uint32_t type, uint32_t len, uint64_t id)
{
    struct ft_rec_hdr h = {.type = type, .len = len, .id = id, .csum = 0};

    h.csum = XXH3_64bits_withSeed(rec + REC_HDR_BYTES, len,
                                  XXH3_64bits(&h, sizeof(h)));
    memcpy(rec, &h, sizeof(h));
    return h.csum;
}

/*
 * The whole-state digest: XXH3-128 over the csums of the CHUNK records
 * that carry each chunk's current content, in chunk order.  Each csum
 * covers its chunk's bytes, so this identifies the whole state while
 * costing O(chunks) instead of a pass over every byte during the
 * downtime.
 */
static XXH128_hash_t
state_digest(const uint64_t *csums, uint64_t nchunks)
{
    return XXH3_128bits(csums, nchunks * sizeof(uint64_t));
}

/*
 * Build the next record at @dst (room for REC_HDR_BYTES + chunk_bytes).
 * Return its length and kind, or 0 when nothing is pending.
 */
static size_t
save_next(struct ft_model *d, enum vmig_state state, uint8_t *dst,
          enum out_kind *kind)
{
    struct save_session *s = &d->save;
    uint64_t c;

    if (s->hdr_pending) {
        struct ft_rec_stream_hdr h = {
            .magic = FT_STREAM_MAGIC | (uint64_t)FT_STREAM_VERSION << 56,
            .chunk_bytes = d->chunk_bytes,
            .state_bytes = d->state_bytes,
            .nchunks = d->nchunks,
        };

        memcpy(dst + REC_HDR_BYTES, &h, sizeof(h));
        rec_seal(dst, FT_REC_HDR, sizeof(h), 0);
        *kind = OUT_INITIAL;
        s->hdr_pending = false;
        return HDR_REC_BYTES;
    }
    if (s->nunsent > 0 || s->ndirty > 0) {
        bool initial = s->nunsent > 0;

        if (initial) {
            c = bit_next(s->unsent, d->nchunks, &s->unsent_cur);
            bit_clear(s->unsent, c);
            s->nunsent--;
        } else {
            c = bit_next(s->dirty, d->nchunks, &s->dirty_cur);
            bit_clear(s->dirty, c);
            s->ndirty--;
        }
        memcpy(dst + REC_HDR_BYTES, d->state + (c << d->chunk_shift),
               d->chunk_bytes);
        s->csums[c] = rec_seal(dst, FT_REC_CHUNK, d->chunk_bytes, c);
        *kind = initial ? OUT_INITIAL : OUT_DIRTY;
        s->records++;
        d->diag.chunks_sent++;
        return REC_HDR_BYTES + d->chunk_bytes;
    }
    if (state == VMIG_STATE_STOP_COPY && !s->end_sent) {
        /* STOP_COPY and nothing unsent or dirty: every chunk's last sent
         * record carries its current content */
        XXH128_hash_t h = state_digest(s->csums, d->nchunks);
        struct ft_rec_end e = {
            .nchunks = d->nchunks,
            .records = s->records,
            .digest_high = h.high64,
            .digest_low = h.low64,
        };

        memcpy(dst + REC_HDR_BYTES, &e, sizeof(e));
        rec_seal(dst, FT_REC_END, sizeof(e), 0);
        *kind = OUT_END;
        s->end_sent = true;
        return END_REC_BYTES;
    }
    return 0;
}

/* Stage the next record in out[]; false when nothing is pending. */
static bool
save_fill(struct ft_model *d, enum vmig_state state)
{
    struct save_session *s = &d->save;

    s->out_pos = 0;
    s->out_len = save_next(d, state, s->out, &s->out_kind);
    if (s->out_len == 0) {
        s->out_kind = OUT_NONE;
    }
    return s->out_len > 0;
}

ssize_t
ft_model_save(struct ft_model *d, enum vmig_state state, void *buf, size_t len)
{
    struct save_session *s = &d->save;
    size_t copied = 0;

    if (buf == NULL || len == 0) {
        return -EINVAL;
    }
    pthread_mutex_lock(&d->lock);
    if (!s->open) {
        pthread_mutex_unlock(&d->lock);
        return -EBUSY;
    }
    while (copied < len) {
        size_t n;

        if (s->out_pos == s->out_len &&
            len - copied >= REC_HDR_BYTES + d->chunk_bytes) {
            /* room for any whole record: build it in place (one copy
             * less on the downtime path) */
            enum out_kind kind;

            n = save_next(d, state, (uint8_t *)buf + copied, &kind);
            if (n == 0) {
                break;
            }
            copied += n;
            continue;
        }
        if (s->out_pos == s->out_len && !save_fill(d, state)) {
            break;
        }
        n = s->out_len - s->out_pos;
        if (n > len - copied) {
            n = len - copied;
        }
        memcpy((uint8_t *)buf + copied, s->out + s->out_pos, n);
        s->out_pos += n;
        copied += n;
    }
    d->diag.bytes_sent += copied;
    pthread_mutex_unlock(&d->lock);
    if (copied == 0 && state != VMIG_STATE_STOP_COPY) {
        return -ENOMSG; /* PRE_COPY: no more for now */
    }
    return (ssize_t)copied;
}

static uint64_t
out_left(const struct save_session *s, enum out_kind kind)
{
    return s->out_kind == kind ? s->out_len - s->out_pos : 0;
}

int
ft_model_precopy_info(struct ft_model *d, uint64_t *initial, uint64_t *dirty)
{
    struct save_session *s = &d->save;
    uint64_t rec = REC_HDR_BYTES + d->chunk_bytes;

    pthread_mutex_lock(&d->lock);
    if (!s->open) {
        pthread_mutex_unlock(&d->lock);
        return -EINVAL;
    }
    *initial = (s->hdr_pending ? HDR_REC_BYTES : 0) + s->nunsent * rec +
               out_left(s, OUT_INITIAL);
    *dirty = s->ndirty * rec + out_left(s, OUT_DIRTY);
    pthread_mutex_unlock(&d->lock);
    return 0;
}

int
ft_model_data_size(struct ft_model *d, uint64_t *size)
{
    struct save_session *s = &d->save;
    uint64_t rec = REC_HDR_BYTES + d->chunk_bytes;

    pthread_mutex_lock(&d->lock);
    if (s->open) {
        *size = (s->hdr_pending ? HDR_REC_BYTES : 0) +
                (s->nunsent + s->ndirty) * rec + (s->out_len - s->out_pos) +
                (s->end_sent ? 0 : END_REC_BYTES);
    } else {
        *size = HDR_REC_BYTES + d->nchunks * rec + END_REC_BYTES;
    }
    pthread_mutex_unlock(&d->lock);
    return 0;
}

/* ----------------------------------------------------- resuming session */

static void
load_close(struct ft_model *d)
{
    struct load_session *l = &d->load;

    if (l->staging != NULL && d->spare == NULL) {
        d->spare = l->staging; /* kept for the next load */
    } else {
        big_free(l->staging, d->state_bytes);
    }
    free(l->got);
    free(l->csums);
    XXH3_freeState(l->xxh);
    memset(l, 0, sizeof(*l));
}

static int
load_open(struct ft_model *d)
{
    struct load_session *l = &d->load;

    load_close(d);
    /* No need to zero a reused staging area: END is refused unless every
     * chunk was loaded.  A new one is populated now, before any downtime. */
    l->staging = d->spare != NULL ? d->spare : big_alloc(d->state_bytes, true);
    d->spare = NULL;
    l->got = calloc((d->nchunks + 63) / 64, sizeof(uint64_t));
    l->csums = calloc(d->nchunks, sizeof(uint64_t));
    l->xxh = XXH3_createState();
    if (l->staging == NULL || l->got == NULL || l->csums == NULL ||
        l->xxh == NULL) {
        load_close(d);
        return -ENOMEM;
    }
    l->open = true;
    return 0;
}

/* A record header is complete: check it before any payload is taken. */
static int
rec_begin(struct ft_model *d)
{
    struct load_session *l = &d->load;
    struct ft_rec_hdr h0 = l->h;
    uint32_t type = l->h.type & ~FT_REC_OPTIONAL;

    if (l->seen_end) {
        LOG(d, VMIG_LOG_DEBUG, "stream: record type %#x after END", l->h.type);
        return -EBADMSG;
    }
    if (!l->seen_hdr && l->h.type != FT_REC_HDR) {
        LOG(d, VMIG_LOG_DEBUG, "stream: first record is type %#x, not HDR",
            l->h.type);
        return -EBADMSG;
    }
    switch (l->h.type) {
    case FT_REC_HDR:
        if (l->seen_hdr || l->h.len != sizeof(struct ft_rec_stream_hdr)) {
            LOG(d, VMIG_LOG_DEBUG, "stream: duplicate or bad HDR (len %u)",
                l->h.len);
            return -EBADMSG;
        }
        break;
    case FT_REC_CHUNK:
        if (l->h.len != d->chunk_bytes || l->h.id >= d->nchunks) {
            LOG(d, VMIG_LOG_DEBUG, "stream: bad CHUNK id %llu len %u",
                (unsigned long long)l->h.id, l->h.len);
            return -EBADMSG;
        }
        break;
    case FT_REC_END:
        if (l->h.len != sizeof(struct ft_rec_end)) {
            return -EBADMSG;
        }
        break;
    default:
        if (!(l->h.type & FT_REC_OPTIONAL) || type == 0 ||
            l->h.len > FT_REC_OPTIONAL_MAX) {
            LOG(d, VMIG_LOG_DEBUG,
                "stream: unknown mandatory record type %#x (len %u)", l->h.type,
                l->h.len);
            return -EBADMSG;
        }
        break;
    }
    h0.csum = 0;
    XXH3_64bits_reset_withSeed(l->xxh, XXH3_64bits(&h0, sizeof(h0)));
    l->paylen = l->h.len;
    l->payhave = 0;
    return 0;
}

static void
rec_data(struct ft_model *d, const uint8_t *p, size_t n)
{
    struct load_session *l = &d->load;

    XXH3_64bits_update(l->xxh, p, n);
    if (l->h.type == FT_REC_CHUNK) {
        memcpy(l->staging + (l->h.id << d->chunk_shift) + l->payhave, p, n);
    } else if (l->h.type == FT_REC_HDR || l->h.type == FT_REC_END) {
        memcpy(l->small + l->payhave, p, n);
    }
    l->payhave += n;
}

static int
rec_finish(struct ft_model *d)
{
    struct load_session *l = &d->load;

    if (XXH3_64bits_digest(l->xxh) != l->h.csum) {
        LOG(d, VMIG_LOG_DEBUG,
            "stream: checksum mismatch in record type "
            "%#x id %llu",
            l->h.type, (unsigned long long)l->h.id);
        return -EBADMSG;
    }
    switch (l->h.type) {
    case FT_REC_HDR: {
        struct ft_rec_stream_hdr h;

        memcpy(&h, l->small, sizeof(h));
        if (FT_STREAM_MAGIC_BASE(h.magic) != FT_STREAM_MAGIC) {
            LOG(d, VMIG_LOG_ERR, "stream: not a flowtab stream (magic %#llx)",
                (unsigned long long)h.magic);
            return -EBADMSG;
        }
        if (FT_STREAM_VERSION_OF(h.magic) != FT_STREAM_VERSION) {
            LOG(d, VMIG_LOG_ERR,
                "stream: format version %u not supported (this device "
                "loads version %u)",
                FT_STREAM_VERSION_OF(h.magic), FT_STREAM_VERSION);
            return -EOPNOTSUPP;
        }
        if (h.chunk_bytes != d->chunk_bytes ||
            h.state_bytes != d->state_bytes || h.nchunks != d->nchunks ||
            h.rsvd != 0) {
            LOG(d, VMIG_LOG_ERR,
                "stream: source state is %llu bytes in %u-byte chunks, this "
                "device has %llu in %u; start the destination with the "
                "source's state size and chunk size",
                (unsigned long long)h.state_bytes, h.chunk_bytes,
                (unsigned long long)d->state_bytes, d->chunk_bytes);
            return -EOPNOTSUPP;
        }
        l->seen_hdr = true;
        break;
    }
    case FT_REC_CHUNK:
        l->csums[l->h.id] = l->h.csum;
        if (!bit_test(l->got, l->h.id)) {
            bit_set(l->got, l->h.id);
            l->ngot++;
        }
        break;
    case FT_REC_END: {
        struct ft_rec_end e;
        XXH128_hash_t h;

        memcpy(&e, l->small, sizeof(e));
        if (e.nchunks != d->nchunks || l->ngot != d->nchunks) {
            LOG(d, VMIG_LOG_DEBUG, "stream: END after %llu of %llu chunks",
                (unsigned long long)l->ngot, (unsigned long long)d->nchunks);
            return -EBADMSG;
        }
        h = state_digest(l->csums, d->nchunks);
        if (h.high64 != e.digest_high || h.low64 != e.digest_low) {
            LOG(d, VMIG_LOG_DEBUG, "stream: whole-state digest mismatch");
            return -EBADMSG;
        }
        l->seen_end = true;
        break;
    }
    default:
        break; /* optional record of a newer source: skipped */
    }
    l->hlen = 0;
    return 0;
}

int
ft_model_load(struct ft_model *d, const void *buf, size_t len)
{
    struct load_session *l = &d->load;
    const uint8_t *p = buf;
    size_t left = len;
    int ret;

    if (buf == NULL && len > 0) {
        return -EINVAL;
    }
    pthread_mutex_lock(&d->lock);
    ret = l->open ? l->err : -EBUSY;
    if (ret < 0) {
        pthread_mutex_unlock(&d->lock);
        return ret;
    }
    while (ret == 0 && left > 0) {
        size_t n;

        if (l->hlen < REC_HDR_BYTES) {
            n = REC_HDR_BYTES - l->hlen;
            n = n < left ? n : left;
            memcpy((uint8_t *)&l->h + l->hlen, p, n);
            l->hlen += n;
            if (l->hlen == REC_HDR_BYTES) {
                ret = rec_begin(d);
                if (ret == 0 && l->paylen == 0) {
                    ret = rec_finish(d);
                }
            }
        } else {
            n = l->paylen - l->payhave;
            n = n < left ? n : left;
            rec_data(d, p, n);
            if (l->payhave == l->paylen) {
                ret = rec_finish(d);
            }
        }
        p += n;
        left -= n;
    }
    if (ret < 0) {
        l->err = ret;
        LOG(d, VMIG_LOG_ERR,
            "resuming: stream refused (%s); nothing was applied, the device "
            "keeps its state; reset it or restart the migration",
            strerror(-ret));
    }
    pthread_mutex_unlock(&d->lock);
    return ret;
}

/* Semantic checks of a loaded control block. */
static int
ctrl_validate(const struct ft_model *d, const struct ft_ctrl *c)
{
    const uint32_t status_bits =
        FT_STATUS_ENABLED | FT_STATUS_DMA_ERR | FT_STATUS_CFG_ERR;
    uint32_t rs = c->ring_size;

    if (c->magic != FT_CTRL_MAGIC || c->capacity != d->capacity ||
        c->flows > d->capacity || (c->ctrl & ~(uint32_t)FT_CTRL_ENABLE) != 0 ||
        (c->status & ~status_bits) != 0) {
        return -EBADMSG;
    }
    if (rs != 0 && (rs < FT_RING_MIN || rs > FT_RING_MAX || (rs & (rs - 1)))) {
        return -EBADMSG;
    }
    if ((c->ctrl & FT_CTRL_ENABLE) && rs == 0) {
        return -EBADMSG;
    }
    if (rs != 0 && (uint32_t)(c->tail - c->head) > rs) {
        return -EBADMSG;
    }
    return 0;
}

static int
load_commit(struct ft_model *d)
{
    struct load_session *l = &d->load;
    uint8_t *old;
    int ret = l->err;

    if (ret == 0 && (!l->seen_end || l->hlen != 0)) {
        LOG(d, VMIG_LOG_ERR, "resuming: stream truncated (%s)",
            l->seen_hdr ? "no END record" : "no data");
        ret = -EBADMSG;
    }
    if (ret == 0 &&
        ctrl_validate(d, (const struct ft_ctrl *)(void *)l->staging) < 0) {
        LOG(d, VMIG_LOG_ERR, "resuming: loaded control block is inconsistent");
        ret = -EBADMSG;
    }
    if (ret < 0) {
        l->err = ret;
        return ret;
    }
    old = d->state;
    d->state = l->staging;
    l->staging = old; /* load_close() keeps it as the spare */
    return 0;
}

/* ----------------------------------------------------- framework callbacks */

int
ft_model_step(struct ft_model *d, enum vmig_state from, enum vmig_state to)
{
    int ret = 0;

    pthread_mutex_lock(&d->lock);
    switch (vmig_arc_classify(from, to)) {
    case VMIG_ARC_OPEN_SAVE:
        ret = save_open(d);
        break;
    case VMIG_ARC_END_SAVE:
        save_close(d);
        break;
    case VMIG_ARC_OPEN_RESUME:
        ret = load_open(d);
        break;
    case VMIG_ARC_END_RESUME:
        ret = load_commit(d);
        if (ret == 0) {
            load_close(d);
        }
        break;
    case VMIG_ARC_NONE:
    case VMIG_ARC_KEEP_SESSION:
        break;
    default:
        ret = -EINVAL;
        break;
    }
    if (ret == 0) {
        set_mode(d, mode_of(to));
    }
    pthread_mutex_unlock(&d->lock);
    return ret;
}

void
ft_model_reset(struct ft_model *d)
{
    pthread_mutex_lock(&d->lock);
    save_close(d);
    load_close(d);
    d->reset_epoch++;
    state_power_on(d);
    d->mode = MODE_FULL;
    d->hold = false;
    kick(d);
    pthread_mutex_unlock(&d->lock);
}

static int
raw_step(void *opaque, enum vmig_state from, enum vmig_state to, bool *broken)
{
    (void)broken;
    return ft_model_step(opaque, from, to);
}

static ssize_t
raw_save(void *opaque, enum vmig_state state, void *buf, size_t len)
{
    return ft_model_save(opaque, state, buf, len);
}

static int
raw_load(void *opaque, const void *buf, size_t len)
{
    return ft_model_load(opaque, buf, len);
}

static void
raw_reset(void *opaque, enum vmig_reset_cause cause)
{
    (void)cause;
    ft_model_reset(opaque);
}

static int
raw_precopy_info(void *opaque, uint64_t *initial, uint64_t *dirty)
{
    return ft_model_precopy_info(opaque, initial, dirty);
}

static int
raw_data_size(void *opaque, uint64_t *bytes)
{
    return ft_model_data_size(opaque, bytes);
}

/* The raw stream as the device's migration data. */
static const struct vmig_dev_ops ft_raw_ops = {
    .step = raw_step,
    .save = raw_save,
    .load = raw_load,
    .reset = raw_reset,
    .precopy_info = raw_precopy_info,
    .data_size = raw_data_size,
};

/* ------------------------------------------------------------ lifetime */

int
ft_model_new(vmig_ctx_t *ctx, const struct ft_config *cfg,
             const struct ft_dma_ops *dma, void *dma_opaque,
             struct ft_model **out)
{
    struct ft_model *d;
    pthread_condattr_t ca;
    struct ft_config c = {0};
    int ret;

    if (cfg != NULL) {
        c = *cfg;
    }
    if (c.chunk_bytes == 0) {
        c.chunk_bytes = FT_DEFAULT_CHUNK_BYTES;
    }
    if (c.state_bytes == 0) {
        c.state_bytes = FT_DEFAULT_STATE_BYTES;
    }
    if (c.batch == 0) {
        c.batch = 32;
    }
    if (c.mig_flags == 0) {
        c.mig_flags = FT_MIG_FLAGS;
    }
    if (out == NULL || dma == NULL || dma->translate == NULL ||
        c.chunk_bytes < FT_MIN_CHUNK_BYTES ||
        c.chunk_bytes > FT_MAX_CHUNK_BYTES ||
        (c.chunk_bytes & (c.chunk_bytes - 1)) != 0 ||
        (c.mig_flags & ~(uint32_t)FT_MIG_FLAGS) != 0 ||
        vmig_flags_validate(c.mig_flags) < 0) {
        return -EINVAL;
    }
    if (c.state_bytes > FT_MAX_STATE_BYTES) {
        return -E2BIG;
    }
    c.state_bytes =
        (c.state_bytes + c.chunk_bytes - 1) & ~(uint64_t)(c.chunk_bytes - 1);
    if (c.state_bytes < 2ull * c.chunk_bytes) {
        c.state_bytes = 2ull * c.chunk_bytes;
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return -ENOMEM;
    }
    d->ctx = ctx;
    d->dma = dma;
    d->dma_opaque = dma_opaque;
    d->cfg = c;
    d->state_bytes = c.state_bytes;
    d->chunk_bytes = c.chunk_bytes;
    d->chunk_shift = (unsigned int)__builtin_ctz(c.chunk_bytes);
    d->nchunks = c.state_bytes / c.chunk_bytes;
    d->capacity = (c.state_bytes - FT_CTRL_BYTES) / FT_FLOW_BYTES;
    d->mode = MODE_FULL;
    d->state = big_alloc(d->state_bytes, false);
    if (d->state == NULL) {
        ret = -ENOMEM;
        goto err_free;
    }
    state_power_on(d);
    pthread_mutex_init(&d->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->work_cv, &ca);
    pthread_cond_init(&d->idle_cv, &ca);
    pthread_condattr_destroy(&ca);
    ret = vmig_dev_new(ctx, c.mig_flags,
                       c.mig_ops != NULL ? c.mig_ops : &ft_raw_ops,
                       c.mig_ops != NULL ? c.mig_opaque : d, &d->dev);
    if (ret < 0) {
        goto err_sync;
    }
    if (!c.no_thread) {
        ret = -pthread_create(&d->thread, NULL, worker, d);
        if (ret < 0) {
            goto err_mig;
        }
        d->thread_started = true;
    }
    *out = d;
    return 0;

err_mig:
    vmig_dev_free(d->dev);
err_sync:
    pthread_cond_destroy(&d->idle_cv);
    pthread_cond_destroy(&d->work_cv);
    pthread_mutex_destroy(&d->lock);
    big_free(d->state, d->state_bytes);
err_free:
    free(d);
    return ret;
}

void
ft_model_free(struct ft_model *d)
{
    if (d == NULL) {
        return;
    }
    if (d->thread_started) {
        pthread_mutex_lock(&d->lock);
        d->quit = true;
        kick(d);
        pthread_mutex_unlock(&d->lock);
        pthread_join(d->thread, NULL);
    }
    save_close(d);
    load_close(d);
    vmig_dev_free(d->dev);
    pthread_cond_destroy(&d->idle_cv);
    pthread_cond_destroy(&d->work_cv);
    pthread_mutex_destroy(&d->lock);
    big_free(d->state, d->state_bytes);
    big_free(d->spare, d->state_bytes);
    free(d);
}

void
ft_model_set_peer(struct ft_model *d, const struct ft_peer_ops *ops,
                  void *opaque)
{
    pthread_mutex_lock(&d->lock);
    /* a write already in flight completes against the old peer first */
    while (d->p2p_inflight > 0) {
        pthread_cond_wait(&d->idle_cv, &d->lock);
    }
    d->peer = ops != NULL && ops->write != NULL ? ops : NULL;
    d->peer_opaque = opaque;
    d->hold = false;
    kick(d);
    pthread_mutex_unlock(&d->lock);
}

struct vmig_dev *
ft_model_dev(struct ft_model *d)
{
    return d->dev;
}

uint64_t
ft_model_state_bytes(const struct ft_model *d)
{
    return d->state_bytes;
}

uint32_t
ft_model_chunk_bytes(const struct ft_model *d)
{
    return d->chunk_bytes;
}

/* ------------------------------------------------------------ registers */

int
ft_model_reg_read(struct ft_model *d, uint32_t off, uint32_t *val)
{
    const struct ft_ctrl *c;
    int ret = 0;

    if (val == NULL) {
        return -EINVAL;
    }
    pthread_mutex_lock(&d->lock);
    c = C(d);
    switch (off) {
    case FT_REG_ID:
        *val = FT_ID_VALUE;
        break;
    case FT_REG_VERSION:
        *val = FT_VERSION_VALUE;
        break;
    case FT_REG_CTRL:
        *val = c->ctrl;
        break;
    case FT_REG_STATUS:
        *val = c->status | (d->hold ? FT_STATUS_P2P_HOLD : 0);
        break;
    case FT_REG_RING_LO:
        *val = (uint32_t)c->ring_iova;
        break;
    case FT_REG_RING_HI:
        *val = (uint32_t)(c->ring_iova >> 32);
        break;
    case FT_REG_CMPL_LO:
        *val = (uint32_t)c->cmpl_iova;
        break;
    case FT_REG_CMPL_HI:
        *val = (uint32_t)(c->cmpl_iova >> 32);
        break;
    case FT_REG_STATS_LO:
        *val = (uint32_t)c->stats_iova;
        break;
    case FT_REG_STATS_HI:
        *val = (uint32_t)(c->stats_iova >> 32);
        break;
    case FT_REG_RING_SIZE:
        *val = c->ring_size;
        break;
    case FT_REG_TAIL:
        *val = c->tail;
        break;
    case FT_REG_HEAD:
        *val = c->head;
        break;
    case FT_REG_FLOWS:
        *val = (uint32_t)c->flows;
        break;
    case FT_REG_CAP:
        *val = c->capacity > UINT32_MAX ? UINT32_MAX : (uint32_t)c->capacity;
        break;
    case FT_REG_ERRORS:
        *val = (uint32_t)c->errors;
        break;
    default:
        ret = -EINVAL;
        break;
    }
    pthread_mutex_unlock(&d->lock);
    return ret;
}

static void
set_lo(uint64_t *r, uint32_t v)
{
    *r = (*r & 0xffffffff00000000ull) | v;
}

static void
set_hi(uint64_t *r, uint32_t v)
{
    *r = (*r & 0xffffffffull) | (uint64_t)v << 32;
}

/* CTRL.ENABLE set: check the ring configuration and its addresses. */
static int
enable_locked(struct ft_model *d)
{
    struct ft_ctrl *c = ctrl_w(d);
    uint32_t rs = c->ring_size;
    uint64_t bytes = (uint64_t)rs * sizeof(struct ft_desc);

    c->status &= ~(FT_STATUS_CFG_ERR | FT_STATUS_DMA_ERR);
    if (rs < FT_RING_MIN || rs > FT_RING_MAX || (rs & (rs - 1)) != 0 ||
        (uint32_t)(c->tail - c->head) > rs ||
        d->dma->translate(d->dma_opaque, c->ring_iova, bytes, false) == NULL ||
        d->dma->translate(d->dma_opaque, c->cmpl_iova, bytes, true) == NULL ||
        (c->stats_iova != 0 &&
         d->dma->translate(d->dma_opaque, c->stats_iova,
                           sizeof(struct ft_stats), true) == NULL)) {
        c->status |= FT_STATUS_CFG_ERR;
        LOG(d, VMIG_LOG_DEBUG,
            "enable refused: ring size %u or an address "
            "does not translate",
            rs);
        return -EINVAL;
    }
    c->ctrl |= FT_CTRL_ENABLE;
    c->status |= FT_STATUS_ENABLED;
    return 0;
}

int
ft_model_reg_write(struct ft_model *d, uint32_t off, uint32_t val)
{
    struct ft_ctrl *c;
    int ret = 0;

    pthread_mutex_lock(&d->lock);
    c = C(d);
    if (d->mode == MODE_STOPPED) {
        d->diag.reg_refused++;
        LOG(d, VMIG_LOG_DEBUG,
            "register %#x write refused: the device is stopped (its state "
            "is frozen)",
            off);
        pthread_mutex_unlock(&d->lock);
        return -EBUSY;
    }
    switch (off) {
    case FT_REG_CTRL:
        if (val & ~(uint32_t)FT_CTRL_ENABLE) {
            ret = -EINVAL;
        } else if (val & FT_CTRL_ENABLE) {
            ret = (c->ctrl & FT_CTRL_ENABLE) ? 0 : enable_locked(d);
        } else {
            c = ctrl_w(d);
            c->ctrl = 0;
            c->status &= ~FT_STATUS_ENABLED;
        }
        break;
    case FT_REG_RING_LO:
    case FT_REG_RING_HI:
    case FT_REG_CMPL_LO:
    case FT_REG_CMPL_HI:
    case FT_REG_STATS_LO:
    case FT_REG_STATS_HI:
    case FT_REG_RING_SIZE:
        if (c->ctrl & FT_CTRL_ENABLE) {
            ret = -EBUSY;
            break;
        }
        c = ctrl_w(d);
        if (off == FT_REG_RING_LO) {
            set_lo(&c->ring_iova, val);
        } else if (off == FT_REG_RING_HI) {
            set_hi(&c->ring_iova, val);
        } else if (off == FT_REG_CMPL_LO) {
            set_lo(&c->cmpl_iova, val);
        } else if (off == FT_REG_CMPL_HI) {
            set_hi(&c->cmpl_iova, val);
        } else if (off == FT_REG_STATS_LO) {
            set_lo(&c->stats_iova, val);
        } else if (off == FT_REG_STATS_HI) {
            set_hi(&c->stats_iova, val);
        } else {
            c->ring_size = val;
            c->head = 0;
            c->tail = 0;
        }
        break;
    case FT_REG_TAIL:
        if (c->ring_size == 0 || (uint32_t)(val - c->head) > c->ring_size) {
            ret = -EINVAL;
            break;
        }
        ctrl_w(d)->tail = val;
        kick(d);
        break;
    default:
        ret = -EINVAL; /* unknown or read-only */
        break;
    }
    if (ret < 0) {
        d->diag.reg_refused++;
    }
    pthread_mutex_unlock(&d->lock);
    return ret;
}

/* ------------------------------------------------------------- P2P, poll */

int
ft_model_p2p_write(struct ft_model *d, uint64_t off, const void *buf,
                   size_t len)
{
    struct ft_p2p_rec rec;
    struct ft_key key;
    struct ft_flow *f;
    int ret;

    pthread_mutex_lock(&d->lock);
    if (off != 0 || len != sizeof(rec) || buf == NULL) {
        d->diag.p2p_refused++;
        pthread_mutex_unlock(&d->lock);
        return -EINVAL;
    }
    if (d->mode == MODE_STOPPED) {
        d->diag.p2p_refused++;
        LOG(d, VMIG_LOG_DEBUG,
            "inbound P2P write refused: the device is "
            "stopped (its state is frozen)");
        pthread_mutex_unlock(&d->lock);
        return -EBUSY;
    }
    memcpy(&rec, buf, sizeof(rec));
    memset(&key, 0, sizeof(key));
    key.src = rec.src;
    key.dst = rec.dst;
    key.sport = rec.sport;
    key.dport = rec.dport;
    key.proto = rec.proto;
    key.space = 1;
    key.origin = (uint16_t)rec.origin;
    ret = flow_update(d, &key, rec.len, rec.seq, &f);
    if (ret == 0) {
        ctrl_w(d)->p2p_rx++;
    } else {
        d->diag.p2p_refused++;
    }
    pthread_mutex_unlock(&d->lock);
    return ret;
}

long
ft_model_poll(struct ft_model *d, unsigned int max)
{
    long n;

    if (!d->cfg.no_thread) {
        return -EINVAL;
    }
    pthread_mutex_lock(&d->lock);
    n = process_batch(d, max);
    pthread_mutex_unlock(&d->lock);
    return n;
}

int
ft_model_wait_idle(struct ft_model *d, unsigned int timeout_ms)
{
    struct timespec ts;
    int ret = 0;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&d->lock);
    while (d->thread_started && (can_progress(d) || d->p2p_inflight > 0)) {
        if (pthread_cond_timedwait(&d->idle_cv, &d->lock, &ts) == ETIMEDOUT) {
            ret = -ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&d->lock);
    return ret;
}

/* ----------------------------------------------------------- inspection */

void
ft_model_digest(struct ft_model *d, uint64_t *high, uint64_t *low)
{
    XXH128_hash_t h;

    pthread_mutex_lock(&d->lock);
    h = XXH3_128bits(d->state, d->state_bytes);
    pthread_mutex_unlock(&d->lock);
    *high = h.high64;
    *low = h.low64;
}

void
ft_model_counters(struct ft_model *d, struct ft_counters *out)
{
    const struct ft_ctrl *c;

    pthread_mutex_lock(&d->lock);
    c = C(d);
    out->packets = c->packets;
    out->bytes = c->bytes;
    out->flows = c->flows;
    out->p2p_tx = c->p2p_tx;
    out->p2p_rx = c->p2p_rx;
    out->errors = c->errors;
    out->head = c->head;
    out->tail = c->tail;
    pthread_mutex_unlock(&d->lock);
}

uint64_t
ft_model_peer_sum(struct ft_model *d)
{
    const struct ft_flow *t;
    uint64_t sum = 0;

    pthread_mutex_lock(&d->lock);
    t = table(d);
    for (uint64_t i = 0; i < d->capacity; i++) {
        if (t[i].used != 0 && t[i].key.space == 1) {
            sum += t[i].packets;
        }
    }
    pthread_mutex_unlock(&d->lock);
    return sum;
}

void
ft_model_diag(struct ft_model *d, struct ft_diag *out)
{
    pthread_mutex_lock(&d->lock);
    *out = d->diag;
    pthread_mutex_unlock(&d->lock);
}
