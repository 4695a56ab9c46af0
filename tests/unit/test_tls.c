/* SPDX-License-Identifier: MIT */
/*
 * test_tls.c - TLS migration channels (<vmig/tls.h>, <vmig/chan.h>):
 * credentials made by vmig_tls_setup() in a temporary directory, both
 * ends of each handshake over loopback TCP (the server on a thread), and
 * every refusal named on the side that can know it: wrong PSK, unknown
 * identity, a certificate from another CA, expired and not yet valid
 * certificates, a host name mismatch, an allow-list miss, plaintext
 * against TLS both ways, mixed credential kinds, a silent peer.  Then a
 * migration through the engine over TLS (x509 and PSK) landing
 * byte-identical, a byte flipped on the wire caught by TLS, frames sent
 * without a checksum inside TLS (the record layer makes it redundant),
 * and the credential file parsers fed bad input.
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
#include "chan_priv.h"
#include "tls_priv.h"

#define DAY (86400ll)

static char top[] = "/tmp/vmig-test-tls-XXXXXX";
static vmig_ctx_t *ctx;

/* ------------------------------------------------------------ fixtures */

static const char *
path(const char *sub)
{
    static char buf[8][256];
    static int i;

    i = (i + 1) % 8;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", top, sub);
    return buf[i];
}

static void
mkcreds(const char *sub, const struct vmig_tls_setup_params *p)
{
    char err[256];

    assert_int_equal(mkdir(path(sub), 0700), 0);
    if (vmig_tls_setup(path(sub), p, err, sizeof(err)) != 0) {
        fail_msg("tls_setup %s: %s", sub, err);
    }
}

static void
write_text(const char *file, const char *text)
{
    FILE *f = fopen(path(file), "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Every credential set the tests need, made once. */
static int
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

static int
teardown_all(void **state)
{
    char cmd[300];

    (void)state;
    vmig_ctx_free(ctx);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", top);
    return system(cmd) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ handshakes */

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

static void *
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

static void
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
static void
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

static void
end_free(struct end *e)
{
    vmig_chan_free(e->ch);
    vmig_tls_free(e->t);
    if (e->fd >= 0) {
        close(e->fd);
    }
}

#define assert_why(e, text)                                                    \
    do {                                                                       \
        if (strstr((e)->why, (text)) == NULL) {                                \
            fail_msg("reason '%s' lacks '%s'", (e)->why, (text));              \
        }                                                                      \
    } while (0)

static void
test_x509_ok(void **state)
{
    struct end s = {.p.x509_dir = path("good")};
    struct end c = {.p.x509_dir = path("good"), .p.hostname = "localhost"};
    struct vmig_chan_info si, ci;

    (void)state;
    pair(&s, &c);
    assert_int_equal(c.ret, 0);
    assert_int_equal(s.ret, 0);
    vmig_chan_info(s.ch, &si);
    vmig_chan_info(c.ch, &ci);
    assert_true(si.tls && ci.tls && !si.psk);
    assert_string_equal(si.version, "TLSv1.3");
    assert_string_equal(si.cipher, "TLS_AES_128_GCM_SHA256");
    assert_string_equal(si.peer, "CN=vmig-client,O=vmig");
    assert_string_equal(ci.peer, "CN=localhost,O=vmig");
    assert_int_equal(vmig_chan_fd(s.ch), s.fd);
    end_free(&s);
    end_free(&c);
}

static void
test_x509_ip_and_authz_ok(void **state)
{
    struct end s = {.p.x509_dir = path("good"),
                    .p.authz_file = path("authz-ok")};
    struct end c = {.p.x509_dir = path("good"), .p.hostname = "127.0.0.1"};

    (void)state;
    pair(&s, &c);
    assert_int_equal(c.ret, 0);
    assert_int_equal(s.ret, 0);
    end_free(&s);
    end_free(&c);
}

/* OpenSSL's one-line form of a subject is accepted in the allow-list. */
static void
test_authz_oneline(void **state)
{
    struct end s = {.p.x509_dir = path("good"),
                    .p.authz_file = path("authz-oneline")};
    struct end c = {.p.x509_dir = path("good"), .p.hostname = "localhost"};

    (void)state;
    write_text("authz-oneline", "/O=vmig/CN=vmig-client\n");
    pair(&s, &c);
    assert_int_equal(c.ret, 0);
    assert_int_equal(s.ret, 0);
    end_free(&s);
    end_free(&c);
}

static void
test_psk_ok(void **state)
{
    struct end s = {.p.psk_file = path("good/keys.psk"),
                    .p.authz_file = path("authz-psk")};
    struct end c = {.p.psk_file = path("good/keys.psk")};
    struct vmig_chan_info si;

    (void)state;
    write_text("authz-psk", "qemu\n");
    pair(&s, &c);
    assert_int_equal(c.ret, 0);
    assert_int_equal(s.ret, 0);
    vmig_chan_info(s.ch, &si);
    assert_true(si.psk);
    assert_string_equal(si.peer, "qemu");
    end_free(&s);
    end_free(&c);
}

static void
test_wrong_psk(void **state)
{
    struct end s = {.p.psk_file = path("good/keys.psk")};
    struct end c = {.p.psk_file = path("other/keys.psk")};

    (void)state;
    pair(&s, &c);
    assert_int_equal(s.ret, -EACCES);
    assert_why(&s, "wrong pre-shared key");
    assert_int_equal(c.ret, -EACCES);
    assert_why(&c, "wrong pre-shared key");
    end_free(&s);
    end_free(&c);
}

static void
test_unknown_identity(void **state)
{
    struct end s = {.p.psk_file = path("good/keys.psk")};
    struct end c = {.p.psk_file = path("stranger/keys.psk"),
                    .p.psk_identity = "stranger"};

    (void)state;
    pair(&s, &c);
    assert_int_equal(s.ret, -EACCES);
    assert_why(&s, "identity 'stranger', which is not in");
    assert_int_equal(c.ret, -EACCES);
    assert_why(&c, "does not know PSK identity 'stranger'");
    end_free(&s);
    end_free(&c);
}

static void
test_client_other_ca(void **state)
{
    struct end s = {.p.x509_dir = path("good")};
    struct end c = {.p.x509_dir = path("rogue"), .p.hostname = "localhost"};

    (void)state;
    pair(&s, &c);
    assert_int_equal(s.ret, -EACCES);
    assert_why(&s, "the source's certificate 'CN=vmig-client,O=vmig' is not "
                   "signed by our CA");
    assert_int_equal(c.ret, -EACCES);
    assert_why(&c, "does not trust our certificate");
    end_free(&s);
    end_free(&c);
}

static void
test_server_other_ca(void **state)
{
    struct end s = {.p.x509_dir = path("other")};
    struct end c = {.p.x509_dir = path("good"), .p.hostname = "localhost"};

    (void)state;
    pair(&s, &c);
    assert_int_equal(c.ret, -EACCES);
    assert_why(&c, "the destination's certificate 'CN=localhost,O=vmig' is "
                   "not signed by our CA");
    assert_int_equal(s.ret, -EACCES);
    assert_why(&s, "does not trust our certificate");
    end_free(&s);
    end_free(&c);
}

static void
test_expired_client(void **state)
{
    struct end s = {.p.x509_dir = path("good")};
    struct end c = {.p.x509_dir = path("expired"), .p.hostname = "localhost"};

    (void)state;
    /* "expired" trusts the good CA and the server's cert is good */
    pair(&s, &c);
    assert_int_equal(s.ret, -EACCES);
    assert_why(&s, "the source's certificate 'CN=vmig-client,O=vmig' has "
                   "expired");
    assert_int_equal(c.ret, -EACCES);
    assert_why(&c, "says our certificate has expired");
    end_free(&s);
    end_free(&c);
}

static void
test_expired_server(void **state)
{
    struct end s = {.p.x509_dir = path("expired")};
    struct end c = {.p.x509_dir = path("good"), .p.hostname = "localhost"};

    (void)state;
    pair(&s, &c);
    assert_int_equal(c.ret, -EACCES);
    assert_why(&c, "the destination's certificate 'CN=localhost,O=vmig' has "
                   "expired");
    assert_int_equal(s.ret, -EACCES);
    assert_why(&s, "the source says our certificate has expired");
    end_free(&s);
    end_free(&c);
}

static void
test_future_server(void **state)
{
    struct end s = {.p.x509_dir = path("future")};
    struct end c = {.p.x509_dir = path("good"), .p.hostname = "localhost"};

    (void)state;
    pair(&s, &c);
    assert_int_equal(c.ret, -EACCES);
    assert_why(&c, "is not yet valid");
    assert_int_equal(s.ret, -EACCES);
    assert_why(&s, "the source rejected our certificate");
    end_free(&s);
    end_free(&c);
}

static void
test_future_client(void **state)
{
    struct end s = {.p.x509_dir = path("good")};
    struct end c = {.p.x509_dir = path("future"), .p.hostname = "localhost"};

    (void)state;
    pair(&s, &c);
    assert_int_equal(s.ret, -EACCES);
    assert_why(&s, "is not yet valid");
    assert_int_equal(c.ret, -EACCES);
    assert_why(&c, "rejected our certificate");
    end_free(&s);
    end_free(&c);
}

static void
test_hostname_mismatch(void **state)
{
    struct end s = {.p.x509_dir = path("good")};
    struct end c = {.p.x509_dir = path("good"), .p.hostname = "db.example.org"};

    (void)state;
    pair(&s, &c);
    assert_int_equal(c.ret, -EACCES);
    assert_why(&c, "is not valid for host 'db.example.org'");
    assert_int_equal(s.ret, -EACCES);
    assert_why(&s, "the source rejected our certificate");
    end_free(&s);
    end_free(&c);
}

static void
test_authz_miss(void **state)
{
    struct end s = {.p.x509_dir = path("good"),
                    .p.authz_file = path("authz-no")};
    struct end c = {.p.x509_dir = path("good"), .p.hostname = "localhost"};

    (void)state;
    pair(&s, &c);
    assert_int_equal(s.ret, -EACCES);
    assert_why(&s, "'CN=vmig-client,O=vmig' is not in the allow-list");
    assert_int_equal(c.ret, -EACCES);
    assert_why(&c, "the destination refused us: 'CN=vmig-client,O=vmig' is "
                   "not in the destination's allow-list");
    assert_null(strstr(c.why, top)); /* no path of the destination's */
    end_free(&s);
    end_free(&c);
}

static void
test_plaintext_to_tls(void **state)
{
    struct end s = {.p.x509_dir = path("good")};
    struct end c = {.plain = true};

    (void)state;
    pair(&s, &c);
    assert_int_equal(s.ret, -EPROTO);
    assert_why(&s, "the source speaks plaintext");
    /* the plaintext side recognises the TLS alert it got */
    assert_int_equal(c.ret, -EPROTONOSUPPORT);
    end_free(&s);
    end_free(&c);
}

static void
test_tls_to_plaintext(void **state)
{
    struct end s = {.plain = true};
    struct end c = {.p.psk_file = path("good/keys.psk")};

    (void)state;
    pair(&s, &c);
    assert_int_equal(c.ret, -EPROTO);
    assert_why(&c, "the destination speaks plaintext");
    assert_int_equal(s.ret, -EPROTONOSUPPORT);
    end_free(&s);
    end_free(&c);
}

static void
test_mixed_kinds(void **state)
{
    struct end s = {.p.x509_dir = path("good")};
    struct end c = {.p.psk_file = path("good/keys.psk")};
    struct end s2 = {.p.psk_file = path("good/keys.psk")};
    struct end c2 = {.p.x509_dir = path("good"), .p.hostname = "localhost"};

    (void)state;
    pair(&s, &c);
    assert_int_equal(c.ret, -EACCES);
    assert_why(&c, "answered with a certificate");
    assert_int_equal(s.ret, -EACCES);
    pair(&s2, &c2);
    assert_int_equal(s2.ret, -EACCES);
    assert_why(&s2, "offered no pre-shared key");
    assert_int_equal(c2.ret, -EACCES);
    end_free(&s);
    end_free(&c);
    end_free(&s2);
    end_free(&c2);
}

/* A peer that connects and says nothing: the server gives up in time. */
static void
test_silent_peer(void **state)
{
    struct end s = {.p.x509_dir = path("good"), .timeout_ms = 300};
    int lfd, port, cfd;

    (void)state;
    s.p.endpoint = VMIG_TLS_SERVER;
    load(&s);
    lfd = lb_listen(&port);
    cfd = lb_connect(port);
    s.fd = accept(lfd, NULL, NULL);
    server_main(&s);
    assert_int_equal(s.ret, -ETIMEDOUT);
    assert_why(&s, "no TLS handshake from the source within 300 ms");
    close(cfd);
    close(lfd);
    end_free(&s);
}

static void
test_bad_credentials(void **state)
{
    struct vmig_tls_params p = {.endpoint = VMIG_TLS_SERVER};
    struct vmig_tls *t = NULL;
    char err[512];

    (void)state;
    p.x509_dir = path("nowhere");
    assert_int_equal(vmig_tls_new(ctx, &p, &t, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "ca-cert.pem"));
    assert_non_null(strstr(err, "vmig tls-setup"));
    assert_null(t);
    /* a key that does not match its certificate */
    assert_int_equal(mkdir(path("mismatch"), 0700), 0);
    {
        char cmd[1024];

        snprintf(cmd, sizeof(cmd),
                 "cp %s/good/*.pem %s/mismatch/ && cp %s/other/server-key.pem "
                 "%s/mismatch/",
                 top, top, top, top);
        assert_int_equal(system(cmd), 0);
    }
    p.x509_dir = path("mismatch");
    assert_int_equal(vmig_tls_new(ctx, &p, &t, err, sizeof(err)), -EINVAL);
    if (strstr(err, "does not belong to the certificate") == NULL) {
        fail_msg("%s", err);
    }
    /* neither or both kinds */
    p.x509_dir = NULL;
    assert_int_equal(vmig_tls_new(ctx, &p, &t, err, sizeof(err)), -EINVAL);
    p.x509_dir = path("good");
    p.psk_file = path("good/keys.psk");
    assert_int_equal(vmig_tls_new(ctx, &p, &t, err, sizeof(err)), -EINVAL);
    /* a client with x509 must say which host it expects */
    p = (struct vmig_tls_params){.endpoint = VMIG_TLS_CLIENT,
                                 .x509_dir = path("good")};
    assert_int_equal(vmig_tls_new(ctx, &p, &t, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "--tls-hostname"));
    /* a PSK client whose identity the file lacks */
    p = (struct vmig_tls_params){.endpoint = VMIG_TLS_CLIENT,
                                 .psk_file = path("good/keys.psk"),
                                 .psk_identity = "nobody"};
    assert_int_equal(vmig_tls_new(ctx, &p, &t, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "no key for identity 'nobody'"));
    /* a malformed keys.psk */
    write_text("bad.psk", "qemu:0123\n");
    p.psk_file = path("bad.psk");
    p.psk_identity = NULL;
    assert_int_equal(vmig_tls_new(ctx, &p, &t, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "line 1"));
    assert_null(t);
}

static void
test_setup_modes(void **state)
{
    struct stat st;

    (void)state;
    assert_int_equal(stat(path("good/server-key.pem"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(path("good/keys.psk"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(path("good/ca-cert.pem"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
}

/* ------------------------------------------------------------ parsers */

static void
test_psk_parse(void **state)
{
    static const char *const bad[] = {
        "",                                      /* nothing */
        "qemu\n",                                /* no colon */
        ":00112233445566778899aabbccddeeff\n",   /* empty identity */
        "qemu:00112233445566778899aabbccddee\n", /* 15 bytes */
        "qemu:00112233445566778899aabbccddeeg0\n",
        "qemu:00112233445566778899aabbccddeef\n", /* odd */
        ("a:00112233445566778899aabbccddeeff\na:"
         "00112233445566778899aabbccddeeff"),
        "q\x01:00112233445566778899aabbccddeeff",
    };
    static const char good[] =
        "# keys\r\nqemu:00112233445566778899AABBCCDDEEFF\r\n\n"
        "other:001122334455667788990011223344556677889900112233445566778899"
        "aabb\n";
    struct vmig__psk *k;
    char err[256];
    size_t n;

    (void)state;
    assert_int_equal(
        vmig__psk_parse(good, strlen(good), &k, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 2);
    assert_string_equal(k[0].id, "qemu");
    assert_int_equal(k[0].keylen, 16);
    assert_int_equal(k[0].key[15], 0xff);
    assert_int_equal(k[1].keylen, 32);
    free(k);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        k = NULL;
        if (vmig__psk_parse(bad[i], strlen(bad[i]), &k, &n, err, sizeof(err)) ==
            0) {
            fail_msg("accepted bad keys.psk #%zu", i);
        }
        assert_null(k);
    }
    /* a NUL byte inside */
    assert_int_equal(vmig__psk_parse("qemu:00\0"
                                     "112233445566778899aabbccddeeff",
                                     37, &k, &n, err, sizeof(err)),
                     -EINVAL);
}

static void
test_names_parse(void **state)
{
    char **v, err[256], longline[1100];
    size_t n;

    (void)state;
    assert_int_equal(vmig__names_parse("#c\nCN=a,O=b  \r\n\nqemu",
                                       strlen("#c\nCN=a,O=b  \r\n\nqemu"), &v,
                                       &n, err, sizeof(err)),
                     0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0], "CN=a,O=b");
    assert_string_equal(v[1], "qemu");
    vmig__names_free(v, n);
    assert_int_equal(vmig__names_parse("", 0, &v, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    vmig__names_free(v, n);
    memset(longline, 'x', sizeof(longline) - 1);
    longline[sizeof(longline) - 1] = '\0';
    assert_int_equal(
        vmig__names_parse(longline, strlen(longline), &v, &n, err, sizeof(err)),
        -EINVAL);
    assert_non_null(strstr(err, "line 1"));
}

/* ------------------------------------------------------------ migration */

#define RAM_SIZE (16u << 20)
#define DEV_STATE (1u << 20)

struct tvm {
    uint8_t *ram;
    struct vmig_memdev *dev;
    struct vmig_engine *eng;
    int resumes;
};

static int
t_pause(void *o)
{
    (void)o;
    return 0;
}

static int
t_resume(void *o)
{
    ((struct tvm *)o)->resumes++;
    return 0;
}

static const struct vmig_engine_vm_ops t_ops = {
    .vcpu_pause = t_pause,
    .vcpu_resume = t_resume,
};

static struct tvm *
tvm_new(bool fill, uint64_t seed)
{
    struct tvm *vm = calloc(1, sizeof(*vm));
    struct vmig_memdev_params mp = {.state_size = DEV_STATE,
                                    .flags = VMIG_MIGRATION_STOP_COPY |
                                             VMIG_MIGRATION_P2P,
                                    .seed = seed,
                                    .revision = 1};
    struct vmig_engine_region rg = {.name = "ram0", .size = RAM_SIZE};

    assert_non_null(vm);
    vm->ram = calloc(1, RAM_SIZE);
    assert_non_null(vm->ram);
    if (fill) {
        for (size_t i = 0; i < RAM_SIZE / 8; i++) {
            ((uint64_t *)vm->ram)[i] = XXH64(&i, sizeof(i), seed);
        }
    }
    rg.host = vm->ram;
    assert_int_equal(vmig_memdev_new(ctx, &mp, &vm->dev), 0);
    if (fill) {
        assert_int_equal(vmig_memdev_work(vm->dev, 50), 0);
    }
    assert_int_equal(vmig_engine_new(ctx, &rg, 1, &t_ops, vm, &vm->eng), 0);
    assert_int_equal(
        vmig_engine_add_device(vm->eng, "dev0", vmig_memdev_ops(), vm->dev), 0);
    return vm;
}

static void
tvm_free(struct tvm *vm)
{
    vmig_engine_free(vm->eng);
    vmig_memdev_free(vm->dev);
    free(vm->ram);
    free(vm);
}

struct dst_job {
    struct end e;
    struct tvm *vm;
    int lfd;
    int mret;
};

static void *
dst_main(void *arg)
{
    struct dst_job *j = arg;

    j->e.fd = accept(j->lfd, NULL, NULL);
    j->e.ret = vmig_tls_handshake(j->e.t, j->e.fd, 10000, NULL, &j->e.ch,
                                  j->e.why, sizeof(j->e.why));
    j->mret = j->e.ret == 0 ? vmig_engine_incoming_chan(j->vm->eng, j->e.ch)
                            : j->e.ret;
    return NULL;
}

/* Forward bytes both ways; flip one byte of the main direction at @flip. */
struct proxy {
    int lfd;
    int port;
    size_t flip;
};

static void *
proxy_main(void *arg)
{
    struct proxy *px = arg;
    int a = accept(px->lfd, NULL, NULL), b = lb_connect(px->port);
    size_t seen = 0;
    uint8_t buf[65536];

    while (a >= 0 && b >= 0) {
        struct pollfd pfd[2] = {{.fd = a, .events = POLLIN},
                                {.fd = b, .events = POLLIN}};

        if (poll(pfd, 2, 5000) <= 0) {
            break;
        }
        if (pfd[0].revents) {
            ssize_t n = read(a, buf, sizeof(buf));

            if (n <= 0) {
                break;
            }
            if (px->flip >= seen && px->flip < seen + (size_t)n) {
                buf[px->flip - seen] ^= 0x40;
            }
            seen += (size_t)n;
            if (write(b, buf, (size_t)n) != n) {
                break;
            }
        }
        if (pfd[1].revents) {
            ssize_t n = read(b, buf, sizeof(buf));

            if (n <= 0 || write(a, buf, (size_t)n) != n) {
                break;
            }
        }
    }
    if (a >= 0) {
        close(a);
    }
    if (b >= 0) {
        close(b);
    }
    return NULL;
}

static bool want_ktls; /* ask for kernel TLS (falls back without it) */

static int
tls_migrate(struct tvm *src, struct tvm *dst, const char *creds, bool psk,
            struct proxy *px, int *dret)
{
    struct dst_job j = {.vm = dst};
    struct end c = {0};
    pthread_t th, pth;
    int port, ret;

    if (psk) {
        j.e.p.psk_file = creds;
        c.p.psk_file = creds;
    } else {
        j.e.p.x509_dir = creds;
        c.p.x509_dir = creds;
        c.p.hostname = "localhost";
    }
    j.e.p.endpoint = VMIG_TLS_SERVER;
    c.p.endpoint = VMIG_TLS_CLIENT;
    j.e.p.ktls = want_ktls;
    c.p.ktls = want_ktls;
    load(&j.e);
    load(&c);
    j.lfd = lb_listen(&port);
    assert_int_equal(pthread_create(&th, NULL, dst_main, &j), 0);
    if (px != NULL) {
        px->port = port;
        px->lfd = lb_listen(&port);
        assert_int_equal(pthread_create(&pth, NULL, proxy_main, px), 0);
    }
    c.fd = lb_connect(port);
    ret =
        vmig_tls_handshake(c.t, c.fd, 10000, NULL, &c.ch, c.why, sizeof(c.why));
    if (ret == 0) {
        ret = vmig_engine_migrate_chan(src->eng, c.ch);
    }
    end_free(&c);
    pthread_join(th, NULL);
    if (px != NULL) {
        pthread_join(pth, NULL);
        close(px->lfd);
    }
    *dret = j.mret;
    end_free(&j.e);
    close(j.lfd);
    return ret;
}

static void
check_migration(bool psk)
{
    struct tvm *a = tvm_new(true, 5), *b = tvm_new(false, 9);
    struct vmig_engine_stats st;
    int dret;

    assert_int_equal(tls_migrate(a, b,
                                 psk ? path("good/keys.psk") : path("good"),
                                 psk, NULL, &dret),
                     0);
    assert_int_equal(dret, 0);
    assert_memory_equal(a->ram, b->ram, RAM_SIZE);
    assert_true(vmig_memdev_digest(a->dev) == vmig_memdev_digest(b->dev));
    assert_int_equal(b->resumes, 1);
    vmig_engine_stats(a->eng, &st);
    assert_int_equal(st.status, VMIG_ENGINE_COMPLETED);
    tvm_free(a);
    tvm_free(b);
}

static void
test_migrate_x509(void **state)
{
    (void)state;
    check_migration(false);
}

static void
test_migrate_psk(void **state)
{
    (void)state;
    check_migration(true);
}

/*
 * Asking for kernel TLS: the session writes straight to the socket (no
 * buffer above it, as kTLS needs) and lands the same, offloaded or not.
 */
static void
test_migrate_ktls(void **state)
{
    (void)state;
    want_ktls = true;
    check_migration(false);
    want_ktls = false;
}

/* A byte changed on the wire fails TLS (not our checksum); no resume. */
static void
test_tampered(void **state)
{
    struct tvm *a = tvm_new(true, 5), *b = tvm_new(false, 9);
    struct proxy px = {.flip = 8u << 20};
    int ret, dret;

    (void)state;
    ret = tls_migrate(a, b, path("good"), false, &px, &dret);
    assert_true(ret < 0);
    assert_true(dret < 0);
    assert_int_equal(b->resumes, 0);
    assert_int_equal(a->resumes, 1); /* the source took its VM back */
    assert_int_equal(vmig_memdev_state(a->dev), VMIG_STATE_RUNNING);
    tvm_free(a);
    tvm_free(b);
}

/*
 * Inside TLS a frame's checksum field is zero (the record layer
 * authenticates every byte), the rest of its header is as in plaintext,
 * and a receiver on a TLS channel accepts such frames.
 */
static void
test_frames_unhashed(void **state)
{
    static const uint8_t payload[] = "state bytes";
    struct end s = {.p.x509_dir = path("good")};
    struct end c = {.p.x509_dir = path("good"), .p.hostname = "localhost"};
    struct vmig_mp_conn *cc, *sc;
    struct vmig_mp_frame f;
    uint8_t raw[VMIG_MP_HDR_LEN + sizeof(payload)];
    uint64_t got = 0;

    (void)state;
    pair(&s, &c);
    assert_int_equal(c.ret, 0);
    assert_int_equal(s.ret, 0);
    assert_int_equal(vmig_mp_conn_new_chan(ctx, c.ch, &cc), 0);
    assert_int_equal(vmig_mp_conn_new_chan(ctx, s.ch, &sc), 0);
    vmig_mp_conn_set_timeout(cc, 10000);
    vmig_mp_conn_set_timeout(sc, 10000);
    /* a TLS receiver accepts the frame as it is */
    assert_int_equal(
        vmig_mp_send1(cc, VMIG_MP_DEV_DATA, 0, payload, sizeof(payload)), 0);
    assert_int_equal(vmig_mp_recv(sc, &f), 0);
    assert_int_equal(f.hdr.len, sizeof(payload));
    assert_int_equal(f.hdr.csum, 0);
    assert_memory_equal(f.payload, payload, sizeof(payload));
    /* the next frame as it travels inside the session */
    assert_int_equal(
        vmig_mp_send1(cc, VMIG_MP_DEV_DATA, 0, payload, sizeof(payload)), 0);
    assert_int_equal(
        vmig__chan_read_all(s.ch, raw, sizeof(raw), 10000, NULL, &got), 0);
    assert_memory_equal(raw, "vmfr", 4); /* the frame magic */
    assert_int_equal(raw[4], VMIG_MP_DEV_DATA);
    assert_int_equal(raw[8], sizeof(payload));
    assert_int_equal(raw[12], 1); /* sequence number */
    for (int i = 16; i < 24; i++) {
        assert_int_equal(raw[i], 0); /* no checksum inside TLS */
    }
    assert_memory_equal(raw + VMIG_MP_HDR_LEN, payload, sizeof(payload));
    vmig_mp_conn_free(cc);
    vmig_mp_conn_free(sc);
    end_free(&s);
    end_free(&c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_setup_modes),
        cmocka_unit_test(test_x509_ok),
        cmocka_unit_test(test_x509_ip_and_authz_ok),
        cmocka_unit_test(test_authz_oneline),
        cmocka_unit_test(test_psk_ok),
        cmocka_unit_test(test_wrong_psk),
        cmocka_unit_test(test_unknown_identity),
        cmocka_unit_test(test_client_other_ca),
        cmocka_unit_test(test_server_other_ca),
        cmocka_unit_test(test_expired_client),
        cmocka_unit_test(test_expired_server),
        cmocka_unit_test(test_future_server),
        cmocka_unit_test(test_future_client),
        cmocka_unit_test(test_hostname_mismatch),
        cmocka_unit_test(test_authz_miss),
        cmocka_unit_test(test_plaintext_to_tls),
        cmocka_unit_test(test_tls_to_plaintext),
        cmocka_unit_test(test_mixed_kinds),
        cmocka_unit_test(test_silent_peer),
        cmocka_unit_test(test_bad_credentials),
        cmocka_unit_test(test_psk_parse),
        cmocka_unit_test(test_names_parse),
        cmocka_unit_test(test_migrate_x509),
        cmocka_unit_test(test_migrate_psk),
        cmocka_unit_test(test_migrate_ktls),
        cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_frames_unhashed),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
