/* SPDX-License-Identifier: MIT */
/*
 * test_tran.c - the UNIX socket transport: fd passing, partial reads and
 * writes, bounded sizes, EOF and timeouts.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include "../fdpass.h"
#include "tran.h"

static int
count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    while (d != NULL && readdir(d) != NULL) {
        n++;
    }
    if (d != NULL) {
        closedir(d);
    }
    return n;
}

static void
pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void
test_roundtrip_fds(void **state)
{
    struct vmig_vfu_hdr h = {.id = 9, .cmd = VMIG_VFU_CMD_DMA_MAP};
    struct vmig__tran_msg m;
    int sv[2], pp[2], fds[2];
    char b[4];

    (void)state;
    pair(sv);
    assert_int_equal(pipe(pp), 0);
    fds[0] = pp[1];
    fds[1] = pp[1];
    assert_int_equal(
        vmig__tran_send(sv[0], 1000, &h, "abcd", 4, "ef", 2, fds, 2), 0);
    assert_int_equal(vmig__tran_recv(sv[1], 1000, 4096, &m), 0);
    assert_int_equal(m.len, 22);
    assert_int_equal(h.size, 22);
    assert_memory_equal(m.buf + 16, "abcdef", 6);
    assert_int_equal(m.nfds, 2);
    /* the received fd is the pipe's write end */
    assert_int_equal(write(m.fds[0], "xy", 2), 2);
    assert_int_equal(read(pp[0], b, 2), 2);
    assert_memory_equal(b, "xy", 2);
    vmig__tran_msg_release(&m);
    assert_int_equal(m.nfds, 0);
    close(pp[0]);
    close(pp[1]);
    close(sv[0]);
    close(sv[1]);
}

struct slow {
    int fd;
    const uint8_t *buf;
    size_t len;
    int sendfd;
};

/* Write one byte at a time; the fd rides on the first byte. */
static void *
slow_writer(void *arg)
{
    struct slow *s = arg;

    for (size_t i = 0; i < s->len; i++) {
        struct iovec iov = {(void *)(s->buf + i), 1};

        if (fdpass_send(s->fd, &iov, 1, &s->sendfd,
                        i == 0 && s->sendfd >= 0 ? 1 : 0) != 1) {
            break;
        }
        usleep(100);
    }
    return NULL;
}

static void
test_partial_reads(void **state)
{
    uint8_t msg[40];
    struct vmig_vfu_hdr h = {.id = 1, .cmd = 4, .size = sizeof(msg)};
    struct slow s;
    struct vmig__tran_msg m;
    pthread_t th;
    int sv[2];

    (void)state;
    pair(sv);
    memcpy(msg, &h, 16);
    for (int i = 16; i < 40; i++) {
        msg[i] = (uint8_t)i;
    }
    s = (struct slow){sv[0], msg, sizeof(msg), sv[0]};
    assert_int_equal(pthread_create(&th, NULL, slow_writer, &s), 0);
    assert_int_equal(vmig__tran_recv(sv[1], 2000, 4096, &m), 0);
    pthread_join(th, NULL);
    assert_int_equal(m.len, sizeof(msg));
    assert_memory_equal(m.buf, msg, sizeof(msg));
    assert_int_equal(m.nfds, 1);
    vmig__tran_msg_release(&m);
    close(sv[0]);
    close(sv[1]);
}

struct bigread {
    int fd;
    struct vmig__tran_msg m;
    int ret;
};

static void *
big_reader(void *arg)
{
    struct bigread *b = arg;

    b->ret = vmig__tran_recv(b->fd, 5000, VMIG_VFU_MAX_MSG_SIZE, &b->m);
    return NULL;
}

static void
test_large_partial_writes(void **state)
{
    size_t n = 4u << 20;
    uint8_t *p = malloc(n);
    struct vmig_vfu_hdr h = {.id = 2, .cmd = VMIG_VFU_CMD_REGION_WRITE};
    struct bigread b = {0};
    pthread_t th;
    int sv[2];

    (void)state;
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)(i * 7);
    }
    pair(sv);
    b.fd = sv[1];
    assert_int_equal(pthread_create(&th, NULL, big_reader, &b), 0);
    /* far more than the socket buffer: sendmsg returns short counts */
    assert_int_equal(vmig__tran_send(sv[0], 5000, &h, p, n, NULL, 0, NULL, 0),
                     0);
    pthread_join(th, NULL);
    assert_int_equal(b.ret, 0);
    assert_int_equal(b.m.len, n + 16);
    assert_memory_equal(b.m.buf + 16, p, n);
    vmig__tran_msg_release(&b.m);
    free(p);
    close(sv[0]);
    close(sv[1]);
}

static void
test_bad_sizes_eof_timeout(void **state)
{
    struct vmig_vfu_hdr h = {.id = 1, .cmd = 1, .size = 8};
    struct vmig__tran_msg m;
    int sv[2];

    (void)state;
    /* msg_size below the header */
    pair(sv);
    assert_int_equal(write(sv[0], &h, 16), 16);
    assert_int_equal(vmig__tran_recv(sv[1], 1000, 4096, &m), -EPROTO);
    /* above the caller's bound: refused before allocating */
    h.size = 0xfffffff0u;
    assert_int_equal(write(sv[0], &h, 16), 16);
    assert_int_equal(vmig__tran_recv(sv[1], 1000, 4096, &m), -E2BIG);
    h.size = 5000;
    assert_int_equal(write(sv[0], &h, 16), 16);
    assert_int_equal(vmig__tran_recv(sv[1], 1000, 4096, &m), -E2BIG);
    /* nothing arrives: timeout */
    assert_int_equal(vmig__tran_recv(sv[1], 50, 4096, &m), -ETIMEDOUT);
    /* stalls mid-header: timeout */
    assert_int_equal(write(sv[0], &h, 8), 8);
    assert_int_equal(vmig__tran_recv(sv[1], 50, 4096, &m), -ETIMEDOUT);
    close(sv[0]);
    close(sv[1]);

    /* EOF mid-message */
    pair(sv);
    h.size = 100;
    assert_int_equal(write(sv[0], &h, 16), 16);
    assert_int_equal(write(sv[0], "abc", 3), 3);
    close(sv[0]);
    assert_int_equal(vmig__tran_recv(sv[1], 1000, 4096, &m), -ECONNRESET);
    /* EOF between messages */
    assert_int_equal(vmig__tran_recv(sv[1], 1000, 4096, &m), -ENOTCONN);
    close(sv[1]);

    /* sending to a closed peer */
    pair(sv);
    close(sv[1]);
    assert_int_equal(
        vmig__tran_send(sv[0], 1000, &h, NULL, 0, NULL, 0, NULL, 0), -EPIPE);
    assert_int_equal(vmig__tran_send(sv[0], 1000, &h, NULL,
                                     VMIG_VFU_MAX_MSG_SIZE, NULL, 0, NULL, 0),
                     -E2BIG);
    close(sv[0]);
}

static void
test_too_many_fds(void **state)
{
    int fds[VMIG_VFU_MAX_FDS + 4];
    struct vmig_vfu_hdr h = {.id = 1, .cmd = 8, .size = 16};
    struct iovec iov = {&h, 16};
    struct vmig__tran_msg m;
    int sv[2], before;

    (void)state;
    pair(sv);
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
        fds[i] = sv[0];
    }
    before = count_fds();
    assert_int_equal(
        fdpass_send(sv[0], &iov, 1, fds, sizeof(fds) / sizeof(fds[0])), 16);
    assert_int_equal(vmig__tran_recv(sv[1], 1000, 4096, &m), -EPROTO);
    /* every fd that did arrive was closed again */
    assert_int_equal(count_fds(), before);
    assert_int_equal(vmig__tran_send(sv[0], 1000, &h, NULL, 0, NULL, 0, fds,
                                     VMIG_VFU_MAX_FDS + 1),
                     -E2BIG);
    close(sv[0]);
    close(sv[1]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_fds),
        cmocka_unit_test(test_partial_reads),
        cmocka_unit_test(test_large_partial_writes),
        cmocka_unit_test(test_bad_sizes_eof_timeout),
        cmocka_unit_test(test_too_many_fds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
