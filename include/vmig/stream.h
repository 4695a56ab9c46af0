/* SPDX-License-Identifier: MIT */
/*
 * stream.h - the device-state envelope (docs/stream-format.md is
 * the byte layout).
 *
 * Every device's data session carries one envelope:
 *
 *   header   magic "VMIGDEV" + format version byte, vendor id, device
 *            type, stream version, header checksum
 *   record   DESCRIPTOR: the source's binary compat descriptor (first, so
 *            a destination can refuse during PRE_COPY, before downtime)
 *   record*  device records: typed, length-prefixed, mandatory/optional,
 *            XXH3-checksummed, in nondecreasing type order
 *   record   END: record count, byte count and a whole-stream digest
 *
 * docs/stream-format.md has the byte layout.
 *
 * The writer is pull-based: the device hands out records one at a time
 * through callbacks and the writer fills buffers of any size the reader
 * asks for, so a device whose state lives in pieces is never gathered in
 * memory.  The loader is push-based: it takes bytes split at any boundary
 * (write segmentation need not match read segmentation, as the kernel uAPI
 * requires), validates everything, stages records to the device through
 * callbacks, and calls the device's commit only after the END record and
 * the digest verified and vmig_stream_loader_finish() found no trailing
 * bytes.  Any failure calls the device's abort instead: nothing is ever
 * partially applied.
 *
 * Locking: a writer or loader belongs to one thread at a time.
 */
#ifndef VMIG_STREAM_H
#define VMIG_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <vmig/compat.h>
#include <vmig/ctx.h>
#include <vmig/export.h>

/* Format version, carried in the magic's last byte. */
#define VMIG_STREAM_FORMAT 1
/* The magic as a big-endian u64 (bytes "VMIGDEV" then the version). */
#define VMIG_STREAM_MAGIC_BASE 0x564d494744455600ull
#define VMIG_STREAM_MAGIC (VMIG_STREAM_MAGIC_BASE | VMIG_STREAM_FORMAT)

#define VMIG_STREAM_HEADER_SIZE 32
#define VMIG_STREAM_REC_HEADER_SIZE 24
#define VMIG_STREAM_REC_TRAILER_SIZE 8
#define VMIG_STREAM_END_PAYLOAD_SIZE 24

/* Record types.  1..0xff belong to the envelope; devices use 0x100 up. */
#define VMIG_REC_DESCRIPTOR 1u
#define VMIG_REC_END 2u
#define VMIG_REC_DEVICE_MIN 0x100u

/* Record flags.  MANDATORY: a loader that does not know the type must
 * refuse the stream (otherwise it skips the record).  MULTI: the type may
 * occur several times in a row. */
#define VMIG_RECF_MANDATORY (1u << 0)
#define VMIG_RECF_MULTI (1u << 1)
#define VMIG_RECF__ALL (VMIG_RECF_MANDATORY | VMIG_RECF_MULTI)

/* Largest record a loader accepts unless configured otherwise. */
#define VMIG_STREAM_MAX_RECORD_DEFAULT (1ull << 30)

/**
 * struct vmig_stream_record - a record header as devices see it.
 * @type:  VMIG_REC_* or a device type >= VMIG_REC_DEVICE_MIN.
 * @flags: VMIG_RECF_*.
 * @len:   payload length in bytes.
 */
struct vmig_stream_record {
    uint32_t type;
    uint32_t flags;
    uint64_t len;
};

/* ================================================================ writer */

/**
 * struct vmig_stream_source_ops - how a device feeds the writer.
 * @next: describe the next record in *@rec.  Return 1 when there is one,
 *        0 when the device has no more records (the writer then emits END
 *        and the stream is complete), -EAGAIN when it has nothing right now
 *        but will later (PRE_COPY with nothing new), or another negative
 *        errno.  Records must come in nondecreasing @type order with types
 *        >= VMIG_REC_DEVICE_MIN; a type repeats only with VMIG_RECF_MULTI.
 * @read: copy up to @n bytes of the current record's payload to @buf.
 *        Return the count (1..@n), -EAGAIN when none are ready yet, or a
 *        negative errno.  Never asked for more than the record has left.
 *
 * Both are called only from vmig_stream_writer_read().
 */
struct vmig_stream_source_ops {
    int (*next)(void *opaque, struct vmig_stream_record *rec);
    ssize_t (*read)(void *opaque, void *buf, size_t n);
};

struct vmig_stream_writer;

/**
 * vmig_stream_writer_new() - Start an envelope for a device's state.
 * @ctx:     logging context; borrowed, must outlive the writer.
 * @desc:    the device's descriptor; copied.
 * @version: stream version to emit; 0 for @desc->stream_version.  Must be
 *           one @desc produces (a newer device emitting an older version
 *           for an older destination passes that version here).
 * @ops:     record source; borrowed.
 * @opaque:  passed to @ops.
 * @out:     receives the writer; untouched on failure.
 *
 * The header and the descriptor record are prepared here (a few hundred
 * bytes); nothing of the device's state is.
 *
 * Return: 0, -EINVAL (NULL argument, invalid descriptor, version not
 * produced), -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_stream_writer_new(vmig_ctx_t *ctx, const struct vmig_compat_desc *desc,
                       uint32_t version,
                       const struct vmig_stream_source_ops *ops, void *opaque,
                       struct vmig_stream_writer **out);

/**
 * vmig_stream_writer_read() - Produce the next bytes of the envelope.
 * @w:   writer.
 * @buf: destination.
 * @n:   its size; any size works, from 1 byte up (0 is -EINVAL).
 *
 * Device payload is read straight into @buf (no intermediate copy).
 *
 * Return: bytes written (1..@n); 0 once the whole envelope, END included,
 * has been produced; -EAGAIN when the device has nothing ready and no
 * byte was written; another negative errno when the device failed or broke
 * the record rules, which is sticky (every later call returns it).
 */
VMIG_EXPORT VMIG_MUST_CHECK ssize_t
vmig_stream_writer_read(struct vmig_stream_writer *w, void *buf, size_t n);

/**
 * vmig_stream_writer_compat_size() - Size of the compatibility part.
 * @w: writer.
 *
 * The header plus the DESCRIPTOR record: once a reader has taken this many
 * bytes, the destination can decide IS_COMPATIBLE.  A device with PRE_COPY
 * makes sure at least this much is readable in PRE_COPY.
 *
 * Return: a byte count.
 */
VMIG_EXPORT size_t
vmig_stream_writer_compat_size(const struct vmig_stream_writer *w);

/**
 * vmig_stream_writer_offset() - Bytes produced so far.
 * @w: writer.
 *
 * Return: a byte count.
 */
VMIG_EXPORT uint64_t
vmig_stream_writer_offset(const struct vmig_stream_writer *w);

/**
 * vmig_stream_writer_free() - Destroy a writer.  NULL is accepted.
 * @w: writer.
 */
VMIG_EXPORT void vmig_stream_writer_free(struct vmig_stream_writer *w);

/* ================================================================ loader */

/* Rule flags.  REQUIRED: the stream is refused if the type is absent.
 * MULTI: the device accepts the type several times. */
#define VMIG_RULE_REQUIRED (1u << 0)
#define VMIG_RULE_MULTI (1u << 1)

/**
 * struct vmig_stream_rule - a device record type the loader's device knows.
 * @type:    record type (>= VMIG_REC_DEVICE_MIN).
 * @flags:   VMIG_RULE_*.
 * @max_len: largest payload the device takes for this type; 0 for the
 *           loader's @max_record_len.
 */
struct vmig_stream_rule {
    uint32_t type;
    uint32_t flags;
    uint64_t max_len;
};

/**
 * struct vmig_stream_sink_ops - how the loader stages data into a device.
 * @begin:  a known record starts (header verified).  Optional.
 * @data:   the next @n payload bytes of that record.  The record's checksum
 *          is verified only at its end, so the device stages these bytes
 *          and must not apply them.  Optional (ignored data is dropped).
 * @end:    the record's checksum verified.  Optional.
 * @commit: the whole stream validated (END, digest, no trailing bytes):
 *          apply the staged state now.  Called at most once, from
 *          vmig_stream_loader_finish().  Optional.
 * @abort:  discard everything staged.  Called at most once, on the first
 *          failure (also a failed @commit) or when a loader that neither
 *          committed nor failed is freed.  Optional.
 *
 * @begin, @data, @end and @commit return 0 or a negative errno; an error
 * fails the stream with that errno.
 */
struct vmig_stream_sink_ops {
    int (*begin)(void *opaque, const struct vmig_stream_record *rec);
    int (*data)(void *opaque, const void *buf, size_t n);
    int (*end)(void *opaque, const struct vmig_stream_record *rec);
    int (*commit)(void *opaque);
    void (*abort)(void *opaque);
};

/**
 * struct vmig_stream_loader_cfg - what the destination knows and accepts.
 * @local:          this device's descriptor (copied): the stream version
 *                  must be accepted and not known bad, and the source's
 *                  descriptor must pass IS_COMPATIBLE.  NULL: inspection
 *                  mode (any identity and version; every record delivered,
 *                  @rules ignored).
 * @compat_ops:     driver callbacks for IS_COMPATIBLE; NULL for defaults.
 * @compat_opaque:  passed to @compat_ops.
 * @rules:          device record types this device knows; copied.  Others
 *                  are skipped when optional and refused when mandatory.
 * @n_rules:        entries in @rules.
 * @max_record_len: largest record payload accepted; 0 for
 *                  VMIG_STREAM_MAX_RECORD_DEFAULT.  A header claiming more
 *                  is refused before anything is read or allocated.
 * @sink:           staging callbacks; NULL to only verify.
 * @sink_opaque:    passed to @sink.
 */
struct vmig_stream_loader_cfg {
    const struct vmig_compat_desc *local;
    const struct vmig_compat_ops *compat_ops;
    void *compat_opaque;
    const struct vmig_stream_rule *rules;
    size_t n_rules;
    uint64_t max_record_len;
    const struct vmig_stream_sink_ops *sink;
    void *sink_opaque;
};

/* Why a stream was refused; each maps to one errno (see docs). */
enum vmig_stream_err {
    VMIG_STREAM_OK = 0,
    VMIG_STREAM_E_MAGIC,             /* -EBADMSG: not a vmig envelope */
    VMIG_STREAM_E_FORMAT,            /* -EOPNOTSUPP: unknown format version */
    VMIG_STREAM_E_HEADER_CSUM,       /* -EBADMSG */
    VMIG_STREAM_E_VERSION,           /* -EOPNOTSUPP: stream version */
    VMIG_STREAM_E_KNOWN_BAD,         /* -EOPNOTSUPP: known-bad version */
    VMIG_STREAM_E_INCOMPATIBLE,      /* -EOPNOTSUPP: IS_COMPATIBLE said no */
    VMIG_STREAM_E_DESCRIPTOR,        /* -EBADMSG: bad/missing descriptor */
    VMIG_STREAM_E_RECORD_CSUM,       /* -EBADMSG: record header checksum */
    VMIG_STREAM_E_PAYLOAD_CSUM,      /* -EBADMSG: record payload checksum */
    VMIG_STREAM_E_FLAGS,             /* -EBADMSG: reserved bits set */
    VMIG_STREAM_E_TOO_BIG,           /* -E2BIG: record length over limit */
    VMIG_STREAM_E_ORDER,             /* -EPROTO: type out of order */
    VMIG_STREAM_E_DUPLICATE,         /* -EPROTO: type repeated */
    VMIG_STREAM_E_UNKNOWN_MANDATORY, /* -EOPNOTSUPP */
    VMIG_STREAM_E_MISSING,           /* -EPROTO: a required type absent */
    VMIG_STREAM_E_END,               /* -EBADMSG: END record malformed */
    VMIG_STREAM_E_DIGEST,            /* -EBADMSG: whole-stream digest */
    VMIG_STREAM_E_AFTER_END,         /* -EPROTO: bytes after END */
    VMIG_STREAM_E_TRUNCATED,         /* -ENODATA: finish() before END */
    VMIG_STREAM_E_DEVICE,            /* device callback's errno */
    VMIG_STREAM_E_USAGE,             /* -EBUSY: call after finish */
    VMIG_STREAM_E__COUNT
};

struct vmig_stream_loader;

/**
 * vmig_stream_loader_new() - Prepare to load one envelope.
 * @ctx: logging context; borrowed, must outlive the loader.
 * @cfg: configuration; copied (the descriptor deep-copied).
 * @out: receives the loader; untouched on failure.
 *
 * Return: 0, -EINVAL (NULL, invalid @cfg->local, rule type below
 * VMIG_REC_DEVICE_MIN or listed twice), -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_stream_loader_new(vmig_ctx_t *ctx,
                       const struct vmig_stream_loader_cfg *cfg,
                       struct vmig_stream_loader **out);

/**
 * vmig_stream_loader_write() - Feed the next bytes of the envelope.
 * @l:   loader.
 * @buf: bytes; any split of the stream is fine, including 1 byte.
 * @n:   their count (0 is a no-op).
 *
 * Memory use is bounded whatever the input claims: payload is passed to
 * the sink as it arrives, only the descriptor (at most
 * VMIG_COMPAT_BIN_MAX bytes, after its length was checked) is buffered.
 *
 * Return: 0 when every byte was accepted, or a negative errno (see enum
 * vmig_stream_err); errors are sticky and call the sink's abort once.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_stream_loader_write(struct vmig_stream_loader *l, const void *buf,
                         size_t n);

/**
 * vmig_stream_loader_finish() - The source has no more bytes: validate
 *                               completeness and commit.
 * @l: loader.
 *
 * Return: 0 after a successful commit; -ENODATA when the END record was
 * not seen (truncated stream; abort is called); the earlier sticky error;
 * the commit callback's errno (abort is then called); -EBUSY when called
 * twice.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_stream_loader_finish(struct vmig_stream_loader *l);

/**
 * vmig_stream_loader_compat_state() - Has the compatibility part arrived?
 * @l: loader.
 *
 * Return: 1 when the header and DESCRIPTOR record were accepted (the
 * destination may tell the source "compatible" during PRE_COPY), 0 when
 * not yet, or the stream's negative errno when it was refused.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_stream_loader_compat_state(const struct vmig_stream_loader *l);

/**
 * vmig_stream_loader_source() - The source's descriptor, once received.
 * @l: loader.
 *
 * Return: a descriptor owned by @l (valid until it is freed), or NULL.
 */
VMIG_EXPORT const struct vmig_compat_desc *
vmig_stream_loader_source(const struct vmig_stream_loader *l);

/**
 * struct vmig_stream_info - what the loader has seen so far.
 * @format:         format version from the magic (0 before the header).
 * @vendor_id:      header vendor id.
 * @device_type:    header device type.
 * @stream_version: header stream version.
 * @records:        records fully verified, DESCRIPTOR and END included.
 * @offset:         bytes consumed.
 * @digest:         the verified END digest (0 before END).
 * @end_seen:       the END record verified.
 */
struct vmig_stream_info {
    uint32_t format;
    uint32_t vendor_id;
    uint32_t device_type;
    uint32_t stream_version;
    uint64_t records;
    uint64_t offset;
    uint64_t digest;
    bool end_seen;
};

/**
 * vmig_stream_loader_info() - Copy out what has been seen.
 * @l:    loader.
 * @info: receives the information.
 */
VMIG_EXPORT void vmig_stream_loader_info(const struct vmig_stream_loader *l,
                                         struct vmig_stream_info *info);

/**
 * vmig_stream_loader_error() - Why the stream failed.
 * @l:    loader.
 * @kind: receives the class (VMIG_STREAM_OK when none); may be NULL.
 *
 * Return: a message a person can act on, owned by @l; "" when no failure.
 */
VMIG_EXPORT const char *
vmig_stream_loader_error(const struct vmig_stream_loader *l,
                         enum vmig_stream_err *kind);

/**
 * vmig_stream_err_name() - Short name of an error class ("digest", ...).
 * @kind: a vmig_stream_err value.
 *
 * Return: a static string; "unknown" when out of range.
 */
VMIG_EXPORT const char *vmig_stream_err_name(enum vmig_stream_err kind);

/**
 * vmig_stream_loader_free() - Destroy a loader; aborts if it neither
 *                             committed nor failed.  NULL is accepted.
 * @l: loader.
 */
VMIG_EXPORT void vmig_stream_loader_free(struct vmig_stream_loader *l);

#endif /* VMIG_STREAM_H */
