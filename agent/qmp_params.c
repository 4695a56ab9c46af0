/* SPDX-License-Identifier: MIT */
/*
 * qmp_params.c - the migration parameters: one table (qmp_param_args)
 * says, for each, its QMP name, type, range or values, how a checked value
 * is stored into a struct mig_params and how it is read back.
 * migrate-set-parameters, `migrate`'s x-vmig-parameters, query-migrate-
 * parameters and the CLI's migration options all go through it.
 *
 * QEMU's names where QEMU has the knob (downtime-limit, max-bandwidth),
 * x-vmig-* for ours.  Adding a parameter: a field in struct mig_params
 * (agent.h), a set and a get function here, one line in the table.
 *
 * All or nothing: callers check every argument against the table first
 * (qmp_args_check()), stage them onto a copy of the current parameters
 * (qmp_params_stage()) and only then commit the copy, so a bad value
 * changes nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "qmp.h"

static const char *const cap_names[] = {"stop-copy", "abort", NULL};
static const char *const reset_names[] = {"restart", "abort", NULL};
/* QEMU's multifd-compression values that this agent implements */
static const char *const compress_names[] = {"none", "zstd", NULL};

static uint64_t
u64(json_object *v)
{
    return (uint64_t)json_object_get_int64(v);
}

static json_object *
jint(uint64_t v)
{
    return json_object_new_int64((int64_t)v);
}

static void
set_downtime(struct mig_params *p, json_object *v)
{
    p->eng.downtime_limit_ms = u64(v);
}

static json_object *
get_downtime(const struct mig_params *p)
{
    return jint(p->eng.downtime_limit_ms);
}

static void
set_bandwidth(struct mig_params *p, json_object *v)
{
    p->eng.max_bandwidth = u64(v);
}

static json_object *
get_bandwidth(const struct mig_params *p)
{
    return jint(p->eng.max_bandwidth);
}

/* 0 asks for the default again (the engine keeps its value on a 0) */
static void
set_peer_timeout(struct mig_params *p, json_object *v)
{
    uint64_t ms = u64(v);

    p->eng.timeout_ms = ms == 0 ? VMIG_ENGINE_PEER_TIMEOUT_MS : (unsigned)ms;
}

static json_object *
get_peer_timeout(const struct mig_params *p)
{
    return jint(p->eng.timeout_ms != 0 ? p->eng.timeout_ms
                                       : VMIG_ENGINE_PEER_TIMEOUT_MS);
}

/* QEMU's multifd-channels: connections per migration, the main one
 * included; 1 is one connection, as without channels */
static int
check_channels(json_object *v, char *err, size_t len)
{
    if (json_object_get_int64(v) < 1) {
        snprintf(err, len,
                 "Parameter 'multifd-channels' expects a value between 1 "
                 "and %d",
                 VMIG_MP_MAX_CHANNELS);
        return -EINVAL;
    }
    return 0;
}

static void
set_channels(struct mig_params *p, json_object *v)
{
    p->eng.channels = (unsigned int)u64(v);
}

static json_object *
get_channels(const struct mig_params *p)
{
    return jint(p->eng.channels > 1 ? p->eng.channels : 1);
}

static void
set_compression(struct mig_params *p, json_object *v)
{
    p->eng.compression = strcmp(json_object_get_string(v), "zstd") == 0
                             ? VMIG_ENGINE_COMPRESS_ZSTD
                             : VMIG_ENGINE_COMPRESS_NONE;
}

static json_object *
get_compression(const struct mig_params *p)
{
    return json_object_new_string(
        compress_names[p->eng.compression == VMIG_ENGINE_COMPRESS_ZSTD]);
}

/* QEMU's multifd-zstd-level; 0 asks for the default (1) */
static void
set_zstd_level(struct mig_params *p, json_object *v)
{
    p->eng.zstd_level = (int)u64(v);
}

static json_object *
get_zstd_level(const struct mig_params *p)
{
    return jint(p->eng.zstd_level > 0 ? (uint64_t)p->eng.zstd_level : 1);
}

static void
set_recover_timeout(struct mig_params *p, json_object *v)
{
    uint64_t ms = u64(v);

    p->eng.recover_timeout_ms =
        ms == 0 ? VMIG_ENGINE_RECOVER_TIMEOUT_MS : (unsigned)ms;
}

static json_object *
get_recover_timeout(const struct mig_params *p)
{
    return jint(p->eng.recover_timeout_ms != 0
                    ? p->eng.recover_timeout_ms
                    : VMIG_ENGINE_RECOVER_TIMEOUT_MS);
}

static void
set_precopy(struct mig_params *p, json_object *v)
{
    p->eng.no_precopy = !json_object_get_boolean(v);
}

static json_object *
get_precopy(const struct mig_params *p)
{
    return json_object_new_boolean(!p->eng.no_precopy);
}

static void
set_iterations(struct mig_params *p, json_object *v)
{
    p->eng.max_iterations = (unsigned int)u64(v);
}

static json_object *
get_iterations(const struct mig_params *p)
{
    return jint(p->eng.max_iterations);
}

static void
set_time(struct mig_params *p, json_object *v)
{
    p->eng.max_precopy_ms = u64(v);
}

static json_object *
get_time(const struct mig_params *p)
{
    return jint(p->eng.max_precopy_ms);
}

static void
set_cap(struct mig_params *p, json_object *v)
{
    p->eng.cap_action = strcmp(json_object_get_string(v), "abort") == 0
                            ? VMIG_ENGINE_CAP_ABORT
                            : VMIG_ENGINE_CAP_STOP_COPY;
}

static json_object *
get_cap(const struct mig_params *p)
{
    return json_object_new_string(
        cap_names[p->eng.cap_action == VMIG_ENGINE_CAP_ABORT ? 1 : 0]);
}

static void
set_reset(struct mig_params *p, json_object *v)
{
    p->eng.reset_policy = strcmp(json_object_get_string(v), "abort") == 0
                              ? VMIG_ENGINE_RESET_ABORT
                              : VMIG_ENGINE_RESET_RESTART;
}

static json_object *
get_reset(const struct mig_params *p)
{
    return json_object_new_string(
        reset_names[p->eng.reset_policy == VMIG_ENGINE_RESET_ABORT ? 1 : 0]);
}

static void
set_restarts(struct mig_params *p, json_object *v)
{
    p->eng.max_restarts = (unsigned int)u64(v);
}

static json_object *
get_restarts(const struct mig_params *p)
{
    return jint(p->eng.max_restarts);
}

static void
set_mixed(struct mig_params *p, json_object *v)
{
    p->eng.allow_mixed_p2p = json_object_get_boolean(v);
}

static json_object *
get_mixed(const struct mig_params *p)
{
    return json_object_new_boolean(p->eng.allow_mixed_p2p);
}

/*
 * TLS on the migration channel (tlsconf.c, docs/security.md).  QEMU's
 * names: tls-creds (here the credentials' path rather than an object id:
 * an x509 directory, a PSK directory or a keys.psk file; "" for none),
 * tls-hostname, tls-authz (here the allow-list file).  Ours: the PSK
 * identity (QEMU keeps it on the credentials object), kernel TLS, and
 * plaintext beyond loopback for a destination.
 */
#define TLS_STR(field)                                                         \
    static void set_##field(struct mig_params *p, json_object *v)              \
    {                                                                          \
        snprintf(p->tls.field, sizeof(p->tls.field), "%s",                     \
                 json_object_get_string(v));                                   \
    }                                                                          \
    static json_object *get_##field(const struct mig_params *p)                \
    {                                                                          \
        return json_object_new_string(p->tls.field);                           \
    }

TLS_STR(creds)
TLS_STR(hostname)
TLS_STR(authz)
TLS_STR(identity)

static void
set_ktls(struct mig_params *p, json_object *v)
{
    p->tls.ktls = json_object_get_boolean(v);
}

static json_object *
get_ktls(const struct mig_params *p)
{
    return json_object_new_boolean(p->tls.ktls);
}

static void
set_insecure(struct mig_params *p, json_object *v)
{
    p->tls.insecure = json_object_get_boolean(v);
}

static json_object *
get_insecure(const struct mig_params *p)
{
    return json_object_new_boolean(p->tls.insecure);
}

/* A string that fits its field (all TLS strings: 255 bytes or less). */
static int
check_len(const char *name, json_object *v, size_t max, char *err, size_t len)
{
    if (strlen(json_object_get_string(v)) > max) {
        snprintf(err, len, "Parameter '%s' is longer than %zu bytes", name,
                 max);
        return -E2BIG;
    }
    return 0;
}

static int
check_creds(json_object *v, char *err, size_t len)
{
    int ret = check_len("tls-creds", v,
                        sizeof(((struct agent_tls *)0)->creds) - 1, err, len);

    return ret < 0 ? ret
                   : agent_tls_check_creds(json_object_get_string(v), err, len);
}

static int
check_hostname(json_object *v, char *err, size_t len)
{
    return check_len("tls-hostname", v,
                     sizeof(((struct agent_tls *)0)->hostname) - 1, err, len);
}

static int
check_authz(json_object *v, char *err, size_t len)
{
    const char *f = json_object_get_string(v);
    struct stat st;
    int ret = check_len("tls-authz", v,
                        sizeof(((struct agent_tls *)0)->authz) - 1, err, len);

    if (ret == 0 && f[0] != '\0' &&
        (stat(f, &st) < 0 || !S_ISREG(st.st_mode))) {
        snprintf(err, len,
                 "Parameter 'tls-authz': %s is not a file (the allow-list: "
                 "one peer name a line)",
                 f);
        return -ENOENT;
    }
    return ret;
}

static int
check_identity(json_object *v, char *err, size_t len)
{
    int ret =
        check_len("x-vmig-tls-identity", v,
                  sizeof(((struct agent_tls *)0)->identity) - 1, err, len);

    if (ret == 0 && strchr(json_object_get_string(v), ':') != NULL) {
        snprintf(err, len, "Parameter 'x-vmig-tls-identity' has a ':'");
        return -EINVAL;
    }
    return ret;
}

#define STR_PARAM(n, c, s, g)                                                  \
    {                                                                          \
        .name = (n), .type = json_type_string, .check = (c), .set = (s),       \
        .get = (g)                                                             \
    }

#define INT_PARAM(n, mx, un, s, g)                                             \
    {                                                                          \
        .name = (n), .type = json_type_int, .max = (mx), .unit = (un),         \
        .set = (s), .get = (g)                                                 \
    }
#define BOOL_PARAM(n, s, g)                                                    \
    {                                                                          \
        .name = (n), .type = json_type_boolean, .set = (s), .get = (g)         \
    }
#define ENUM_PARAM(n, vals, s, g)                                              \
    {                                                                          \
        .name = (n), .type = json_type_string, .values = (vals), .set = (s),   \
        .get = (g)                                                             \
    }

/* clang-format off */
const struct arg_spec qmp_param_args[] = {
    /* QEMU's range for downtime-limit */
    INT_PARAM("downtime-limit", 2000000, " milliseconds",
              set_downtime, get_downtime),
    INT_PARAM("max-bandwidth", INT64_MAX, " bytes/second",
              set_bandwidth, get_bandwidth),
    BOOL_PARAM("x-vmig-precopy", set_precopy, get_precopy),
    INT_PARAM("x-vmig-precopy-max-iterations", 1000000,
              " (0: the default, 30)", set_iterations, get_iterations),
    INT_PARAM("x-vmig-precopy-max-time", 86400000,
              " milliseconds (0: no limit)", set_time, get_time),
    ENUM_PARAM("x-vmig-precopy-cap-action", cap_names, set_cap, get_cap),
    ENUM_PARAM("x-vmig-reset-policy", reset_names, set_reset, get_reset),
    INT_PARAM("x-vmig-max-restarts", 1000, " (0: the default, 3)",
              set_restarts, get_restarts),
    BOOL_PARAM("x-vmig-allow-mixed-p2p", set_mixed, get_mixed),
    INT_PARAM("x-vmig-peer-timeout", 3600000,
              " milliseconds (0: the default, 30000)", set_peer_timeout,
              get_peer_timeout),
    INT_PARAM("x-vmig-recover-timeout", 3600000,
              " milliseconds (0: the default, 60000)", set_recover_timeout,
              get_recover_timeout),
    STR_PARAM("tls-creds", check_creds, set_creds, get_creds),
    STR_PARAM("tls-hostname", check_hostname, set_hostname, get_hostname),
    STR_PARAM("tls-authz", check_authz, set_authz, get_authz),
    STR_PARAM("x-vmig-tls-identity", check_identity, set_identity,
              get_identity),
    BOOL_PARAM("x-vmig-ktls", set_ktls, get_ktls),
    BOOL_PARAM("x-vmig-insecure", set_insecure, get_insecure),
    {.name = "multifd-channels", .type = json_type_int,
     .max = VMIG_MP_MAX_CHANNELS, .unit = " connections",
     .check = check_channels, .set = set_channels, .get = get_channels},
    ENUM_PARAM("multifd-compression", compress_names, set_compression,
               get_compression),
    INT_PARAM("multifd-zstd-level", 19, " (0: the default, 1)",
              set_zstd_level, get_zstd_level),
    {.name = NULL},
};
/* clang-format on */

void
qmp_params_stage(struct mig_params *p, json_object *args)
{
    for (const struct arg_spec *a = qmp_param_args; a->name != NULL; a++) {
        json_object *v;

        if (args != NULL && json_object_object_get_ex(args, a->name, &v)) {
            a->set(p, v);
        }
    }
}

json_object *
qmp_params_query(const struct mig_params *p)
{
    json_object *o = json_object_new_object();

    for (const struct arg_spec *a = qmp_param_args; a->name != NULL; a++) {
        json_object_object_add(o, a->name, a->get(p));
    }
    return o;
}

int
qmp_params_apply(struct agent_vm *vm, json_object *args, char *err,
                 size_t errlen)
{
    struct mig_params p;

    if (!qmp_args_check(args, qmp_param_args, err, errlen)) {
        return -EINVAL;
    }
    vm_params_get(vm, &p);
    qmp_params_stage(&p, args);
    vm_params_set(vm, &p);
    return 0;
}
