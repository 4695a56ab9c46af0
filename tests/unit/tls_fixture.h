/* SPDX-License-Identifier: MIT */
/*
 * tls_fixture.h - what the TLS tests share (tls_fixture.c): credentials
 * made by vmig_tls_setup() in a temporary directory, once per program
 * (setup_all/teardown_all, a cmocka group fixture), and one handshake
 * over loopback TCP with the server on a thread (pair()).
 */
#ifndef VMIG_TESTS_TLS_FIXTURE_H
#define VMIG_TESTS_TLS_FIXTURE_H

#include <stdbool.h>
#include <string.h>
#include <vmig/chan.h>
#include <vmig/ctx.h>
#include <vmig/tls.h>

#define DAY (86400ll)

/* the credentials' directory (below /tmp) and the context of the run */
extern char top[];
extern vmig_ctx_t *ctx;

/* One end of a handshake: @p in (endpoint set by pair()), the rest out. */
struct end {
    struct vmig_tls_params p;
    struct vmig_tls *t;
    int fd;
    int ret;
    char why[512];
    struct vmig_chan *ch;
    bool plain; /* a plaintext vmig peer: the stream preamble only */
    unsigned int timeout_ms;
};

/* A reason (why) must name what went wrong. */
#define assert_why(e, text)                                                    \
    do {                                                                       \
        if (strstr((e)->why, (text)) == NULL) {                                \
            fail_msg("reason '%s' lacks '%s'", (e)->why, (text));              \
        }                                                                      \
    } while (0)

/* @sub below top (one of 8 rotating buffers). */
const char *path(const char *sub);
/* Credentials by vmig_tls_setup() in a new directory @sub. */
void mkcreds(const char *sub, const struct vmig_tls_setup_params *p);
void write_text(const char *file, const char *text);
/* Every credential set the tests need, made once; and removed. */
int setup_all(void **state);
int teardown_all(void **state);
/* The server end of pair(), on its thread (@arg: a struct end). */
void *server_main(void *arg);
void load(struct end *e);
/* Run one handshake: the server on a thread, the client here. */
void pair(struct end *srv, struct end *cli);
void end_free(struct end *e);

#endif /* VMIG_TESTS_TLS_FIXTURE_H */
