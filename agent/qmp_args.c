/* SPDX-License-Identifier: MIT */
/*
 * qmp_args.c - checking a command's arguments against its table (qmp.h,
 * struct arg_spec) before the command runs, the way QEMU's QAPI input
 * visitor does: declared members in order (missing, mistyped, out of
 * range), then any member the table does not declare.  The messages are
 * QEMU's, so clients that match on them keep working.
 */
#include <stdio.h>
#include <string.h>
#include "qmp.h"

static const char *
type_name(json_type t)
{
    switch (t) {
    case json_type_int:
        return "integer";
    case json_type_boolean:
        return "boolean";
    case json_type_string:
        return "string";
    case json_type_object:
        return "object";
    case json_type_array:
        return "array";
    default:
        return "value";
    }
}

/* QEMU spells its own migration parameters with '_' in range messages. */
static const char *
range_name(const char *name)
{
    if (strcmp(name, "downtime-limit") == 0) {
        return "downtime_limit";
    }
    if (strcmp(name, "max-bandwidth") == 0) {
        return "max_bandwidth";
    }
    return name;
}

static bool check_object(json_object *args, const struct arg_spec *spec,
                         const char *prefix, char *err, size_t len);

static bool
check_value(json_object *v, const struct arg_spec *a, const char *full,
            char *err, size_t len)
{
    if (!json_object_is_type(v, a->type)) {
        snprintf(err, len, "Invalid parameter type for '%s', expected: %s",
                 full, type_name(a->type));
        return false;
    }
    if (a->type == json_type_int) {
        int64_t max = a->max != 0 ? a->max : INT64_MAX;
        int64_t n = json_object_get_int64(v);

        if (n < 0 || n > max) {
            snprintf(err, len,
                     "Parameter '%s' expects an integer in the range of 0 "
                     "to %lld%s",
                     range_name(full), (long long)max,
                     a->unit != NULL ? a->unit : "");
            return false;
        }
    }
    if (a->type == json_type_array && a->values != NULL) {
        /* an array of strings, each one of the values */
        struct arg_spec el = {.type = json_type_string, .values = a->values};

        for (size_t i = 0; i < json_object_array_length(v); i++) {
            char name[192];

            snprintf(name, sizeof(name), "%s[%zu]", full, i);
            if (!check_value(json_object_array_get_idx(v, i), &el, name, err,
                             len)) {
                return false;
            }
        }
    }
    if (a->type == json_type_string && a->values != NULL) {
        const char *s = json_object_get_string(v);
        char list[160] = "";
        size_t off = 0;

        for (size_t i = 0; a->values[i] != NULL; i++) {
            if (strcmp(s, a->values[i]) == 0) {
                return true;
            }
            off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
                                    i == 0             ? ""
                                    : a->values[i + 1] ? ", "
                                                       : " or ",
                                    a->values[i]);
            if (off >= sizeof(list)) {
                off = sizeof(list) - 1;
            }
        }
        snprintf(err, len, "Parameter '%s' does not accept value '%s' (%s)",
                 full, s, list);
        return false;
    }
    if (a->type == json_type_object && a->sub != NULL) {
        return check_object(v, a->sub, full, err, len);
    }
    if (a->type == json_type_array && a->sub != NULL) {
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            json_object *el = json_object_array_get_idx(v, i);
            char name[192];

            snprintf(name, sizeof(name), "%s[%zu]", full, i);
            if (!json_object_is_type(el, json_type_object)) {
                snprintf(err, len,
                         "Invalid parameter type for '%s', expected: object",
                         name);
                return false;
            }
            if (!check_object(el, a->sub, name, err, len)) {
                return false;
            }
        }
    }
    if (a->check != NULL && a->check(v, err, len) < 0) {
        return false;
    }
    return true;
}

static bool
check_object(json_object *args, const struct arg_spec *spec, const char *prefix,
             char *err, size_t len)
{
    static const struct arg_spec none[] = {{.name = NULL}};
    char full[160];

    if (spec == NULL) {
        spec = none;
    }
    for (const struct arg_spec *a = spec; a->name != NULL; a++) {
        json_object *v;

        snprintf(full, sizeof(full), "%s%s%s", prefix, prefix[0] ? "." : "",
                 a->name);
        if (args == NULL || !json_object_object_get_ex(args, a->name, &v)) {
            if (a->required) {
                snprintf(err, len, "Parameter '%s' is missing", full);
                return false;
            }
            continue;
        }
        if (!check_value(v, a, full, err, len)) {
            return false;
        }
    }
    if (args == NULL) {
        return true;
    }
    json_object_object_foreach(args, key, val)
    {
        const struct arg_spec *a = spec;

        (void)val;
        while (a->name != NULL && strcmp(a->name, key) != 0) {
            a++;
        }
        if (a->name == NULL) {
            snprintf(err, len, "Parameter '%s%s%s' is unexpected", prefix,
                     prefix[0] ? "." : "", key);
            return false;
        }
    }
    return true;
}

bool
qmp_args_check(json_object *args, const struct arg_spec *spec, char *err,
               size_t errlen)
{
    return check_object(args, spec, "", err, errlen);
}

const char *
qmp_arg_str(json_object *args, const char *name)
{
    json_object *v;

    if (args == NULL || !json_object_object_get_ex(args, name, &v)) {
        return NULL;
    }
    return json_object_get_string(v);
}

bool
qmp_arg_bool(json_object *args, const char *name, bool dflt)
{
    json_object *v;

    if (args == NULL || !json_object_object_get_ex(args, name, &v)) {
        return dflt;
    }
    return json_object_get_boolean(v);
}
