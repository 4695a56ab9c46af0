/* SPDX-License-Identifier: MIT */
/*
 * stream_load.c - the envelope loader (push-based, any segmentation).
 *
 * States:
 *   HDR      collecting the 32-byte stream header in @acc;
 *   RHDR     collecting a 24-byte record header in @acc;
 *   PAYLOAD  passing payload bytes on (@mode says where) and hashing them;
 *   TRAILER  collecting the 8-byte payload checksum in @acc;
 *   END      the END record verified: any further byte is an error;
 *   FAILED   @err is sticky, the sink's abort has been called;
 *   DONE     finish() committed.
 * Invariants: @acc_len < the size being collected; @seq is the index of
 * the record being read (0 = DESCRIPTOR); @digest has absorbed the stream
 * header and the header and trailer of every record before the current
 * one; @info.offset counts bytes consumed.  Memory: @buf is the only
 * allocation driven by input, and only for the DESCRIPTOR record, after
 * its length was checked against VMIG_COMPAT_BIN_MAX.
 *
 * Failures log one message at ERR (the loader is where the peer's stream
 * is judged, so there is no second summary elsewhere).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/stream.h>
#include "compat_priv.h"
#include "internal.h"
#include "stream_priv.h"

enum lstate { L_HDR, L_RHDR, L_PAYLOAD, L_TRAILER, L_END, L_FAILED, L_DONE };
enum lmode { M_DELIVER, M_SKIP, M_DESC, M_END };

struct vmig_stream_loader {
    vmig_ctx_t *ctx;
    struct vmig_compat_desc *local; /* NULL: inspection mode */
    const struct vmig_compat_ops *compat_ops;
    void *compat_opaque;
    struct vmig_stream_rule *rules;
    bool *seen; /* per rule */
    size_t n_rules;
    uint64_t max_rec;
    const struct vmig_stream_sink_ops *sink;
    void *sink_opaque;

    enum lstate state;
    bool finished;
    bool aborted;
    bool compat_ok;
    int err;
    enum vmig_stream_err kind;
    char msg[400];

    uint8_t acc[VMIG_STREAM_HEADER_SIZE];
    size_t acc_len;
    struct vmig_stream_record cur;
    uint64_t cur_start; /* offset of the current record header */
    uint64_t remaining;
    enum lmode mode;
    uint8_t *buf; /* DESCRIPTOR payload */
    uint8_t endbuf[VMIG_STREAM_END_PAYLOAD_SIZE];

    uint64_t seq;
    bool have_last;
    uint32_t last_type;
    uint32_t last_flags;
    struct vmig_compat_desc *src;
    struct vmig_stream_info info;
    XXH3_state_t *rec_hash;
    XXH3_state_t *digest;
};

/* clang-format off */
static const struct {
    const char *name;
    int err;
} err_table[VMIG_STREAM_E__COUNT] = {
    [VMIG_STREAM_OK]                  = {"ok", 0},
    [VMIG_STREAM_E_MAGIC]             = {"magic", -EBADMSG},
    [VMIG_STREAM_E_FORMAT]            = {"format-version", -EOPNOTSUPP},
    [VMIG_STREAM_E_HEADER_CSUM]       = {"header-checksum", -EBADMSG},
    [VMIG_STREAM_E_VERSION]           = {"stream-version", -EOPNOTSUPP},
    [VMIG_STREAM_E_KNOWN_BAD]         = {"known-bad", -EOPNOTSUPP},
    [VMIG_STREAM_E_INCOMPATIBLE]      = {"incompatible", -EOPNOTSUPP},
    [VMIG_STREAM_E_DESCRIPTOR]        = {"descriptor", -EBADMSG},
    [VMIG_STREAM_E_RECORD_CSUM]       = {"record-checksum", -EBADMSG},
    [VMIG_STREAM_E_PAYLOAD_CSUM]      = {"payload-checksum", -EBADMSG},
    [VMIG_STREAM_E_FLAGS]             = {"flags", -EBADMSG},
    [VMIG_STREAM_E_TOO_BIG]           = {"too-big", -E2BIG},
    [VMIG_STREAM_E_ORDER]             = {"order", -EPROTO},
    [VMIG_STREAM_E_DUPLICATE]         = {"duplicate", -EPROTO},
    [VMIG_STREAM_E_UNKNOWN_MANDATORY] = {"unknown-mandatory", -EOPNOTSUPP},
    [VMIG_STREAM_E_MISSING]           = {"missing", -EPROTO},
    [VMIG_STREAM_E_END]               = {"end-record", -EBADMSG},
    [VMIG_STREAM_E_DIGEST]            = {"digest", -EBADMSG},
    [VMIG_STREAM_E_AFTER_END]         = {"after-end", -EPROTO},
    [VMIG_STREAM_E_TRUNCATED]         = {"truncated", -ENODATA},
    [VMIG_STREAM_E_DEVICE]            = {"device", -EIO},
    [VMIG_STREAM_E_USAGE]             = {"usage", -EBUSY},
};
/* clang-format on */

const char *
vmig_stream_err_name(enum vmig_stream_err kind)
{
    if ((unsigned)kind >= VMIG_STREAM_E__COUNT) {
        return "unknown";
    }
    return err_table[kind].name;
}

static void
do_abort(struct vmig_stream_loader *l)
{
    if (!l->aborted && l->sink != NULL && l->sink->abort != NULL) {
        l->sink->abort(l->sink_opaque);
    }
    l->aborted = true;
}

/*
 * Fail the stream: sticky errno (@err, or the class's own when 0), one
 * message, and the sink discards what it staged.
 */
static int fail(struct vmig_stream_loader *l, enum vmig_stream_err kind,
                int err, const char *fmt, ...) VMIG_PRINTF(4, 5);

static int
fail(struct vmig_stream_loader *l, enum vmig_stream_err kind, int err,
     const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(l->msg, sizeof(l->msg), fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof(l->msg)) {
        snprintf(l->msg + n, sizeof(l->msg) - (size_t)n,
                 " (at stream offset %llu)",
                 (unsigned long long)l->info.offset);
    }
    l->kind = kind;
    l->err = err != 0 ? err : err_table[kind].err;
    l->state = L_FAILED;
    vmig_err(l->ctx, "stream: %s", l->msg);
    do_abort(l);
    return l->err;
}

static const struct vmig_stream_rule *
find_rule(const struct vmig_stream_loader *l, uint32_t type, size_t *idx)
{
    for (size_t i = 0; i < l->n_rules; i++) {
        if (l->rules[i].type == type) {
            *idx = i;
            return &l->rules[i];
        }
    }
    return NULL;
}

int
vmig_stream_loader_new(vmig_ctx_t *ctx,
                       const struct vmig_stream_loader_cfg *cfg,
                       struct vmig_stream_loader **out)
{
    struct vmig_stream_loader *l;
    char err[160];
    int ret;

    if (cfg == NULL || out == NULL || (cfg->n_rules && cfg->rules == NULL)) {
        return -EINVAL;
    }
    for (size_t i = 0; i < cfg->n_rules; i++) {
        if (cfg->rules[i].type < VMIG_REC_DEVICE_MIN) {
            vmig_err(ctx, "stream loader: rule type 0x%x is below 0x%x",
                     cfg->rules[i].type, VMIG_REC_DEVICE_MIN);
            return -EINVAL;
        }
        for (size_t j = 0; j < i; j++) {
            if (cfg->rules[j].type == cfg->rules[i].type) {
                vmig_err(ctx, "stream loader: rule type 0x%x listed twice",
                         cfg->rules[i].type);
                return -EINVAL;
            }
        }
    }
    if (cfg->local != NULL &&
        vmig_compat_desc_validate(cfg->local, err, sizeof(err)) < 0) {
        vmig_err(ctx, "stream loader: invalid device descriptor: %s", err);
        return -EINVAL;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return -ENOMEM;
    }
    l->ctx = ctx;
    l->compat_ops = cfg->compat_ops;
    l->compat_opaque = cfg->compat_opaque;
    l->max_rec = cfg->max_record_len ? cfg->max_record_len
                                     : VMIG_STREAM_MAX_RECORD_DEFAULT;
    l->sink = cfg->sink;
    l->sink_opaque = cfg->sink_opaque;
    l->rec_hash = XXH3_createState();
    l->digest = XXH3_createState();
    if (l->rec_hash == NULL || l->digest == NULL) {
        ret = -ENOMEM;
        goto err_free;
    }
    XXH3_64bits_reset_withSeed(l->digest, VMIG__STREAM_SEED);
    if (cfg->local != NULL) {
        ret = vmig_compat_desc_dup(cfg->local, &l->local);
        if (ret < 0) {
            goto err_free;
        }
    }
    if (cfg->n_rules > 0 && cfg->local != NULL) {
        l->rules = calloc(cfg->n_rules, sizeof(*l->rules));
        l->seen = calloc(cfg->n_rules, sizeof(*l->seen));
        if (l->rules == NULL || l->seen == NULL) {
            ret = -ENOMEM;
            goto err_free;
        }
        memcpy(l->rules, cfg->rules, cfg->n_rules * sizeof(*l->rules));
        l->n_rules = cfg->n_rules;
    }
    l->state = L_HDR;
    *out = l;
    return 0;

err_free:
    l->aborted = true; /* nothing was staged */
    vmig_stream_loader_free(l);
    return ret;
}

void
vmig_stream_loader_free(struct vmig_stream_loader *l)
{
    if (l == NULL) {
        return;
    }
    if (l->state != L_DONE) {
        do_abort(l);
    }
    XXH3_freeState(l->rec_hash);
    XXH3_freeState(l->digest);
    vmig_compat_desc_free(l->local);
    vmig_compat_desc_free(l->src);
    free(l->rules);
    free(l->seen);
    free(l->buf);
    free(l);
}

/* ------------------------------------------------------------ header */

static int
on_header(struct vmig_stream_loader *l)
{
    const uint8_t *h = l->acc;
    uint64_t magic = vmig_get_be64(h);
    uint64_t stored, calc;
    uint32_t version, flags;
    const char *bad;

    if ((magic & ~0xffull) != VMIG_STREAM_MAGIC_BASE) {
        return fail(l, VMIG_STREAM_E_MAGIC, 0,
                    "not a vmig device-state stream: magic 0x%016llx, "
                    "expected 0x%016llx",
                    (unsigned long long)magic,
                    (unsigned long long)VMIG_STREAM_MAGIC);
    }
    l->info.format = h[7];
    if (h[7] != VMIG_STREAM_FORMAT) {
        return fail(l, VMIG_STREAM_E_FORMAT, 0,
                    "stream format version %u is not supported (this vmig "
                    "reads format %d); upgrade vmig on this host or "
                    "migrate from an older source",
                    h[7], VMIG_STREAM_FORMAT);
    }
    stored = vmig_get_le64(h + 24);
    calc = XXH3_64bits_withSeed(h, 24, VMIG__STREAM_SEED);
    if (stored != calc) {
        return fail(l, VMIG_STREAM_E_HEADER_CSUM, 0,
                    "stream header checksum mismatch (stored 0x%016llx, "
                    "computed 0x%016llx): the stream is corrupt",
                    (unsigned long long)stored, (unsigned long long)calc);
    }
    flags = vmig_get_le32(h + 20);
    if (flags != 0) {
        return fail(l, VMIG_STREAM_E_FLAGS, 0,
                    "stream header flags 0x%x: no flag is defined in format "
                    "%d",
                    flags, VMIG_STREAM_FORMAT);
    }
    version = vmig_get_le32(h + 16);
    l->info.vendor_id = vmig_get_le32(h + 8);
    l->info.device_type = vmig_get_le32(h + 12);
    l->info.stream_version = version;
    XXH3_64bits_update(l->digest, h, VMIG_STREAM_HEADER_SIZE);
    if (l->local != NULL) {
        bad = vmig__compat_known_bad(l->local, version);
        if (bad != NULL) {
            return fail(l, VMIG_STREAM_E_KNOWN_BAD, 0,
                        "stream version %u is known bad: %s; refusing", version,
                        bad);
        }
        if (!vmig__compat_accepts(l->local, version)) {
            return fail(l, VMIG_STREAM_E_VERSION, 0,
                        "stream version %u is not accepted by this device; "
                        "migrate from a source that emits a version the "
                        "destination lists as accepted",
                        version);
        }
    }
    l->state = L_RHDR;
    return 0;
}

/* ------------------------------------------------------------ records */

static int
device_record(struct vmig_stream_loader *l, uint32_t type, uint32_t flags,
              uint64_t len)
{
    const struct vmig_stream_rule *rule = NULL;
    size_t idx = 0;
    uint64_t max;

    if (l->have_last && type < l->last_type) {
        return fail(l, VMIG_STREAM_E_ORDER, 0,
                    "record %llu: type 0x%x after type 0x%x; records must "
                    "come in nondecreasing type order",
                    (unsigned long long)l->seq, type, l->last_type);
    }
    if (l->local != NULL) {
        rule = find_rule(l, type, &idx);
    }
    if (l->have_last && type == l->last_type &&
        (!(flags & VMIG_RECF_MULTI) || !(l->last_flags & VMIG_RECF_MULTI) ||
         (rule != NULL && !(rule->flags & VMIG_RULE_MULTI)))) {
        return fail(l, VMIG_STREAM_E_DUPLICATE, 0,
                    "record %llu: type 0x%x appears again but %s",
                    (unsigned long long)l->seq, type,
                    (flags & l->last_flags & VMIG_RECF_MULTI)
                        ? "this device takes it only once"
                        : "it is not marked MULTI");
    }
    max = rule != NULL && rule->max_len != 0 ? rule->max_len : l->max_rec;
    if (len > max) {
        return fail(l, VMIG_STREAM_E_TOO_BIG, 0,
                    "record %llu: type 0x%x claims %llu payload bytes, over "
                    "the limit of %llu; refusing without reading it",
                    (unsigned long long)l->seq, type, (unsigned long long)len,
                    (unsigned long long)max);
    }
    l->have_last = true;
    l->last_type = type;
    l->last_flags = flags;
    if (l->local != NULL && rule == NULL) {
        if (flags & VMIG_RECF_MANDATORY) {
            return fail(l, VMIG_STREAM_E_UNKNOWN_MANDATORY, 0,
                        "record %llu: mandatory record type 0x%x is unknown "
                        "to this device; refusing (the source is newer: "
                        "upgrade the destination driver or have the source "
                        "emit an older stream version)",
                        (unsigned long long)l->seq, type);
        }
        vmig_dbg(l->ctx,
                 "stream: record %llu: skipping unknown optional type 0x%x "
                 "(%llu bytes)",
                 (unsigned long long)l->seq, type, (unsigned long long)len);
        l->mode = M_SKIP;
        return 0;
    }
    if (rule != NULL) {
        l->seen[idx] = true;
    }
    l->mode = M_DELIVER;
    if (l->sink != NULL && l->sink->begin != NULL) {
        int ret = l->sink->begin(l->sink_opaque, &l->cur);

        if (ret < 0) {
            return fail(l, VMIG_STREAM_E_DEVICE, ret,
                        "record %llu: the device refused record type 0x%x "
                        "(%llu bytes): %s",
                        (unsigned long long)l->seq, type,
                        (unsigned long long)len, strerror(-ret));
        }
    }
    return 0;
}

static int
on_rec_header(struct vmig_stream_loader *l)
{
    const uint8_t *h = l->acc;
    uint64_t stored = vmig_get_le64(h + 16);
    uint64_t calc = XXH3_64bits_withSeed(h, 16, l->seq);
    uint32_t type, flags;
    uint64_t len;
    int ret;

    if (stored != calc) {
        return fail(l, VMIG_STREAM_E_RECORD_CSUM, 0,
                    "record %llu: header checksum mismatch (stored "
                    "0x%016llx, computed 0x%016llx): the stream is corrupt "
                    "or records were moved",
                    (unsigned long long)l->seq, (unsigned long long)stored,
                    (unsigned long long)calc);
    }
    type = vmig_get_le32(h);
    flags = vmig_get_le32(h + 4);
    len = vmig_get_le64(h + 8);
    l->cur.type = type;
    l->cur.flags = flags;
    l->cur.len = len;
    l->cur_start = l->info.offset - VMIG_STREAM_REC_HEADER_SIZE;
    if (flags & ~VMIG_RECF__ALL) {
        return fail(l, VMIG_STREAM_E_FLAGS, 0,
                    "record %llu: type 0x%x has undefined flag bits 0x%x",
                    (unsigned long long)l->seq, type, flags & ~VMIG_RECF__ALL);
    }
    if (l->seq == 0) {
        if (type != VMIG_REC_DESCRIPTOR || flags != VMIG_RECF_MANDATORY) {
            return fail(l, VMIG_STREAM_E_DESCRIPTOR, 0,
                        "first record is type 0x%x flags 0x%x; a stream "
                        "must start with the mandatory DESCRIPTOR record",
                        type, flags);
        }
        if (len > VMIG_COMPAT_BIN_MAX) {
            return fail(l, VMIG_STREAM_E_TOO_BIG, 0,
                        "DESCRIPTOR record claims %llu bytes, over the "
                        "limit of %d",
                        (unsigned long long)len, VMIG_COMPAT_BIN_MAX);
        }
        l->buf = malloc(len ? (size_t)len : 1);
        if (l->buf == NULL) {
            return fail(l, VMIG_STREAM_E_DEVICE, -ENOMEM,
                        "out of memory for the DESCRIPTOR record");
        }
        l->mode = M_DESC;
    } else if (type == VMIG_REC_DESCRIPTOR) {
        return fail(l, VMIG_STREAM_E_DUPLICATE, 0,
                    "record %llu: a second DESCRIPTOR record",
                    (unsigned long long)l->seq);
    } else if (type == VMIG_REC_END) {
        if (len != VMIG_STREAM_END_PAYLOAD_SIZE ||
            flags != VMIG_RECF_MANDATORY) {
            return fail(l, VMIG_STREAM_E_END, 0,
                        "END record has length %llu flags 0x%x; expected "
                        "%d bytes, flags 0x%x",
                        (unsigned long long)len, flags,
                        VMIG_STREAM_END_PAYLOAD_SIZE, VMIG_RECF_MANDATORY);
        }
        for (size_t i = 0; i < l->n_rules; i++) {
            if ((l->rules[i].flags & VMIG_RULE_REQUIRED) && !l->seen[i]) {
                return fail(l, VMIG_STREAM_E_MISSING, 0,
                            "required record type 0x%x is missing; the "
                            "source sent an incomplete state",
                            l->rules[i].type);
            }
        }
        l->mode = M_END;
    } else {
        ret = device_record(l, type, flags, len);
        if (ret < 0) {
            return ret;
        }
    }
    if (type != VMIG_REC_END) {
        XXH3_64bits_update(l->digest, h, VMIG_STREAM_REC_HEADER_SIZE);
    }
    XXH3_64bits_reset_withSeed(l->rec_hash, l->seq);
    l->remaining = len;
    l->state = len ? L_PAYLOAD : L_TRAILER;
    return 0;
}

static int
on_descriptor(struct vmig_stream_loader *l)
{
    struct vmig_compat_result res;
    struct vmig_compat_desc *src = NULL;
    char err[200];
    int ret;

    ret = vmig_compat_desc_from_bin(l->buf, (size_t)l->cur.len, &src, err,
                                    sizeof(err));
    free(l->buf);
    l->buf = NULL;
    if (ret < 0) {
        return fail(l, VMIG_STREAM_E_DESCRIPTOR, ret == -ENOMEM ? -ENOMEM : 0,
                    "DESCRIPTOR record is malformed: %s", err);
    }
    l->src = src;
    if (src->vendor_id != l->info.vendor_id ||
        src->device_type != l->info.device_type) {
        return fail(l, VMIG_STREAM_E_DESCRIPTOR, 0,
                    "DESCRIPTOR (vendor 0x%08x type 0x%x) contradicts the "
                    "stream header (vendor 0x%08x type 0x%x)",
                    src->vendor_id, src->device_type, l->info.vendor_id,
                    l->info.device_type);
    }
    if (l->local == NULL) {
        l->compat_ok = true;
        return 0;
    }
    ret = vmig__compat_check_at(l->local, src, l->compat_ops, l->compat_opaque,
                                l->info.stream_version, &res);
    if (ret <= 0) {
        enum vmig_stream_err kind = VMIG_STREAM_E_INCOMPATIBLE;

        if (res.why == VMIG_COMPAT_KNOWN_BAD) {
            kind = VMIG_STREAM_E_KNOWN_BAD;
        } else if (res.why == VMIG_COMPAT_VERSION) {
            kind = VMIG_STREAM_E_VERSION;
        }
        return fail(l, kind, 0, "source device is not compatible: %s",
                    res.reason);
    }
    vmig_dbg(l->ctx, "stream: %s", res.reason);
    l->compat_ok = true;
    return 0;
}

static int
on_end(struct vmig_stream_loader *l)
{
    uint64_t nrec = vmig_get_le64(l->endbuf);
    uint64_t bytes = vmig_get_le64(l->endbuf + 8);
    uint64_t stored = vmig_get_le64(l->endbuf + 16);
    uint64_t calc = XXH3_64bits_digest(l->digest);

    if (nrec != l->seq || bytes != l->cur_start) {
        return fail(l, VMIG_STREAM_E_END, 0,
                    "END record says %llu records in %llu bytes, but %llu "
                    "records in %llu bytes were received",
                    (unsigned long long)nrec, (unsigned long long)bytes,
                    (unsigned long long)l->seq,
                    (unsigned long long)l->cur_start);
    }
    if (stored != calc) {
        return fail(l, VMIG_STREAM_E_DIGEST, 0,
                    "whole-stream digest mismatch (stored 0x%016llx, "
                    "computed 0x%016llx): the stream is corrupt",
                    (unsigned long long)stored, (unsigned long long)calc);
    }
    l->info.digest = stored;
    l->info.end_seen = true;
    return 0;
}

static int
on_trailer(struct vmig_stream_loader *l)
{
    uint64_t stored = vmig_get_le64(l->acc);
    uint64_t calc = XXH3_64bits_digest(l->rec_hash);
    int ret = 0;

    if (stored != calc) {
        return fail(l, VMIG_STREAM_E_PAYLOAD_CSUM, 0,
                    "record %llu (type 0x%x, %llu bytes): payload checksum "
                    "mismatch (stored 0x%016llx, computed 0x%016llx): the "
                    "stream is corrupt",
                    (unsigned long long)l->seq, l->cur.type,
                    (unsigned long long)l->cur.len, (unsigned long long)stored,
                    (unsigned long long)calc);
    }
    switch (l->mode) {
    case M_DESC:
        ret = on_descriptor(l);
        break;
    case M_END:
        ret = on_end(l);
        break;
    case M_DELIVER:
        if (l->sink != NULL && l->sink->end != NULL) {
            ret = l->sink->end(l->sink_opaque, &l->cur);
            if (ret < 0) {
                return fail(l, VMIG_STREAM_E_DEVICE, ret,
                            "record %llu: the device failed to stage record "
                            "type 0x%x: %s",
                            (unsigned long long)l->seq, l->cur.type,
                            strerror(-ret));
            }
        }
        break;
    case M_SKIP:
        break;
    }
    if (ret < 0) {
        return ret;
    }
    l->info.records++;
    if (l->mode == M_END) {
        l->state = L_END;
        return 0;
    }
    XXH3_64bits_update(l->digest, l->acc, VMIG_STREAM_REC_TRAILER_SIZE);
    l->seq++;
    l->state = L_RHDR;
    return 0;
}

static int
payload(struct vmig_stream_loader *l, const uint8_t *p, size_t c)
{
    XXH3_64bits_update(l->rec_hash, p, c);
    switch (l->mode) {
    case M_DESC:
        memcpy(l->buf + (l->cur.len - l->remaining), p, c);
        break;
    case M_END:
        memcpy(l->endbuf + (l->cur.len - l->remaining), p, c);
        break;
    case M_DELIVER:
        if (l->sink != NULL && l->sink->data != NULL) {
            int ret = l->sink->data(l->sink_opaque, p, c);

            if (ret < 0) {
                l->info.offset += c;
                return fail(l, VMIG_STREAM_E_DEVICE, ret,
                            "record %llu: the device failed to stage %zu "
                            "bytes of record type 0x%x: %s",
                            (unsigned long long)l->seq, c, l->cur.type,
                            strerror(-ret));
            }
        }
        break;
    case M_SKIP:
        break;
    }
    l->remaining -= c;
    l->info.offset += c;
    if (l->remaining == 0) {
        l->state = L_TRAILER;
    }
    return 0;
}

int
vmig_stream_loader_write(struct vmig_stream_loader *l, const void *buf,
                         size_t n)
{
    const uint8_t *p = buf;
    int ret = 0;

    if (l == NULL || (buf == NULL && n > 0)) {
        return -EINVAL;
    }
    if (l->finished) {
        return l->state == L_FAILED ? l->err : -EBUSY;
    }
    while (n > 0 && ret == 0) {
        size_t want, c;

        switch (l->state) {
        case L_HDR:
        case L_RHDR:
        case L_TRAILER:
            want = l->state == L_HDR    ? VMIG_STREAM_HEADER_SIZE
                   : l->state == L_RHDR ? VMIG_STREAM_REC_HEADER_SIZE
                                        : VMIG_STREAM_REC_TRAILER_SIZE;
            c = want - l->acc_len < n ? want - l->acc_len : n;
            memcpy(l->acc + l->acc_len, p, c);
            l->acc_len += c;
            l->info.offset += c;
            p += c;
            n -= c;
            if (l->acc_len == want) {
                l->acc_len = 0;
                ret = l->state == L_HDR    ? on_header(l)
                      : l->state == L_RHDR ? on_rec_header(l)
                                           : on_trailer(l);
            }
            break;
        case L_PAYLOAD:
            c = l->remaining < n ? (size_t)l->remaining : n;
            ret = payload(l, p, c);
            p += c;
            n -= c;
            break;
        case L_END:
            return fail(l, VMIG_STREAM_E_AFTER_END, 0,
                        "%zu unexpected bytes after the END record", n);
        case L_FAILED:
            return l->err;
        case L_DONE:
            return -EBUSY;
        }
    }
    return ret;
}

int
vmig_stream_loader_finish(struct vmig_stream_loader *l)
{
    int ret;

    if (l == NULL) {
        return -EINVAL;
    }
    if (l->finished) {
        return -EBUSY;
    }
    l->finished = true;
    switch (l->state) {
    case L_FAILED:
        return l->err;
    case L_END:
        break;
    case L_HDR:
        return fail(l, VMIG_STREAM_E_TRUNCATED, 0,
                    "stream truncated: %llu bytes, shorter than the %d-byte "
                    "header",
                    (unsigned long long)l->info.offset,
                    VMIG_STREAM_HEADER_SIZE);
    case L_PAYLOAD:
        return fail(l, VMIG_STREAM_E_TRUNCATED, 0,
                    "stream truncated inside record %llu (type 0x%x): %llu "
                    "of %llu payload bytes arrived; the END record was "
                    "never seen",
                    (unsigned long long)l->seq, l->cur.type,
                    (unsigned long long)(l->cur.len - l->remaining),
                    (unsigned long long)l->cur.len);
    default:
        return fail(l, VMIG_STREAM_E_TRUNCATED, 0,
                    "stream truncated after %llu complete records; the END "
                    "record was never seen",
                    (unsigned long long)l->info.records);
    }
    if (l->sink != NULL && l->sink->commit != NULL) {
        ret = l->sink->commit(l->sink_opaque);
        if (ret < 0) {
            return fail(l, VMIG_STREAM_E_DEVICE, ret,
                        "the device failed to apply the validated state: %s",
                        strerror(-ret));
        }
    }
    l->state = L_DONE;
    return 0;
}

int
vmig_stream_loader_compat_state(const struct vmig_stream_loader *l)
{
    if (l->compat_ok) {
        return 1;
    }
    return l->state == L_FAILED ? l->err : 0;
}

const struct vmig_compat_desc *
vmig_stream_loader_source(const struct vmig_stream_loader *l)
{
    return l->compat_ok ? l->src : NULL;
}

void
vmig_stream_loader_info(const struct vmig_stream_loader *l,
                        struct vmig_stream_info *info)
{
    *info = l->info;
}

const char *
vmig_stream_loader_error(const struct vmig_stream_loader *l,
                         enum vmig_stream_err *kind)
{
    if (kind != NULL) {
        *kind = l->state == L_FAILED ? l->kind : VMIG_STREAM_OK;
    }
    return l->state == L_FAILED ? l->msg : "";
}
