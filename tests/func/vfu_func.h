/* SPDX-License-Identifier: MIT */
/*
 * vfu_func.h - what the files of test_vfu_func share: the failure count
 * (func_check.h's CHECK), the context, spawning a test device server
 * (killed at exit) at a socket in the run's directory; and the hostile
 * client case (vfu_func_hostile.c).
 */
#ifndef VMIG_TESTS_VFU_FUNC_H
#define VMIG_TESTS_VFU_FUNC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <vmig/ctx.h>

#define STATE_SIZE (3u << 20)

/* the run's directory (sockets, files a case makes) */
extern char dir[256];
extern int failures;
extern vmig_ctx_t *ctx;

/* A test device server at @path (remembered, killed at exit). */
pid_t spawn(const char *path, uint64_t seed, size_t size);
/* The socket path of @name in the run's directory. */
void sock_path(char *buf, size_t len, const char *name);

/* The hostile raw client (vfu_func_hostile.c). */
void case_hostile(void);

#endif /* VMIG_TESTS_VFU_FUNC_H */
