/* SPDX-License-Identifier: MIT */
/*
 * compat_priv.h - descriptor internals shared by compat*.c and stream*.c.
 */
#ifndef VMIG_COMPAT_PRIV_H
#define VMIG_COMPAT_PRIV_H

#include <stdarg.h>
#include <stdint.h>
#include <vmig/compat.h>

/* Layout version of the binary descriptor (first u16). */
#define VMIG__COMPAT_BIN_LAYOUT 1

/*
 * vmig__compat_check_at() - vmig_compat_check() with the stream version
 * fixed to @pinned (the version a stream already in hand carries), or
 * negotiated when @pinned is 0.
 */
int vmig__compat_check_at(const struct vmig_compat_desc *dst,
                          const struct vmig_compat_desc *src,
                          const struct vmig_compat_ops *ops, void *opaque,
                          uint32_t pinned, struct vmig_compat_result *res);

/* True when @v is in @desc's accepted list (or equals its stream_version
 * when that list is empty). */
bool vmig__compat_accepts(const struct vmig_compat_desc *desc, uint32_t v);

/* The reason @desc gives for refusing @v, or NULL when @v is not known
 * bad. */
const char *vmig__compat_known_bad(const struct vmig_compat_desc *desc,
                                   uint32_t v);

/* Format the vendor id for messages: "PCI 0x8086" or "0x00001234". */
void vmig__compat_vendor_str(uint32_t vendor, char *buf, size_t len);

/* snprintf into an error buffer that may be NULL. */
void vmig__errf(char *err, size_t errlen, const char *fmt, ...)
    VMIG_PRINTF(3, 4);

/* Allocation helpers for parsed descriptors (all members heap-owned). */
struct vmig_compat_desc *vmig__compat_alloc(void);

/* Printable ASCII only (0x20..0x7e), at most @max chars. */
int vmig__compat_str_ok(const char *s, size_t len, size_t max);

/* Key charset [A-Za-z0-9_.-], 1..VMIG_COMPAT_KEY_MAX chars. */
int vmig__compat_key_ok(const char *s, size_t len);

#endif /* VMIG_COMPAT_PRIV_H */
