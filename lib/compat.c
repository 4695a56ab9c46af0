/* SPDX-License-Identifier: MIT */
/*
 * compat.c - device descriptors: validation, ownership, and the
 * IS_COMPATIBLE decision: the destination's driver says whether a source
 * descriptor can land on it, with a reason when not (older -> newer
 * generations may be accepted, newer -> older only when the newer device
 * emits the older stream version).  The binary form is compat_bin.c, the
 * JSON form compat_json.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/compat.h>
#include "compat_priv.h"
#include "internal.h"

void
vmig__errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int
vmig__compat_str_ok(const char *s, size_t len, size_t max)
{
    if (len > max) {
        return -E2BIG;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) {
            return -EINVAL;
        }
    }
    return 0;
}

int
vmig__compat_key_ok(const char *s, size_t len)
{
    if (len == 0) {
        return -EINVAL;
    }
    if (len > VMIG_COMPAT_KEY_MAX) {
        return -E2BIG;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-')) {
            return -EINVAL;
        }
    }
    return 0;
}

void
vmig__compat_vendor_str(uint32_t vendor, char *buf, size_t len)
{
    if (vendor & VMIG_VENDOR_PCI_FLAG) {
        snprintf(buf, len, "PCI 0x%04x", vendor & VMIG_VENDOR_PCI_MASK);
    } else {
        snprintf(buf, len, "0x%08x", vendor);
    }
}

static int
list_has(const uint32_t *list, size_t n, uint32_t v)
{
    for (size_t i = 0; i < n; i++) {
        if (list[i] == v) {
            return 1;
        }
    }
    return 0;
}

static int
produces(const struct vmig_compat_desc *d, uint32_t v)
{
    if (d->n_produced == 0) {
        return v == d->stream_version;
    }
    return list_has(d->produced, d->n_produced, v);
}

bool
vmig__compat_accepts(const struct vmig_compat_desc *d, uint32_t v)
{
    if (d->n_accepted == 0) {
        return v == d->stream_version;
    }
    return list_has(d->accepted, d->n_accepted, v);
}

const char *
vmig__compat_known_bad(const struct vmig_compat_desc *d, uint32_t v)
{
    for (size_t i = 0; i < d->n_known_bad; i++) {
        if (d->known_bad[i].version == v) {
            return d->known_bad[i].reason ? d->known_bad[i].reason : "";
        }
    }
    return NULL;
}

const char *
vmig_compat_desc_param(const struct vmig_compat_desc *desc, const char *key)
{
    if (desc == NULL || key == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < desc->n_params; i++) {
        if (desc->params[i].key && strcmp(desc->params[i].key, key) == 0) {
            return desc->params[i].value ? desc->params[i].value : "";
        }
    }
    return NULL;
}

static int
check_versions(const char *what, const uint32_t *list, size_t n, char *err,
               size_t errlen)
{
    if (n > VMIG_COMPAT_LIST_MAX) {
        vmig__errf(err, errlen, "%s: %zu versions, at most %d", what, n,
                   VMIG_COMPAT_LIST_MAX);
        return -E2BIG;
    }
    if (n > 0 && list == NULL) {
        vmig__errf(err, errlen, "%s: count %zu but no array", what, n);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (list[i] == 0) {
            vmig__errf(err, errlen, "%s: version 0 is not a version", what);
            return -EINVAL;
        }
        for (size_t j = 0; j < i; j++) {
            if (list[j] == list[i]) {
                vmig__errf(err, errlen, "%s: version %u listed twice", what,
                           list[i]);
                return -EINVAL;
            }
        }
    }
    return 0;
}

static int
check_str(const char *what, const char *s, size_t max, char *err, size_t errlen)
{
    int ret;

    if (s == NULL) {
        return 0;
    }
    ret = vmig__compat_str_ok(s, strnlen(s, max + 1), max);
    if (ret == -E2BIG) {
        vmig__errf(err, errlen, "%s: longer than %zu characters", what, max);
    } else if (ret < 0) {
        vmig__errf(err, errlen, "%s: only printable ASCII is allowed", what);
    }
    return ret;
}

int
vmig_compat_desc_validate(const struct vmig_compat_desc *d, char *err,
                          size_t errlen)
{
    int ret;

    if (d == NULL) {
        vmig__errf(err, errlen, "descriptor is NULL");
        return -EINVAL;
    }
    if (d->stream_version == 0) {
        vmig__errf(err, errlen, "stream-version: 0 is not a version");
        return -EINVAL;
    }
    if (d->mig_flags & ~VMIG_MIGF__ALL) {
        vmig__errf(err, errlen, "migration-flags: unknown bits 0x%x",
                   d->mig_flags & ~VMIG_MIGF__ALL);
        return -EINVAL;
    }
    if (d->compat_flags & ~VMIG_COMPATF__ALL) {
        vmig__errf(err, errlen, "compat-flags: unknown bits 0x%x",
                   d->compat_flags & ~VMIG_COMPATF__ALL);
        return -EINVAL;
    }
    ret = check_str("vendor-version", d->vendor_version, VMIG_COMPAT_STR_MAX,
                    err, errlen);
    if (ret < 0) {
        return ret;
    }
    ret = check_versions("produced", d->produced, d->n_produced, err, errlen);
    if (ret < 0) {
        return ret;
    }
    ret = check_versions("accepted", d->accepted, d->n_accepted, err, errlen);
    if (ret < 0) {
        return ret;
    }
    if (!produces(d, d->stream_version)) {
        vmig__errf(err, errlen,
                   "stream-version %u is not among the produced versions",
                   d->stream_version);
        return -EINVAL;
    }
    if (d->n_known_bad > VMIG_COMPAT_LIST_MAX ||
        d->n_params > VMIG_COMPAT_LIST_MAX) {
        vmig__errf(err, errlen, "known-bad or params: more than %d entries",
                   VMIG_COMPAT_LIST_MAX);
        return -E2BIG;
    }
    if ((d->n_known_bad && d->known_bad == NULL) ||
        (d->n_params && d->params == NULL)) {
        vmig__errf(err, errlen, "known-bad or params: count but no array");
        return -EINVAL;
    }
    for (size_t i = 0; i < d->n_known_bad; i++) {
        if (d->known_bad[i].version == 0) {
            vmig__errf(err, errlen, "known-bad: version 0 is not a version");
            return -EINVAL;
        }
        for (size_t j = 0; j < i; j++) {
            if (d->known_bad[j].version == d->known_bad[i].version) {
                vmig__errf(err, errlen, "known-bad: version %u listed twice",
                           d->known_bad[i].version);
                return -EINVAL;
            }
        }
        ret = check_str("known-bad reason", d->known_bad[i].reason,
                        VMIG_COMPAT_STR_MAX, err, errlen);
        if (ret < 0) {
            return ret;
        }
    }
    for (size_t i = 0; i < d->n_params; i++) {
        const char *k = d->params[i].key;

        if (k == NULL) {
            vmig__errf(err, errlen, "params: entry %zu has no key", i);
            return -EINVAL;
        }
        ret = vmig__compat_key_ok(k, strnlen(k, VMIG_COMPAT_KEY_MAX + 1));
        if (ret < 0) {
            vmig__errf(err, errlen,
                       "params: key \"%.*s\" must be 1..%d characters of "
                       "[A-Za-z0-9_.-]",
                       VMIG_COMPAT_KEY_MAX, k, VMIG_COMPAT_KEY_MAX);
            return ret;
        }
        ret = check_str("params value", d->params[i].value, VMIG_COMPAT_STR_MAX,
                        err, errlen);
        if (ret < 0) {
            return ret;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(d->params[j].key, k) == 0) {
                vmig__errf(err, errlen, "params: key \"%s\" listed twice", k);
                return -EINVAL;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------ ownership */

struct vmig_compat_desc *
vmig__compat_alloc(void)
{
    return calloc(1, sizeof(struct vmig_compat_desc));
}

void
vmig_compat_desc_free(struct vmig_compat_desc *d)
{
    if (d == NULL) {
        return;
    }
    /* Parsed descriptors own every member; the const is for drivers. */
    free((char *)d->vendor_version);
    free((uint32_t *)d->produced);
    free((uint32_t *)d->accepted);
    if (d->known_bad) {
        for (size_t i = 0; i < d->n_known_bad; i++) {
            free((char *)d->known_bad[i].reason);
        }
        free((struct vmig_compat_bad *)d->known_bad);
    }
    if (d->params) {
        for (size_t i = 0; i < d->n_params; i++) {
            free((char *)d->params[i].key);
            free((char *)d->params[i].value);
        }
        free((struct vmig_compat_kv *)d->params);
    }
    free(d);
}

/* ------------------------------------------------------------ IS_COMPATIBLE */

const char *
vmig_compat_why_name(enum vmig_compat_why why)
{
    static const char *const names[VMIG_COMPAT__COUNT] = {
        [VMIG_COMPAT_OK] = "ok",
        [VMIG_COMPAT_VENDOR] = "vendor",
        [VMIG_COMPAT_TYPE] = "type",
        [VMIG_COMPAT_OLDER_GEN] = "older-generation",
        [VMIG_COMPAT_NEWER_GEN] = "newer-generation",
        [VMIG_COMPAT_KNOWN_BAD] = "known-bad",
        [VMIG_COMPAT_VERSION] = "version",
        [VMIG_COMPAT_MIG_FLAGS] = "migration-flags",
        [VMIG_COMPAT_PARAM] = "param",
        [VMIG_COMPAT_DRIVER] = "driver",
        [VMIG_COMPAT_INVALID] = "invalid",
    };

    if ((unsigned)why >= VMIG_COMPAT__COUNT) {
        return "unknown";
    }
    return names[why];
}

static int refuse(struct vmig_compat_result *res, enum vmig_compat_why why,
                  const char *fmt, ...) VMIG_PRINTF(3, 4);

static int
refuse(struct vmig_compat_result *res, enum vmig_compat_why why,
       const char *fmt, ...)
{
    va_list ap;

    res->compatible = false;
    res->why = why;
    res->stream_version = 0;
    va_start(ap, fmt);
    vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
    va_end(ap);
    return 0;
}

/* "1,2,3" (or the single default version) into @buf. */
static void
fmt_versions(const uint32_t *list, size_t n, uint32_t dflt, char *buf,
             size_t len)
{
    size_t off = 0;

    buf[0] = '\0';
    if (n == 0) {
        snprintf(buf, len, "%u", dflt);
        return;
    }
    for (size_t i = 0; i < n && off < len; i++) {
        int w = snprintf(buf + off, len - off, "%s%u", i ? "," : "", list[i]);

        if (w < 0) {
            break;
        }
        off += (size_t)w;
    }
}

static int
check_version(const struct vmig_compat_desc *dst,
              const struct vmig_compat_desc *src, uint32_t pinned,
              struct vmig_compat_result *res)
{
    const uint32_t *cand = pinned ? &pinned : src->produced;
    size_t ncand = pinned ? 1 : src->n_produced;
    uint32_t best = 0, bad_v = 0;
    const char *bad_reason = NULL;
    char sv[160], dv[160];

    if (ncand == 0) {
        cand = &src->stream_version;
        ncand = 1;
    }
    for (size_t i = 0; i < ncand; i++) {
        const char *why = vmig__compat_known_bad(dst, cand[i]);

        if (why != NULL) {
            if (cand[i] > bad_v) {
                bad_v = cand[i];
                bad_reason = why;
            }
            continue;
        }
        if (vmig__compat_accepts(dst, cand[i]) && cand[i] > best) {
            best = cand[i];
        }
    }
    if (best != 0) {
        res->stream_version = best;
        return 1;
    }
    if (bad_reason != NULL) {
        return refuse(res, VMIG_COMPAT_KNOWN_BAD,
                      "stream version %u is known bad: %s; refusing", bad_v,
                      bad_reason);
    }
    fmt_versions(cand, ncand, src->stream_version, sv, sizeof(sv));
    fmt_versions(dst->accepted, dst->n_accepted, dst->stream_version, dv,
                 sizeof(dv));
    return refuse(res, VMIG_COMPAT_VERSION,
                  "no common stream version: source %s %s, destination "
                  "accepts %s",
                  pinned ? "sent" : "can emit", sv, dv);
}

static int
check_params(const struct vmig_compat_desc *dst,
             const struct vmig_compat_desc *src,
             const struct vmig_compat_ops *ops, void *opaque,
             struct vmig_compat_result *res)
{
    /* Every key of either side, source keys first. */
    for (int side = 0; side < 2; side++) {
        const struct vmig_compat_desc *d = side == 0 ? src : dst;

        for (size_t i = 0; i < d->n_params; i++) {
            const char *key = d->params[i].key;
            const char *sv = vmig_compat_desc_param(src, key);
            const char *dv = vmig_compat_desc_param(dst, key);
            bool ok;

            if (side == 1 && sv != NULL) {
                continue; /* already compared */
            }
            if (ops != NULL && ops->param_ok != NULL) {
                ok = ops->param_ok(opaque, key, sv, dv);
            } else {
                ok = sv != NULL && dv != NULL && strcmp(sv, dv) == 0;
            }
            if (!ok) {
                return refuse(res, VMIG_COMPAT_PARAM,
                              "resource parameter %s differs: source %s%s%s, "
                              "destination %s%s%s",
                              key, sv ? "\"" : "", sv ? sv : "(absent)",
                              sv ? "\"" : "", dv ? "\"" : "",
                              dv ? dv : "(absent)", dv ? "\"" : "");
            }
        }
    }
    return 1;
}

static int
default_rules(const struct vmig_compat_desc *dst,
              const struct vmig_compat_desc *src,
              const struct vmig_compat_ops *ops, void *opaque, uint32_t pinned,
              struct vmig_compat_result *res)
{
    char sv[32], dv[32];
    int ret;

    if (src->vendor_id != dst->vendor_id) {
        vmig__compat_vendor_str(src->vendor_id, sv, sizeof(sv));
        vmig__compat_vendor_str(dst->vendor_id, dv, sizeof(dv));
        return refuse(res, VMIG_COMPAT_VENDOR,
                      "source vendor %s differs from destination vendor %s", sv,
                      dv);
    }
    if (src->device_type != dst->device_type) {
        return refuse(res, VMIG_COMPAT_TYPE,
                      "source device type 0x%x differs from destination "
                      "device type 0x%x",
                      src->device_type, dst->device_type);
    }
    if (src->generation < dst->generation &&
        !(dst->compat_flags & VMIG_COMPATF_ACCEPT_OLDER_GEN)) {
        return refuse(res, VMIG_COMPAT_OLDER_GEN,
                      "source generation %u is older than destination "
                      "generation %u, and the destination does not declare "
                      "that it accepts older generations",
                      src->generation, dst->generation);
    }
    if (src->generation > dst->generation && pinned == 0 &&
        !produces(src, dst->stream_version)) {
        return refuse(res, VMIG_COMPAT_NEWER_GEN,
                      "source generation %u is newer than destination "
                      "generation %u and cannot emit the destination's "
                      "stream version %u",
                      src->generation, dst->generation, dst->stream_version);
    }
    ret = check_version(dst, src, pinned, res);
    if (ret <= 0) {
        return ret;
    }
    if (!(src->mig_flags & VMIG_MIGF_STOP_COPY)) {
        return refuse(res, VMIG_COMPAT_MIG_FLAGS,
                      "source does not support STOP_COPY migration");
    }
    if (!(dst->mig_flags & VMIG_MIGF_STOP_COPY)) {
        return refuse(res, VMIG_COMPAT_MIG_FLAGS,
                      "destination does not support STOP_COPY migration");
    }
    if ((src->mig_flags & VMIG_MIGF_P2P) && !(dst->mig_flags & VMIG_MIGF_P2P)) {
        return refuse(res, VMIG_COMPAT_MIG_FLAGS,
                      "source supports P2P (RUNNING_P2P) but the destination "
                      "does not");
    }
    ret = check_params(dst, src, ops, opaque, res);
    if (ret <= 0) {
        return ret;
    }
    res->compatible = true;
    res->why = VMIG_COMPAT_OK;
    if (src->generation < dst->generation) {
        snprintf(res->reason, sizeof(res->reason),
                 "compatible: stream version %u (older generation %u "
                 "accepted by generation %u)",
                 res->stream_version, src->generation, dst->generation);
    } else if (src->generation > dst->generation) {
        snprintf(res->reason, sizeof(res->reason),
                 "compatible: stream version %u (newer generation %u emits "
                 "the version generation %u loads)",
                 res->stream_version, src->generation, dst->generation);
    } else {
        snprintf(res->reason, sizeof(res->reason),
                 "compatible: stream version %u", res->stream_version);
    }
    return 1;
}

int
vmig__compat_check_at(const struct vmig_compat_desc *dst,
                      const struct vmig_compat_desc *src,
                      const struct vmig_compat_ops *ops, void *opaque,
                      uint32_t pinned, struct vmig_compat_result *res)
{
    char err[160];

    if (res == NULL) {
        return -EINVAL;
    }
    memset(res, 0, sizeof(*res));
    if (vmig_compat_desc_validate(dst, err, sizeof(err)) < 0) {
        refuse(res, VMIG_COMPAT_INVALID, "destination descriptor: %s", err);
        return -EINVAL;
    }
    if (vmig_compat_desc_validate(src, err, sizeof(err)) < 0) {
        refuse(res, VMIG_COMPAT_INVALID, "source descriptor: %s", err);
        return -EINVAL;
    }
    default_rules(dst, src, ops, opaque, pinned, res);
    if (ops != NULL && ops->decide != NULL) {
        bool was = res->compatible;
        char before[sizeof(res->reason)];

        memcpy(before, res->reason, sizeof(before));
        ops->decide(opaque, dst, src, res);
        res->reason[sizeof(res->reason) - 1] = '\0';
        /* A flipped verdict must not keep the old verdict's reason. */
        bool stale =
            res->reason[0] == '\0' ||
            (res->compatible != was && strcmp(res->reason, before) == 0);
        if (!res->compatible) {
            res->stream_version = 0;
            if (res->why == VMIG_COMPAT_OK) {
                res->why = VMIG_COMPAT_DRIVER;
            }
            if (stale) {
                snprintf(res->reason, sizeof(res->reason),
                         "refused by the device driver");
            }
        } else {
            res->why = VMIG_COMPAT_OK;
            if (res->stream_version == 0) {
                /* The driver overrode a refusal without naming a version:
                 * the destination's own is the one it surely loads. */
                res->stream_version = dst->stream_version;
            }
            if (stale) {
                snprintf(res->reason, sizeof(res->reason),
                         "compatible: accepted by the device driver "
                         "(stream version %u)",
                         res->stream_version);
            }
        }
    }
    return res->compatible ? 1 : 0;
}

int
vmig_compat_check(const struct vmig_compat_desc *dst,
                  const struct vmig_compat_desc *src,
                  const struct vmig_compat_ops *ops, void *opaque,
                  struct vmig_compat_result *res)
{
    return vmig__compat_check_at(dst, src, ops, opaque, 0, res);
}
