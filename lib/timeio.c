/* SPDX-License-Identifier: MIT */
/*
 * timeio.c - clocks and bounded waits on a file descriptor (timeio.h).
 */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include "timeio.h"

uint64_t
vmig__mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t
vmig__real_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int
vmig__fd_wait(int fd, short events, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    int n;

    do {
        n = poll(&p, 1, timeout_ms);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return -errno;
    }
    return n == 0 ? -ETIMEDOUT : 0;
}

void
vmig__fd_drain(int fd, unsigned int ms, void *buf, size_t len)
{
    uint64_t end = vmig__mono_ms() + ms;

    while (vmig__mono_ms() < end) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (poll(&pfd, 1, 50) <= 0) {
            continue;
        }
        n = recv(fd, buf, len, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            return;
        }
    }
}
