/* SPDX-License-Identifier: MIT */
/*
 * ctx.h - the library context: a name, a log sink and a log level.
 *
 * Every long-lived vmig object (a device, a stream, a server, a client)
 * takes a context for logging.  A context is cheap; programs usually make
 * one per device or per connection so messages carry the right name.
 */
#ifndef VMIG_CTX_H
#define VMIG_CTX_H

#include <stdarg.h>
#include <vmig/export.h>
#include <vmig/log.h>

typedef struct vmig_ctx vmig_ctx_t;

/**
 * vmig_ctx_new() - Create a logging context.
 * @name:   prefix for every message ("acc0", "agent"); copied.
 * @fn:     log sink, or NULL to drop every message.
 * @opaque: passed to @fn.
 * @out:    receives the context; untouched on failure.
 *
 * The initial level is VMIG_LOG_INFO.
 *
 * Return: 0, or -EINVAL (@name NULL or empty, @out NULL), -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_ctx_new(const char *name, vmig_log_fn *fn,
                                             void *opaque, vmig_ctx_t **out);

/**
 * vmig_ctx_free() - Destroy a context.  NULL is accepted.
 * @ctx: context; every object using it must be gone first.
 */
VMIG_EXPORT void vmig_ctx_free(vmig_ctx_t *ctx);

/**
 * vmig_ctx_set_level() - Set the most verbose level that reaches the sink.
 * @ctx:   context.
 * @level: VMIG_LOG_ERR .. VMIG_LOG_DEBUG; clamped into that range.
 */
VMIG_EXPORT void vmig_ctx_set_level(vmig_ctx_t *ctx, int level);

/**
 * vmig_ctx_level() - The current level of @ctx.
 * @ctx: context.
 *
 * Return: a VMIG_LOG_* value.
 */
VMIG_EXPORT int vmig_ctx_level(const vmig_ctx_t *ctx);

/**
 * vmig_ctx_name() - The name given at creation.
 * @ctx: context, or NULL ("vmig" is returned).
 *
 * Return: a string owned by @ctx.
 */
VMIG_EXPORT const char *vmig_ctx_name(const vmig_ctx_t *ctx);

/**
 * vmig_log() - Log through @ctx: "<name>: <message>".
 * @ctx:   context, or NULL to drop the message.
 * @level: VMIG_LOG_*; messages above the context's level are dropped.
 * @fmt:   printf format, no trailing newline.
 *
 * Preserves errno.  Thread-safe as long as the sink is.
 */
VMIG_EXPORT void vmig_log(const vmig_ctx_t *ctx, int level, const char *fmt,
                          ...) VMIG_PRINTF(3, 4);

/**
 * vmig_vlog() - va_list form of vmig_log().
 * @ctx:   context, or NULL.
 * @level: VMIG_LOG_*.
 * @fmt:   printf format.
 * @ap:    arguments.
 */
VMIG_EXPORT void vmig_vlog(const vmig_ctx_t *ctx, int level, const char *fmt,
                           va_list ap) VMIG_PRINTF(3, 0);

#endif /* VMIG_CTX_H */
