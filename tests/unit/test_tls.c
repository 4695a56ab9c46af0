/* SPDX-License-Identifier: MIT */
/*
 * test_tls.c - TLS migration channels (<vmig/tls.h>, <vmig/chan.h>):
 * credentials made by vmig_tls_setup() in a temporary directory, both
 * ends of each handshake over loopback TCP (the server on a thread), and
 * every refusal named on the side that can know it: wrong PSK, unknown
 * identity, a certificate from another CA, expired and not yet valid
 * certificates, a host name mismatch, an allow-list miss, plaintext
 * against TLS both ways, mixed credential kinds, a silent peer; and the
 * credential file parsers fed bad input.  Migrations over TLS are in
 * test_tls_migrate.c.
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
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
