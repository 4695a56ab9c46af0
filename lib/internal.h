/* SPDX-License-Identifier: MIT */
/*
 * internal.h - declarations shared between lib/ files; never installed.
 */
#ifndef VMIG_INTERNAL_H
#define VMIG_INTERNAL_H

#include <assert.h>
#include <errno.h>
#include <vmig/ctx.h>

#define vmig_err(ctx, ...) vmig_log((ctx), VMIG_LOG_ERR, __VA_ARGS__)
#define vmig_warn(ctx, ...) vmig_log((ctx), VMIG_LOG_WARNING, __VA_ARGS__)
#define vmig_info(ctx, ...) vmig_log((ctx), VMIG_LOG_INFO, __VA_ARGS__)
#define vmig_dbg(ctx, ...) vmig_log((ctx), VMIG_LOG_DEBUG, __VA_ARGS__)

#define VMIG_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/*
 * "Can't happen" branches: assert in debug builds, and still take the
 * error path in release builds (sqlite's NEVER(), the kernel's WARN_ON).
 */
#ifdef NDEBUG
#define VMIG_NEVER(cond) (cond)
#else
#define VMIG_NEVER(cond) (assert(!(cond)), (cond))
#endif

#endif /* VMIG_INTERNAL_H */
