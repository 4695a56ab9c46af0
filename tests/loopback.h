/* SPDX-License-Identifier: MIT */
/*
 * loopback.h - loopback TCP for tests and benchmarks: a listener on an
 * ephemeral port, a connection to it (or a plain vmig channel over one),
 * and one plain TCP copy of a buffer
 * (the baseline benchmarks compare migration transfers against).
 * Header-only; every function returns a negative errno on failure and
 * leaves the judging to the caller (cmocka assert or a benchmark's exit).
 */
#ifndef VMIG_TESTS_LOOPBACK_H
#define VMIG_TESTS_LOOPBACK_H

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <vmig/chan.h>

/* Listen on 127.0.0.1, an ephemeral port (*@port); return the fd. */
static inline int
lb_listen(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    *port = 0;
    if (fd < 0) {
        return -errno;
    }
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        int err = -errno;

        close(fd);
        return err;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* Connect to 127.0.0.1:@port; return the fd. */
static inline int
lb_connect(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        return -errno;
    }
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int err = -errno;

        close(fd);
        return err;
    }
    return fd;
}

/* A plain channel over a new connection to 127.0.0.1:@port (a test's or
 * benchmark's channel open op); the socket is closed on failure. */
static inline int
lb_chan_connect(vmig_ctx_t *ctx, int port, struct vmig_chan **out)
{
    int fd = lb_connect(port), ret;

    if (fd < 0) {
        return fd;
    }
    ret = vmig_chan_plain(ctx, fd, out);
    if (ret < 0) {
        close(fd);
    }
    return ret;
}

/* Free @ch, then close its socket (a channel release op). */
static inline void
lb_chan_close(struct vmig_chan *ch)
{
    int fd = vmig_chan_fd(ch);

    vmig_chan_free(ch);
    close(fd);
}

struct lb_sink {
    int lfd;
    uint8_t *dst;
    size_t len;
    size_t got;
};

static inline void *
lb_sink_main(void *arg)
{
    struct lb_sink *s = arg;
    int fd = accept(s->lfd, NULL, NULL);

    /* like a migration destination, land the bytes in memory */
    while (fd >= 0 && s->got < s->len) {
        size_t want = s->len - s->got < (4u << 20) ? s->len - s->got : 4u << 20;
        ssize_t n = read(fd, s->dst + s->got, want);

        if (n <= 0) {
            break;
        }
        s->got += (size_t)n;
    }
    if (fd >= 0) {
        close(fd);
    }
    return NULL;
}

/*
 * One plain TCP loopback copy of @len bytes from @src into @dst (a reader
 * thread lands them); return the seconds it took (> 0) or a negative
 * errno.
 */
static inline double
lb_tcp_copy(const uint8_t *src, uint8_t *dst, size_t len)
{
    struct lb_sink s = {.dst = dst, .len = len};
    struct timespec t0, t1;
    size_t off = 0;
    pthread_t th;
    int port, fd;

    s.lfd = lb_listen(&port);
    if (s.lfd < 0) {
        return s.lfd;
    }
    if (pthread_create(&th, NULL, lb_sink_main, &s) != 0) {
        close(s.lfd);
        return -EAGAIN;
    }
    fd = lb_connect(port);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (fd >= 0 && off < len) {
        size_t n = len - off < (4u << 20) ? len - off : 4u << 20;
        ssize_t w = write(fd, src + off, n);

        if (w <= 0) {
            break;
        }
        off += (size_t)w;
    }
    if (fd >= 0) {
        close(fd);
    }
    pthread_join(th, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    close(s.lfd);
    if (fd < 0 || s.got != len) {
        return fd < 0 ? fd : -EIO;
    }
    return (double)(t1.tv_sec - t0.tv_sec) +
           (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
}

#endif /* VMIG_TESTS_LOOPBACK_H */
