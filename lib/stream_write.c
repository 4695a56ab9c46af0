/* SPDX-License-Identifier: MIT */
/*
 * stream_write.c - the envelope writer (pull-based).
 *
 * The writer is a small state machine that turns the device's records into
 * envelope bytes on demand.  States:
 *   PRE     copying the prepared header + DESCRIPTOR record from @pre;
 *   NEXT    asking the device for its next record;
 *   SMALL   copying a record header, trailer or the END record from
 *           @small, then going to @after;
 *   PAYLOAD reading the device's payload straight into the caller's
 *           buffer, hashing it on the way;
 *   DONE    everything emitted; reads return 0;
 *   FAILED  @err is returned forever.
 * Invariants: @offset counts bytes handed out; @digest has absorbed the
 * stream header and the header and trailer of every record whose trailer
 * was produced; @remaining is the payload left of the current record.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/stream.h>
#include "compat_priv.h"
#include "internal.h"
#include "stream_priv.h"

enum wstate { W_PRE, W_NEXT, W_SMALL, W_PAYLOAD, W_DONE, W_FAILED };

struct vmig_stream_writer {
    vmig_ctx_t *ctx;
    const struct vmig_stream_source_ops *ops;
    void *opaque;
    enum wstate state;
    enum wstate after; /* state following W_SMALL */
    int err;

    uint8_t *pre; /* header + DESCRIPTOR record */
    size_t pre_len;
    size_t pre_pos;
    uint8_t small[VMIG_STREAM_REC_HEADER_SIZE + VMIG_STREAM_END_PAYLOAD_SIZE +
                  VMIG_STREAM_REC_TRAILER_SIZE];
    size_t small_len;
    size_t small_pos;

    struct vmig_stream_record cur;
    uint64_t remaining;
    bool have_last;
    uint32_t last_type;
    uint32_t last_flags;

    uint64_t seq;    /* index of the record being produced */
    uint64_t offset; /* bytes handed out */
    uint64_t body;   /* bytes before the current record header */
    XXH3_state_t *rec_hash;
    XXH3_state_t *digest;
};

static ssize_t
fail(struct vmig_stream_writer *w, int err)
{
    w->state = W_FAILED;
    w->err = err;
    return err;
}

/* Header and DESCRIPTOR record, in one buffer. */
static int
prepare(struct vmig_stream_writer *w, const struct vmig_compat_desc *desc,
        uint32_t version)
{
    uint8_t *p;
    int dlen;

    dlen = vmig_compat_desc_to_bin(desc, NULL, 0);
    if (dlen < 0) {
        return dlen;
    }
    w->pre_len = VMIG_STREAM_HEADER_SIZE + VMIG_STREAM_REC_HEADER_SIZE +
                 (size_t)dlen + VMIG_STREAM_REC_TRAILER_SIZE;
    w->pre = malloc(w->pre_len);
    if (w->pre == NULL) {
        return -ENOMEM;
    }
    p = w->pre;
    vmig_put_be64(p, VMIG_STREAM_MAGIC);
    vmig_put_le32(p + 8, desc->vendor_id);
    vmig_put_le32(p + 12, desc->device_type);
    vmig_put_le32(p + 16, version);
    vmig_put_le32(p + 20, 0);
    vmig_put_le64(p + 24, XXH3_64bits_withSeed(p, 24, VMIG__STREAM_SEED));
    XXH3_64bits_update(w->digest, p, VMIG_STREAM_HEADER_SIZE);
    p += VMIG_STREAM_HEADER_SIZE;

    vmig__rec_header(p, VMIG_REC_DESCRIPTOR, VMIG_RECF_MANDATORY,
                     (uint64_t)dlen, 0);
    XXH3_64bits_update(w->digest, p, VMIG_STREAM_REC_HEADER_SIZE);
    p += VMIG_STREAM_REC_HEADER_SIZE;
    if (vmig_compat_desc_to_bin(desc, p, (size_t)dlen) != dlen) {
        return -EINVAL;
    }
    vmig_put_le64(p + dlen, XXH3_64bits_withSeed(p, (size_t)dlen, 0));
    XXH3_64bits_update(w->digest, p + dlen, VMIG_STREAM_REC_TRAILER_SIZE);
    w->seq = 1;
    w->body = w->pre_len;
    return 0;
}

int
vmig_stream_writer_new(vmig_ctx_t *ctx, const struct vmig_compat_desc *desc,
                       uint32_t version,
                       const struct vmig_stream_source_ops *ops, void *opaque,
                       struct vmig_stream_writer **out)
{
    struct vmig_stream_writer *w;
    char err[160];
    int ret;

    if (desc == NULL || ops == NULL || ops->next == NULL || ops->read == NULL ||
        out == NULL) {
        return -EINVAL;
    }
    ret = vmig_compat_desc_validate(desc, err, sizeof(err));
    if (ret < 0) {
        vmig_err(ctx, "stream writer: invalid device descriptor: %s", err);
        return -EINVAL;
    }
    if (version == 0) {
        version = desc->stream_version;
    }
    {
        bool found = desc->n_produced == 0 && version == desc->stream_version;

        for (size_t i = 0; i < desc->n_produced; i++) {
            found = found || desc->produced[i] == version;
        }
        if (!found) {
            vmig_err(ctx,
                     "stream writer: the device does not produce stream "
                     "version %u; pick one of its produced versions",
                     version);
            return -EINVAL;
        }
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return -ENOMEM;
    }
    w->ctx = ctx;
    w->ops = ops;
    w->opaque = opaque;
    w->rec_hash = XXH3_createState();
    w->digest = XXH3_createState();
    if (w->rec_hash == NULL || w->digest == NULL) {
        ret = -ENOMEM;
        goto err_free;
    }
    XXH3_64bits_reset_withSeed(w->digest, VMIG__STREAM_SEED);
    ret = prepare(w, desc, version);
    if (ret < 0) {
        goto err_free;
    }
    w->state = W_PRE;
    *out = w;
    return 0;

err_free:
    vmig_stream_writer_free(w);
    return ret;
}

void
vmig_stream_writer_free(struct vmig_stream_writer *w)
{
    if (w == NULL) {
        return;
    }
    XXH3_freeState(w->rec_hash);
    XXH3_freeState(w->digest);
    free(w->pre);
    free(w);
}

size_t
vmig_stream_writer_compat_size(const struct vmig_stream_writer *w)
{
    return w->pre_len;
}

uint64_t
vmig_stream_writer_offset(const struct vmig_stream_writer *w)
{
    return w->offset;
}

/* The device's next record is checked against the envelope's rules so the
 * writer never emits a stream a loader must refuse. */
static int
check_record(struct vmig_stream_writer *w, const struct vmig_stream_record *r)
{
    if (r->type < VMIG_REC_DEVICE_MIN) {
        vmig_err(w->ctx,
                 "stream writer: device record type 0x%x is below 0x%x "
                 "(reserved for the envelope)",
                 r->type, VMIG_REC_DEVICE_MIN);
        return -EINVAL;
    }
    if (r->flags & ~VMIG_RECF__ALL) {
        vmig_err(w->ctx,
                 "stream writer: record type 0x%x has unknown flags 0x%x",
                 r->type, r->flags & ~VMIG_RECF__ALL);
        return -EINVAL;
    }
    if (w->have_last && r->type < w->last_type) {
        vmig_err(w->ctx,
                 "stream writer: device record type 0x%x after 0x%x; "
                 "records must come in nondecreasing type order",
                 r->type, w->last_type);
        return -EINVAL;
    }
    if (w->have_last && r->type == w->last_type &&
        (!(r->flags & VMIG_RECF_MULTI) || !(w->last_flags & VMIG_RECF_MULTI))) {
        vmig_err(w->ctx,
                 "stream writer: device record type 0x%x repeated without "
                 "VMIG_RECF_MULTI on every occurrence",
                 r->type);
        return -EINVAL;
    }
    return 0;
}

static void
emit_small(struct vmig_stream_writer *w, size_t len, enum wstate after)
{
    w->small_len = len;
    w->small_pos = 0;
    w->after = after;
    w->state = W_SMALL;
}

static void
start_end(struct vmig_stream_writer *w)
{
    uint8_t *p = w->small;
    uint8_t *pl = p + VMIG_STREAM_REC_HEADER_SIZE;

    vmig__rec_header(p, VMIG_REC_END, VMIG_RECF_MANDATORY,
                     VMIG_STREAM_END_PAYLOAD_SIZE, w->seq);
    vmig_put_le64(pl, w->seq);
    vmig_put_le64(pl + 8, w->body);
    vmig_put_le64(pl + 16, XXH3_64bits_digest(w->digest));
    vmig_put_le64(
        pl + VMIG_STREAM_END_PAYLOAD_SIZE,
        XXH3_64bits_withSeed(pl, VMIG_STREAM_END_PAYLOAD_SIZE, w->seq));
    emit_small(w, sizeof(w->small), W_DONE);
}

static void
start_trailer(struct vmig_stream_writer *w)
{
    vmig_put_le64(w->small, XXH3_64bits_digest(w->rec_hash));
    XXH3_64bits_update(w->digest, w->small, VMIG_STREAM_REC_TRAILER_SIZE);
    w->body +=
        VMIG_STREAM_REC_HEADER_SIZE + w->cur.len + VMIG_STREAM_REC_TRAILER_SIZE;
    w->seq++;
    emit_small(w, VMIG_STREAM_REC_TRAILER_SIZE, W_NEXT);
}

ssize_t
vmig_stream_writer_read(struct vmig_stream_writer *w, void *buf, size_t n)
{
    uint8_t *out = buf;
    size_t done = 0;
    int ret;

    if (w == NULL || buf == NULL || n == 0) {
        return -EINVAL;
    }
    while (done < n) {
        switch (w->state) {
        case W_PRE:
        case W_SMALL: {
            const uint8_t *src = w->state == W_PRE ? w->pre : w->small;
            size_t *pos = w->state == W_PRE ? &w->pre_pos : &w->small_pos;
            size_t len = w->state == W_PRE ? w->pre_len : w->small_len;
            size_t c = len - *pos < n - done ? len - *pos : n - done;

            memcpy(out + done, src + *pos, c);
            *pos += c;
            done += c;
            if (*pos == len) {
                w->state = w->state == W_PRE ? W_NEXT : w->after;
            }
            break;
        }
        case W_NEXT:
            memset(&w->cur, 0, sizeof(w->cur));
            ret = w->ops->next(w->opaque, &w->cur);
            if (ret == -EAGAIN) {
                goto out;
            }
            if (ret < 0) {
                vmig_err(w->ctx,
                         "stream writer: device failed to give record %llu "
                         "at stream offset %llu: %s",
                         (unsigned long long)w->seq,
                         (unsigned long long)(w->offset + done),
                         strerror(-ret));
                return fail(w, ret);
            }
            if (ret == 0) {
                start_end(w);
                break;
            }
            ret = check_record(w, &w->cur);
            if (ret < 0) {
                return fail(w, ret);
            }
            w->have_last = true;
            w->last_type = w->cur.type;
            w->last_flags = w->cur.flags;
            w->remaining = w->cur.len;
            vmig__rec_header(w->small, w->cur.type, w->cur.flags, w->cur.len,
                             w->seq);
            XXH3_64bits_update(w->digest, w->small,
                               VMIG_STREAM_REC_HEADER_SIZE);
            XXH3_64bits_reset_withSeed(w->rec_hash, w->seq);
            emit_small(w, VMIG_STREAM_REC_HEADER_SIZE, W_PAYLOAD);
            break;
        case W_PAYLOAD: {
            size_t want = n - done;
            ssize_t got;

            if (w->remaining == 0) {
                start_trailer(w);
                break;
            }
            if (want > w->remaining) {
                want = (size_t)w->remaining;
            }
            got = w->ops->read(w->opaque, out + done, want);
            if (got == -EAGAIN) {
                goto out;
            }
            if (got <= 0 || (size_t)got > want) {
                vmig_err(w->ctx,
                         "stream writer: record type 0x%x: device read "
                         "returned %zd with %llu of %llu payload bytes left",
                         w->cur.type, got, (unsigned long long)w->remaining,
                         (unsigned long long)w->cur.len);
                return fail(w, got < 0 ? (int)got : -EIO);
            }
            XXH3_64bits_update(w->rec_hash, out + done, (size_t)got);
            done += (size_t)got;
            w->remaining -= (uint64_t)got;
            if (w->remaining == 0) {
                start_trailer(w);
            }
            break;
        }
        case W_DONE:
            goto out;
        case W_FAILED:
            return w->err;
        }
    }
out:
    w->offset += done;
    if (done == 0 && w->state != W_DONE) {
        return -EAGAIN;
    }
    return (ssize_t)done;
}
