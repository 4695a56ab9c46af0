/* SPDX-License-Identifier: MIT */
/*
 * compat.h - device descriptors and the IS_COMPATIBLE decision.
 *
 * A descriptor says what a device is (vendor, type, generation, an opaque
 * vendor version string), which device-state stream versions it can emit
 * and load, which versions are known bad (and why), which migration
 * features it has, and the resource parameters a peer must match (queue
 * pair count, isolation mode, ...).  The destination's driver decides
 * whether a source descriptor can land on it (IS_COMPATIBLE),
 * always with a reason a person can read.
 *
 * Descriptors travel in two forms: JSON (management, `vmig check`) and a
 * compact binary form, which the device-state envelope carries as its
 * first record (docs/stream-format.md).  Both parsers treat their input as
 * hostile: bounded sizes, no allocation driven by unchecked counts, and
 * on failure nothing is returned.
 */
#ifndef VMIG_COMPAT_H
#define VMIG_COMPAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmig/ctx.h>
#include <vmig/export.h>

/*
 * Vendor ids are 32 bits.  With the top bit set, the low 16 bits are a PCI
 * vendor id (the scheme of VFIO_REGION_TYPE_PCI_VENDOR_TYPE);
 * without it the id is from vmig's own space.
 */
#define VMIG_VENDOR_PCI_FLAG (1u << 31)
#define VMIG_VENDOR_PCI_MASK 0xffffu
#define VMIG_VENDOR_PCI(id) (VMIG_VENDOR_PCI_FLAG | ((id)&VMIG_VENDOR_PCI_MASK))

/* Migration flags: the kernel's VFIO_MIGRATION_* bit values. */
#define VMIG_MIGF_STOP_COPY (1u << 0)
#define VMIG_MIGF_P2P (1u << 1)
#define VMIG_MIGF_PRE_COPY (1u << 2)
#define VMIG_MIGF__ALL                                                         \
    (VMIG_MIGF_STOP_COPY | VMIG_MIGF_P2P | VMIG_MIGF_PRE_COPY)

/*
 * Compatibility flags.  ACCEPT_OLDER_GEN: this device, as a destination,
 * accepts sources of an older generation (older -> newer migration).
 */
#define VMIG_COMPATF_ACCEPT_OLDER_GEN (1u << 0)
#define VMIG_COMPATF__ALL (VMIG_COMPATF_ACCEPT_OLDER_GEN)

/* Limits every descriptor obeys; the parsers refuse anything larger. */
#define VMIG_COMPAT_STR_MAX 255    /* vendor version, param value, reason */
#define VMIG_COMPAT_KEY_MAX 63     /* param key */
#define VMIG_COMPAT_LIST_MAX 32    /* versions, known-bad entries, params */
#define VMIG_COMPAT_BIN_MAX 65536  /* binary form, bytes */
#define VMIG_COMPAT_REASON_MAX 256 /* reason text, with its NUL */

/**
 * struct vmig_compat_kv - one resource parameter.
 * @key:   name, 1..VMIG_COMPAT_KEY_MAX chars of [A-Za-z0-9_.-].
 * @value: value, 0..VMIG_COMPAT_STR_MAX printable ASCII chars.
 */
struct vmig_compat_kv {
    const char *key;
    const char *value;
};

/**
 * struct vmig_compat_bad - a stream version this device refuses to load.
 * @version: the stream version.
 * @reason:  why, printable ASCII; shown to people ("EQ/AEQ addresses saved
 *           wrongly").
 */
struct vmig_compat_bad {
    uint32_t version;
    const char *reason;
};

/**
 * struct vmig_compat_desc - what a device is and what it can migrate with.
 * @vendor_id:      32-bit vendor id (see VMIG_VENDOR_PCI()).
 * @device_type:    vendor-defined device type.
 * @generation:     hardware/driver generation; larger is newer.
 * @mig_flags:      VMIG_MIGF_* this device supports.
 * @compat_flags:   VMIG_COMPATF_*.
 * @stream_version: the stream version this device emits by default (its
 *                  newest); must be in @produced when @produced is given.
 * @vendor_version: opaque vendor version string (firmware, pciid+type);
 *                  compared by the driver's callback only.  NULL reads as "".
 * @produced:       stream versions it can emit; empty means {stream_version}.
 * @accepted:       stream versions it can load; empty means {stream_version}.
 * @known_bad:      versions it refuses with a reason, even if accepted.
 * @params:         resource parameters; keys unique.
 *
 * Descriptors built by a driver usually point at static arrays.  Those
 * returned by the parsers are owned by the caller and released with
 * vmig_compat_desc_free().
 */
struct vmig_compat_desc {
    uint32_t vendor_id;
    uint32_t device_type;
    uint32_t generation;
    uint32_t mig_flags;
    uint32_t compat_flags;
    uint32_t stream_version;
    const char *vendor_version;
    const uint32_t *produced;
    size_t n_produced;
    const uint32_t *accepted;
    size_t n_accepted;
    const struct vmig_compat_bad *known_bad;
    size_t n_known_bad;
    const struct vmig_compat_kv *params;
    size_t n_params;
};

/* Which default rule decided; VMIG_COMPAT_OK when compatible. */
enum vmig_compat_why {
    VMIG_COMPAT_OK = 0,
    VMIG_COMPAT_VENDOR,    /* vendor ids differ */
    VMIG_COMPAT_TYPE,      /* device types differ */
    VMIG_COMPAT_OLDER_GEN, /* older source, not declared acceptable */
    VMIG_COMPAT_NEWER_GEN, /* newer source cannot emit our version */
    VMIG_COMPAT_KNOWN_BAD, /* the only usable version is known bad */
    VMIG_COMPAT_VERSION,   /* no stream version in common */
    VMIG_COMPAT_MIG_FLAGS, /* source relies on a feature we lack */
    VMIG_COMPAT_PARAM,     /* a resource parameter differs */
    VMIG_COMPAT_DRIVER,    /* the driver callback refused */
    VMIG_COMPAT_INVALID,   /* a descriptor is malformed */
    VMIG_COMPAT__COUNT
};

/**
 * struct vmig_compat_result - an IS_COMPATIBLE verdict.
 * @compatible:     true when the source may migrate here.
 * @why:            the rule that decided (VMIG_COMPAT_OK when compatible).
 * @stream_version: when compatible, the stream version the source must
 *                  emit (the newest both sides can use); 0 otherwise.
 * @reason:         always set: why yes or why not, for people.
 */
struct vmig_compat_result {
    bool compatible;
    enum vmig_compat_why why;
    uint32_t stream_version;
    char reason[VMIG_COMPAT_REASON_MAX];
};

/**
 * struct vmig_compat_ops - the destination driver's say in IS_COMPATIBLE.
 * @param_ok: compare one resource parameter.  @src_val or @dst_val is
 *            NULL when that side lacks the key.  Return true when the pair
 *            is acceptable.  NULL: values must be present on both sides and
 *            equal.
 * @decide:   final word: called with the default verdict in @res (after
 *            every default rule ran) and may change anything in it.  When
 *            it turns a yes into a no it should write @res->reason; an
 *            empty reason is replaced by "refused by the device driver".
 *            NULL: the default verdict stands.
 *
 * Both run on the caller's thread and must not block.
 */
struct vmig_compat_ops {
    bool (*param_ok)(void *opaque, const char *key, const char *src_val,
                     const char *dst_val);
    void (*decide)(void *opaque, const struct vmig_compat_desc *dst,
                   const struct vmig_compat_desc *src,
                   struct vmig_compat_result *res);
};

/**
 * vmig_compat_check() - IS_COMPATIBLE: can a device described by @src
 *                       migrate onto the device described by @dst?
 * @dst:    the destination's descriptor (this device).
 * @src:    the source's descriptor (untrusted; validated here).
 * @ops:    the destination driver's callbacks, or NULL for the defaults.
 * @opaque: passed to @ops.
 * @res:    receives the verdict and its reason; always filled.
 *
 * Default rules, in order: same vendor; same device type; a source of an
 * older generation only when @dst declares VMIG_COMPATF_ACCEPT_OLDER_GEN; a
 * source of a newer generation only when it can emit @dst's stream
 * version; a stream version the source produces that @dst accepts and
 * does not list as known bad (the newest such is chosen); the source's
 * P2P flag only when @dst has it; every resource parameter equal (or
 * @ops->param_ok).  Then @ops->decide may override.
 *
 * Return: 1 compatible, 0 not compatible (see @res), -EINVAL when an
 * argument is NULL or a descriptor is malformed (@res says which).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_compat_check(const struct vmig_compat_desc *dst,
                  const struct vmig_compat_desc *src,
                  const struct vmig_compat_ops *ops, void *opaque,
                  struct vmig_compat_result *res);

/**
 * vmig_compat_why_name() - Short name of a rule ("vendor", "param", ...).
 * @why: a vmig_compat_why value.
 *
 * Return: a static string; "unknown" when out of range.
 */
VMIG_EXPORT const char *vmig_compat_why_name(enum vmig_compat_why why);

/**
 * vmig_compat_desc_validate() - Check a descriptor against the limits.
 * @desc:   descriptor.
 * @err:    receives a message naming the bad field; may be NULL.
 * @errlen: size of @err.
 *
 * Return: 0, or -EINVAL (NULL, malformed string, duplicate key, too many
 * entries, stream_version not among @produced), -E2BIG (a string or list
 * over its limit).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_compat_desc_validate(const struct vmig_compat_desc *desc, char *err,
                          size_t errlen);

/**
 * vmig_compat_desc_param() - Look up a resource parameter.
 * @desc: descriptor.
 * @key:  parameter name.
 *
 * Return: the value (owned by @desc), or NULL when absent.
 */
VMIG_EXPORT const char *
vmig_compat_desc_param(const struct vmig_compat_desc *desc, const char *key);

/**
 * vmig_compat_desc_dup() - Deep-copy a descriptor.
 * @desc: valid descriptor.
 * @out:  receives the copy (free with vmig_compat_desc_free()); untouched
 *        on failure.
 *
 * Return: 0, -EINVAL (invalid @desc), -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_compat_desc_dup(const struct vmig_compat_desc *desc,
                     struct vmig_compat_desc **out);

/**
 * vmig_compat_desc_free() - Free a descriptor returned by this library.
 * @desc: from vmig_compat_desc_dup(), _from_bin() or _from_json(); NULL
 *        is accepted.  Never pass a driver's own static descriptor.
 */
VMIG_EXPORT void vmig_compat_desc_free(struct vmig_compat_desc *desc);

/**
 * vmig_compat_desc_to_bin() - Encode the binary form.
 * @desc: valid descriptor.
 * @buf:  output buffer, or NULL to only measure.
 * @cap:  size of @buf.
 *
 * Return: the encoded size (also when @buf is NULL or too small, in which
 * case nothing is written and the return value exceeds @cap), or -EINVAL
 * for an invalid descriptor, -E2BIG when the encoding would exceed
 * VMIG_COMPAT_BIN_MAX.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_compat_desc_to_bin(const struct vmig_compat_desc *desc, void *buf,
                        size_t cap);

/**
 * vmig_compat_desc_from_bin() - Decode the binary form (hostile input).
 * @buf:    encoded bytes.
 * @len:    their count; every byte must be used.
 * @out:    receives a new descriptor; untouched on failure.
 * @err:    receives a message naming what is wrong; may be NULL.
 * @errlen: size of @err.
 *
 * Return: 0, -EBADMSG (malformed: truncated, trailing bytes, bad string,
 * duplicate key, unknown flag bits, unknown layout version), -E2BIG (over
 * a limit), -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_compat_desc_from_bin(const void *buf, size_t len,
                          struct vmig_compat_desc **out, char *err,
                          size_t errlen);

/**
 * vmig_compat_desc_to_json() - Encode as a JSON object string.
 * @desc: valid descriptor.
 * @out:  receives a malloc'ed NUL-terminated string (caller frees).
 *
 * Return: 0, -EINVAL (invalid descriptor), -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_compat_desc_to_json(const struct vmig_compat_desc *desc, char **out);

/**
 * vmig_compat_desc_from_json() - Decode the JSON form (hostile input).
 * @text:   JSON text, NUL-terminated.
 * @out:    receives a new descriptor; untouched on failure.
 * @err:    receives a message naming the bad member; may be NULL.
 * @errlen: size of @err.
 *
 * Return: 0, -EBADMSG (not JSON, wrong member type, unknown member,
 * value out of range), -E2BIG (over a limit), -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_compat_desc_from_json(const char *text, struct vmig_compat_desc **out,
                           char *err, size_t errlen);

#endif /* VMIG_COMPAT_H */
