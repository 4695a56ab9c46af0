/* SPDX-License-Identifier: MIT */
/*
 * flowtab_mig.c - the flowtab model's migration callbacks
 * (<vmig/device.h>): the saving session streams the initial data (every
 * chunk once) and then chunks written since they were last sent; the
 * resuming session parses and checks every record into a staging copy,
 * which RESUMING -> STOP validates as a whole before it replaces the
 * device state.  docs/flowtab.md, "Migration", has the stream layout.
 *
 * Saving session: unsent = chunks not yet sent in this session (initial
 * data), dirty = chunks sent and written since.  A chunk is in at most one
 * of them; one record is staged in out[] and handed to readers in pieces.
 *
 * Every callback runs under the framework's lock and takes the model's.
 */
#include <errno.h>
#include <stdlib.h>
#include "flowtab_priv.h"

/* ------------------------------------------------------- saving session */

void
ft__save_close(struct ft_model *d)
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

    ft__save_close(d);
    s->unsent = calloc(words, sizeof(uint64_t));
    s->dirty = calloc(words, sizeof(uint64_t));
    s->csums = calloc(d->nchunks, sizeof(uint64_t));
    s->out = malloc(REC_HDR_BYTES + d->chunk_bytes);
    if (s->unsent == NULL || s->dirty == NULL || s->csums == NULL ||
        s->out == NULL) {
        ft__save_close(d);
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

/* The framework's save: records, cut across reads as needed; -ENOMSG in
 * the precopy states when nothing is pending. */
static ssize_t
mig_save(void *opaque, enum vmig_state state, void *buf, size_t len)
{
    struct ft_model *d = opaque;
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

/* Initial data not yet read and chunks read once and changed since (an
 * estimate: more may change before they are read), in stream bytes. */
static int
mig_precopy_info(void *opaque, uint64_t *initial, uint64_t *dirty)
{
    struct ft_model *d = opaque;
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

/* The stream bytes STOP_COPY would produce from now on: the rest of a
 * saving session, or a whole stream when none is open. */
static int
mig_data_size(void *opaque, uint64_t *size)
{
    struct ft_model *d = opaque;
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

void
ft__load_close(struct ft_model *d)
{
    struct load_session *l = &d->load;

    if (l->staging != NULL && d->spare == NULL) {
        d->spare = l->staging; /* kept for the next load */
    } else {
        ft__big_free(l->staging, d->state_bytes);
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

    ft__load_close(d);
    /* No need to zero a reused staging area: END is refused unless every
     * chunk was loaded.  A new one is populated now, before any downtime. */
    l->staging =
        d->spare != NULL ? d->spare : ft__big_alloc(d->state_bytes, true);
    d->spare = NULL;
    l->got = calloc((d->nchunks + 63) / 64, sizeof(uint64_t));
    l->csums = calloc(d->nchunks, sizeof(uint64_t));
    l->xxh = XXH3_createState();
    if (l->staging == NULL || l->got == NULL || l->csums == NULL ||
        l->xxh == NULL) {
        ft__load_close(d);
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

/* The framework's load: parsed and checked record by record into the
 * staging copy; after the first error every later write fails the same. */
static int
mig_load(void *opaque, const void *buf, size_t len)
{
    struct ft_model *d = opaque;
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
    l->staging = old; /* ft__load_close() keeps it as the spare */
    return 0;
}

/* ----------------------------------------------------- framework callbacks */

/* One arc: open or end a session's data, change the run mode (quiescing
 * waits for in-flight P2P writes).  RESUMING -> STOP validates the whole
 * loaded stream and only then replaces the device state. */
static int
mig_step(void *opaque, enum vmig_state from, enum vmig_state to, bool *broken)
{
    struct ft_model *d = opaque;
    int ret = 0;

    (void)broken;
    pthread_mutex_lock(&d->lock);
    switch (vmig_arc_classify(from, to)) {
    case VMIG_ARC_OPEN_SAVE:
        ret = save_open(d);
        break;
    case VMIG_ARC_END_SAVE:
        ft__save_close(d);
        break;
    case VMIG_ARC_OPEN_RESUME:
        ret = load_open(d);
        break;
    case VMIG_ARC_END_RESUME:
        ret = load_commit(d);
        if (ret == 0) {
            ft__load_close(d);
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
        ft__set_mode(d, ft__mode_of(to));
    }
    pthread_mutex_unlock(&d->lock);
    return ret;
}

/* Power-on state, running; session data dropped. */
static void
mig_reset(void *opaque, enum vmig_reset_cause cause)
{
    struct ft_model *d = opaque;

    (void)cause;
    pthread_mutex_lock(&d->lock);
    ft__save_close(d);
    ft__load_close(d);
    d->reset_epoch++;
    ft__state_power_on(d);
    d->mode = MODE_FULL;
    d->hold = false;
    ft__kick(d);
    pthread_mutex_unlock(&d->lock);
}

static const struct vmig_dev_ops stream_ops = {
    .step = mig_step,
    .save = mig_save,
    .load = mig_load,
    .reset = mig_reset,
    .precopy_info = mig_precopy_info,
    .data_size = mig_data_size,
};

const struct vmig_dev_ops *
ft_model_stream_ops(void)
{
    return &stream_ops;
}
