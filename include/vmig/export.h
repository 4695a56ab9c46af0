/* SPDX-License-Identifier: MIT */
/*
 * export.h - symbol visibility and attribute macros for libvmig.
 *
 * The library is built with hidden visibility; only declarations marked
 * VMIG_EXPORT are part of the ABI.  Public functions that return a status
 * carry VMIG_MUST_CHECK so a dropped error is a compile error under -Werror.
 */
#ifndef VMIG_EXPORT_H
#define VMIG_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define VMIG_EXPORT __attribute__((visibility("default")))
#define VMIG_MUST_CHECK __attribute__((warn_unused_result))
#define VMIG_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define VMIG_EXPORT
#define VMIG_MUST_CHECK
#define VMIG_PRINTF(fmt, args)
#endif

#endif /* VMIG_EXPORT_H */
