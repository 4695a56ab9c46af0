/* SPDX-License-Identifier: MIT */
/*
 * func_check.h - shared helpers of the functional test programs: CHECK and
 * CHECK_RC (count a failure in the including file's `failures` and return
 * from the test case) and connect_retry().
 */
#ifndef VMIG_TESTS_FUNC_CHECK_H
#define VMIG_TESTS_FUNC_CHECK_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <vmig/ctx.h>
#include <vmig/vfu_client.h>

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
            failures++;                                                        \
            return;                                                            \
        }                                                                      \
    } while (0)
#define CHECK_RC(expr, want)                                                   \
    do {                                                                       \
        long rc_ = (long)(expr);                                               \
        if (rc_ != (long)(want)) {                                             \
            fprintf(stderr, "%s:%d: %s = %ld (%s), want %ld\n", __FILE__,      \
                    __LINE__, #expr, rc_, rc_ < 0 ? strerror((int)-rc_) : "",  \
                    (long)(want));                                             \
            failures++;                                                        \
            return;                                                            \
        }                                                                      \
    } while (0)

/* Connect, retrying a refusal for a while: our server's socket path
 * appears only once it listens (vfu-listen checks that), but a server of
 * another make may create the file at bind(), a moment before listen(). */
static inline int
connect_retry(vmig_ctx_t *c, const char *path, uint32_t ext,
              struct vmig_vfu_client **out)
{
    int ret = -ECONNREFUSED;

    for (int i = 0; i < 200 && ret == -ECONNREFUSED; i++) {
        ret = vmig_vfu_client_connect(c, path, ext, out);
        if (ret == -ECONNREFUSED) {
            usleep(5000);
        }
    }
    return ret;
}

#endif /* VMIG_TESTS_FUNC_CHECK_H */
