/* SPDX-License-Identifier: MIT */
/*
 * ctx.c - logging contexts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/ctx.h>
#include <vmig/version.h>
#include "internal.h"

struct vmig_ctx {
    char *name;
    vmig_log_fn *fn;
    void *opaque;
    int level; /* written once by the owner; read by any thread */
};

/* Longest message the sink receives; longer ones are cut with "...". */
#define LOG_MSG_MAX 1024

const char *
vmig_version(void)
{
    return VMIG_VERSION_STRING;
}

const char *
vmig_log_level_name(int level)
{
    static const char *const names[] = {
        [VMIG_LOG_ERR] = "error",   [VMIG_LOG_WARNING] = "warning",
        [VMIG_LOG_NOTICE] = "note", [VMIG_LOG_INFO] = "info",
        [VMIG_LOG_DEBUG] = "debug",
    };

    if (level < 0 || (size_t)level >= VMIG_ARRAY_SIZE(names) ||
        names[level] == NULL) {
        return "log";
    }
    return names[level];
}

void
vmig_log_stderr(void *opaque, int level, const char *msg)
{
    (void)opaque;
    fprintf(stderr, "vmig: %s: %s\n", vmig_log_level_name(level), msg);
}

int
vmig_ctx_new(const char *name, vmig_log_fn *fn, void *opaque, vmig_ctx_t **out)
{
    struct vmig_ctx *ctx;

    if (name == NULL || name[0] == '\0' || out == NULL) {
        return -EINVAL;
    }
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        return -ENOMEM;
    }
    ctx->name = strdup(name);
    if (ctx->name == NULL) {
        free(ctx);
        return -ENOMEM;
    }
    ctx->fn = fn;
    ctx->opaque = opaque;
    ctx->level = VMIG_LOG_INFO;
    *out = ctx;
    return 0;
}

void
vmig_ctx_free(vmig_ctx_t *ctx)
{
    if (ctx == NULL) {
        return;
    }
    free(ctx->name);
    free(ctx);
}

void
vmig_ctx_set_level(vmig_ctx_t *ctx, int level)
{
    if (level < VMIG_LOG_ERR) {
        level = VMIG_LOG_ERR;
    }
    if (level > VMIG_LOG_DEBUG) {
        level = VMIG_LOG_DEBUG;
    }
    ctx->level = level;
}

int
vmig_ctx_level(const vmig_ctx_t *ctx)
{
    return ctx->level;
}

const char *
vmig_ctx_name(const vmig_ctx_t *ctx)
{
    return ctx == NULL ? "vmig" : ctx->name;
}

void
vmig_vlog(const vmig_ctx_t *ctx, int level, const char *fmt, va_list ap)
{
    char msg[LOG_MSG_MAX];
    int saved_errno = errno;
    int n;

    if (ctx == NULL || ctx->fn == NULL || level > ctx->level) {
        return;
    }
    n = snprintf(msg, sizeof(msg), "%s: ", ctx->name);
    if (n < 0 || (size_t)n >= sizeof(msg)) {
        n = 0;
    }
    if (vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap) >=
        (int)(sizeof(msg) - (size_t)n)) {
        memcpy(msg + sizeof(msg) - 4, "...", 4);
    }
    ctx->fn(ctx->opaque, level, msg);
    errno = saved_errno;
}

void
vmig_log(const vmig_ctx_t *ctx, int level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vmig_vlog(ctx, level, fmt, ap);
    va_end(ap);
}
