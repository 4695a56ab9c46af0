/* SPDX-License-Identifier: MIT */
/*
 * tls_fixture.c - credentials and handshakes for the TLS tests
 * (tls_fixture.h).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <xxhash.h>
#include <vmig/engine.h>
#include <vmig_testkit/memdev.h>
#include <vmig/migproto.h>
#include <vmig/tls.h>
#include "../loopback.h"
#include "tls_fixture.h"
#include "chan_priv.h"
#include "tls_priv.h"

char top[] = "/tmp/vmig-test-tls-XXXXXX";
vmig_ctx_t *ctx;

/* ------------------------------------------------------------ fixtures */

const char *
path(const char *sub)
{
    static char buf[8][256];
    static int i;

    i = (i + 1) % 8;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", top, sub);
    return buf[i];
}

void
mkcreds(const char *sub, const struct vmig_tls_setup_params *p)
{
    char err[256];

    assert_int_equal(mkdir(path(sub), 0700), 0);
    if (vmig_tls_setup(path(sub), p, err, sizeof(err)) != 0) {
        fail_msg("tls_setup %s: %s", sub, err);
    }
}

void
write_text(const char *file, const char *text)
{
    FILE *f = fopen(path(file), "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Every credential set the tests need, made once. */
int
setup_all(void **state)
{
    struct vmig_tls_setup_params p = {0};

    (void)state;
    if (mkdtemp(top) == NULL) {
        return -1;
    }
    if (vmig_ctx_new("tls", NULL, NULL, &ctx) < 0) {
        return -1;
    }
    mkcreds("good", NULL);
    mkcreds("other", NULL); /* another CA */
    p.ca_dir = path("good");
    p.valid_from_s = -10 * DAY;
    p.valid_s = 2 * DAY;
    mkcreds("expired", &p);
    p.valid_from_s = 10 * DAY;
    p.valid_s = 10 * DAY;
    mkcreds("future", &p);
    p = (struct vmig_tls_setup_params){.ca_dir = path("good"),
                                       .hostnames = "elsewhere.example",
                                       .client_cn = "intruder"};
    mkcreds("elsewhere", &p);
    p = (struct vmig_tls_setup_params){.psk_identity = "stranger"};
    mkcreds("stranger", &p);
    /* trusts the good CA, presents a client certificate of another CA */
    {
        char cmd[1024];

        assert_int_equal(mkdir(path("rogue"), 0700), 0);
        snprintf(cmd, sizeof(cmd),
                 "cp %s/good/ca-cert.pem %s/other/client-*.pem %s/rogue/", top,
                 top, top);
        if (system(cmd) != 0) {
            return -1;
        }
    }
    write_text("authz-ok", "# allowed sources\n\nCN=vmig-client,O=vmig\n");
    write_text("authz-no", "CN=someone-else,O=vmig\r\n");
    return 0;
}

int
teardown_all(void **state)
{
    char cmd[300];

    (void)state;
    vmig_ctx_free(ctx);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", top);
    return system(cmd) == 0 ? 0 : -1;
}

void *
server_main(void *arg)
{
    struct end *s = arg;

    if (s->plain) {
        struct vmig_mp_conn *c;

        assert_int_equal(vmig_mp_conn_new(ctx, s->fd, &c), 0);
        vmig_mp_conn_set_timeout(c, 5000);
        s->ret = vmig_mp_handshake(c);
        vmig_mp_conn_free(c);
        return NULL;
    }
    s->ret = vmig_tls_handshake(s->t, s->fd, s->timeout_ms, NULL, &s->ch,
                                s->why, sizeof(s->why));
    return NULL;
}

void
load(struct end *e)
{
    char err[512];

    if (e->plain) {
        return;
    }
    if (vmig_tls_new(ctx, &e->p, &e->t, err, sizeof(err)) != 0) {
        fail_msg("vmig_tls_new: %s", err);
    }
}

/* Run one handshake: the server on a thread, the client here. */
void
pair(struct end *srv, struct end *cli)
{
    pthread_t th;
    int lfd, port;

    srv->p.endpoint = VMIG_TLS_SERVER;
    cli->p.endpoint = VMIG_TLS_CLIENT;
    if (srv->timeout_ms == 0) {
        srv->timeout_ms = 10000;
    }
    load(srv);
    load(cli);
    lfd = lb_listen(&port);
    assert_true(lfd >= 0);
    cli->fd = lb_connect(port);
    assert_true(cli->fd >= 0);
    srv->fd = accept(lfd, NULL, NULL);
    assert_true(srv->fd >= 0);
    close(lfd);
    assert_int_equal(pthread_create(&th, NULL, server_main, srv), 0);
    if (cli->plain) {
        struct vmig_mp_conn *c;

        assert_int_equal(vmig_mp_conn_new(ctx, cli->fd, &c), 0);
        vmig_mp_conn_set_timeout(c, 5000);
        cli->ret = vmig_mp_handshake(c);
        vmig_mp_conn_free(c);
    } else {
        cli->ret = vmig_tls_handshake(cli->t, cli->fd, 10000, NULL, &cli->ch,
                                      cli->why, sizeof(cli->why));
    }
    if (cli->ret != 0) {
        close(cli->fd); /* a refused client hangs up */
        cli->fd = -1;
    }
    pthread_join(th, NULL);
    if (getenv("VMIG_TEST_VERBOSE") != NULL) {
        print_message("  server %d: %s\n  client %d: %s\n", srv->ret, srv->why,
                      cli->ret, cli->why);
    }
}

void
end_free(struct end *e)
{
    vmig_chan_free(e->ch);
    vmig_tls_free(e->t);
    if (e->fd >= 0) {
        close(e->fd);
    }
}
