/* SPDX-License-Identifier: MIT */
/*
 * compat_json.c - the JSON form of a device descriptor (json-c).
 *
 * Member names follow QMP's dashed style:
 *   {"vendor-id": 2147516550, "device-type": 1, "generation": 2,
 *    "migration-flags": 5, "compat-flags": 1, "stream-version": 2,
 *    "vendor-version": "fw 1.2", "produced": [1, 2], "accepted": [2],
 *    "known-bad": [{"version": 1, "reason": "..."}],
 *    "params": {"qp": "4"}}
 * vendor-id, device-type and stream-version are required; the others
 * default to 0 or empty.  Unknown members are refused, so a typo never
 * silently weakens a compatibility check.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>
#include <vmig/compat.h>
#include "compat_priv.h"
#include "internal.h"

/* Far more than any valid descriptor needs; bounds json-c's work. */
#define JSON_TEXT_MAX (256u * 1024)
#define JSON_DEPTH_MAX 8

static int
add(json_object *obj, const char *key, json_object *val)
{
    if (val == NULL) {
        return -ENOMEM;
    }
    if (json_object_object_add(obj, key, val) != 0) {
        json_object_put(val);
        return -ENOMEM;
    }
    return 0;
}

static json_object *
versions_json(const uint32_t *list, size_t n)
{
    json_object *arr = json_object_new_array();

    if (arr == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *v = json_object_new_int64(list[i]);

        if (v == NULL || json_object_array_add(arr, v) != 0) {
            json_object_put(v);
            json_object_put(arr);
            return NULL;
        }
    }
    return arr;
}

static int
build(const struct vmig_compat_desc *d, json_object *o)
{
    json_object *bad, *params;
    int ret = 0;

    ret |= add(o, "vendor-id", json_object_new_int64(d->vendor_id));
    ret |= add(o, "device-type", json_object_new_int64(d->device_type));
    ret |= add(o, "generation", json_object_new_int64(d->generation));
    ret |= add(o, "migration-flags", json_object_new_int64(d->mig_flags));
    ret |= add(o, "compat-flags", json_object_new_int64(d->compat_flags));
    ret |= add(o, "stream-version", json_object_new_int64(d->stream_version));
    ret |=
        add(o, "vendor-version",
            json_object_new_string(d->vendor_version ? d->vendor_version : ""));
    ret |= add(o, "produced", versions_json(d->produced, d->n_produced));
    ret |= add(o, "accepted", versions_json(d->accepted, d->n_accepted));
    if (ret != 0) {
        return -ENOMEM;
    }
    bad = json_object_new_array();
    if (add(o, "known-bad", bad) < 0) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < d->n_known_bad; i++) {
        json_object *e = json_object_new_object();

        if (e == NULL || json_object_array_add(bad, e) != 0) {
            json_object_put(e);
            return -ENOMEM;
        }
        ret |=
            add(e, "version", json_object_new_int64(d->known_bad[i].version));
        ret |= add(e, "reason",
                   json_object_new_string(
                       d->known_bad[i].reason ? d->known_bad[i].reason : ""));
    }
    params = json_object_new_object();
    if (add(o, "params", params) < 0) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < d->n_params; i++) {
        ret |= add(params, d->params[i].key,
                   json_object_new_string(
                       d->params[i].value ? d->params[i].value : ""));
    }
    return ret != 0 ? -ENOMEM : 0;
}

int
vmig_compat_desc_to_json(const struct vmig_compat_desc *desc, char **out)
{
    json_object *o;
    const char *s;
    char *copy;
    int ret;

    if (out == NULL || vmig_compat_desc_validate(desc, NULL, 0) < 0) {
        return -EINVAL;
    }
    o = json_object_new_object();
    if (o == NULL) {
        return -ENOMEM;
    }
    ret = build(desc, o);
    if (ret < 0) {
        json_object_put(o);
        return ret;
    }
    s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                              JSON_C_TO_STRING_NOSLASHESCAPE);
    copy = s ? strdup(s) : NULL;
    json_object_put(o);
    if (copy == NULL) {
        return -ENOMEM;
    }
    *out = copy;
    return 0;
}

/* ------------------------------------------------------------ parsing */

struct jp {
    char *err;
    size_t errlen;
};

static int
get_u32(struct jp *p, json_object *v, const char *what, uint32_t *out)
{
    int64_t x;

    if (!json_object_is_type(v, json_type_int)) {
        vmig__errf(p->err, p->errlen, "%s: expected an integer", what);
        return -EBADMSG;
    }
    errno = 0;
    x = json_object_get_int64(v);
    if (x < 0 || x > (int64_t)UINT32_MAX || errno != 0) {
        vmig__errf(p->err, p->errlen, "%s: out of range 0..4294967295", what);
        return -EBADMSG;
    }
    *out = (uint32_t)x;
    return 0;
}

static int
get_string(struct jp *p, json_object *v, const char *what, char **out)
{
    const char *s;
    size_t n;
    int ret;

    if (!json_object_is_type(v, json_type_string)) {
        vmig__errf(p->err, p->errlen, "%s: expected a string", what);
        return -EBADMSG;
    }
    s = json_object_get_string(v);
    n = (size_t)json_object_get_string_len(v);
    ret = vmig__compat_str_ok(s, n, VMIG_COMPAT_STR_MAX);
    if (ret < 0) {
        vmig__errf(p->err, p->errlen, "%s: %s", what,
                   ret == -E2BIG ? "longer than 255 characters"
                                 : "only printable ASCII is allowed");
        return ret == -E2BIG ? -E2BIG : -EBADMSG;
    }
    *out = strndup(s, n);
    return *out ? 0 : -ENOMEM;
}

static int
get_versions(struct jp *p, json_object *v, const char *what,
             const uint32_t **out, size_t *n)
{
    uint32_t *list;
    size_t len;
    int ret;

    if (!json_object_is_type(v, json_type_array)) {
        vmig__errf(p->err, p->errlen, "%s: expected an array", what);
        return -EBADMSG;
    }
    len = json_object_array_length(v);
    if (len > VMIG_COMPAT_LIST_MAX) {
        vmig__errf(p->err, p->errlen, "%s: %zu entries, at most %d", what, len,
                   VMIG_COMPAT_LIST_MAX);
        return -E2BIG;
    }
    if (len == 0) {
        return 0;
    }
    list = calloc(len, sizeof(*list));
    if (list == NULL) {
        return -ENOMEM;
    }
    *out = list;
    *n = len;
    for (size_t i = 0; i < len; i++) {
        ret = get_u32(p, json_object_array_get_idx(v, i), what, &list[i]);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static int
get_known_bad(struct jp *p, json_object *v, struct vmig_compat_desc *d)
{
    struct vmig_compat_bad *bad;
    size_t len;
    int ret;

    if (!json_object_is_type(v, json_type_array)) {
        vmig__errf(p->err, p->errlen, "known-bad: expected an array");
        return -EBADMSG;
    }
    len = json_object_array_length(v);
    if (len > VMIG_COMPAT_LIST_MAX) {
        vmig__errf(p->err, p->errlen, "known-bad: %zu entries, at most %d", len,
                   VMIG_COMPAT_LIST_MAX);
        return -E2BIG;
    }
    if (len == 0) {
        return 0;
    }
    bad = calloc(len, sizeof(*bad));
    if (bad == NULL) {
        return -ENOMEM;
    }
    d->known_bad = bad;
    d->n_known_bad = len;
    for (size_t i = 0; i < len; i++) {
        json_object *e = json_object_array_get_idx(v, i), *m;
        char *reason = NULL;

        if (!json_object_is_type(e, json_type_object) ||
            json_object_object_length(e) != 2 ||
            !json_object_object_get_ex(e, "version", &m)) {
            vmig__errf(p->err, p->errlen,
                       "known-bad[%zu]: expected {\"version\": N, "
                       "\"reason\": \"...\"}",
                       i);
            return -EBADMSG;
        }
        ret = get_u32(p, m, "known-bad version", &bad[i].version);
        if (ret < 0) {
            return ret;
        }
        if (!json_object_object_get_ex(e, "reason", &m)) {
            vmig__errf(p->err, p->errlen, "known-bad[%zu]: no reason", i);
            return -EBADMSG;
        }
        ret = get_string(p, m, "known-bad reason", &reason);
        if (ret < 0) {
            return ret;
        }
        bad[i].reason = reason;
    }
    return 0;
}

static int
get_params(struct jp *p, json_object *v, struct vmig_compat_desc *d)
{
    struct vmig_compat_kv *kv;
    size_t len, i = 0;
    int ret;

    if (!json_object_is_type(v, json_type_object)) {
        vmig__errf(p->err, p->errlen, "params: expected an object");
        return -EBADMSG;
    }
    len = (size_t)json_object_object_length(v);
    if (len > VMIG_COMPAT_LIST_MAX) {
        vmig__errf(p->err, p->errlen, "params: %zu entries, at most %d", len,
                   VMIG_COMPAT_LIST_MAX);
        return -E2BIG;
    }
    if (len == 0) {
        return 0;
    }
    kv = calloc(len, sizeof(*kv));
    if (kv == NULL) {
        return -ENOMEM;
    }
    d->params = kv;
    d->n_params = len;
    json_object_object_foreach(v, key, val)
    {
        char *value = NULL;

        if (i >= len) {
            break;
        }
        if (vmig__compat_key_ok(key, strlen(key)) < 0) {
            vmig__errf(p->err, p->errlen,
                       "params: key \"%.*s\" must be 1..%d characters of "
                       "[A-Za-z0-9_.-]",
                       VMIG_COMPAT_KEY_MAX, key, VMIG_COMPAT_KEY_MAX);
            return -EBADMSG;
        }
        kv[i].key = strdup(key);
        if (kv[i].key == NULL) {
            return -ENOMEM;
        }
        ret = get_string(p, val, "params value", &value);
        if (ret < 0) {
            return ret;
        }
        kv[i].value = value;
        i++;
    }
    return 0;
}

static int
parse_obj(struct jp *p, json_object *o, struct vmig_compat_desc *d)
{
    bool have_vendor = false, have_type = false, have_version = false;
    int ret = 0;

    if (!json_object_is_type(o, json_type_object)) {
        vmig__errf(p->err, p->errlen, "descriptor: expected a JSON object");
        return -EBADMSG;
    }
    json_object_object_foreach(o, key, val)
    {
        if (strcmp(key, "vendor-id") == 0) {
            ret = get_u32(p, val, key, &d->vendor_id);
            have_vendor = true;
        } else if (strcmp(key, "device-type") == 0) {
            ret = get_u32(p, val, key, &d->device_type);
            have_type = true;
        } else if (strcmp(key, "generation") == 0) {
            ret = get_u32(p, val, key, &d->generation);
        } else if (strcmp(key, "migration-flags") == 0) {
            ret = get_u32(p, val, key, &d->mig_flags);
        } else if (strcmp(key, "compat-flags") == 0) {
            ret = get_u32(p, val, key, &d->compat_flags);
        } else if (strcmp(key, "stream-version") == 0) {
            ret = get_u32(p, val, key, &d->stream_version);
            have_version = true;
        } else if (strcmp(key, "vendor-version") == 0) {
            char *s = NULL;

            free((char *)d->vendor_version);
            d->vendor_version = NULL;
            ret = get_string(p, val, key, &s);
            d->vendor_version = s;
        } else if (strcmp(key, "produced") == 0 && d->produced == NULL) {
            ret = get_versions(p, val, key, &d->produced, &d->n_produced);
        } else if (strcmp(key, "accepted") == 0 && d->accepted == NULL) {
            ret = get_versions(p, val, key, &d->accepted, &d->n_accepted);
        } else if (strcmp(key, "known-bad") == 0 && d->known_bad == NULL) {
            ret = get_known_bad(p, val, d);
        } else if (strcmp(key, "params") == 0 && d->params == NULL) {
            ret = get_params(p, val, d);
        } else {
            vmig__errf(p->err, p->errlen,
                       "descriptor: unknown or repeated member \"%.64s\"", key);
            ret = -EBADMSG;
        }
        if (ret < 0) {
            return ret;
        }
    }
    if (!have_vendor || !have_type || !have_version) {
        vmig__errf(p->err, p->errlen, "descriptor: \"%s\" is required",
                   !have_vendor ? "vendor-id"
                   : !have_type ? "device-type"
                                : "stream-version");
        return -EBADMSG;
    }
    return 0;
}

int
vmig_compat_desc_from_json(const char *text, struct vmig_compat_desc **out,
                           char *err, size_t errlen)
{
    struct jp p = {.err = err, .errlen = errlen};
    struct json_tokener *tok;
    struct vmig_compat_desc *d;
    json_object *o;
    char verr[160];
    size_t len;
    int ret;

    if (text == NULL || out == NULL) {
        return -EINVAL;
    }
    len = strnlen(text, JSON_TEXT_MAX + 1);
    if (len > JSON_TEXT_MAX) {
        vmig__errf(err, errlen, "descriptor JSON longer than %u bytes",
                   JSON_TEXT_MAX);
        return -E2BIG;
    }
    tok = json_tokener_new_ex(JSON_DEPTH_MAX);
    if (tok == NULL) {
        return -ENOMEM;
    }
    o = json_tokener_parse_ex(tok, text, (int)len);
    if (o != NULL) {
        size_t end = json_tokener_get_parse_end(tok);

        while (end < len && strchr(" \t\r\n", text[end]) != NULL) {
            end++;
        }
        if (end != len) {
            json_object_put(o);
            o = NULL;
        }
    }
    if (o == NULL) {
        enum json_tokener_error e = json_tokener_get_error(tok);

        vmig__errf(err, errlen, "descriptor: not valid JSON (%s)",
                   e != json_tokener_success
                       ? json_tokener_error_desc(e)
                       : "trailing characters after the object");
        json_tokener_free(tok);
        return -EBADMSG;
    }
    json_tokener_free(tok);
    d = vmig__compat_alloc();
    if (d == NULL) {
        json_object_put(o);
        return -ENOMEM;
    }
    ret = parse_obj(&p, o, d);
    json_object_put(o);
    if (ret == 0) {
        ret = vmig_compat_desc_validate(d, verr, sizeof(verr));
        if (ret < 0) {
            vmig__errf(err, errlen, "descriptor: %s", verr);
            ret = ret == -E2BIG ? -E2BIG : -EBADMSG;
        }
    }
    if (ret < 0) {
        vmig_compat_desc_free(d);
        return ret;
    }
    *out = d;
    return 0;
}
