/* SPDX-License-Identifier: MIT */
/*
 * timeio.h - the clocks and the bounded waits on a file descriptor that
 * every libvmig transport uses (vfio-user sockets, migration channels,
 * TLS), so each has one definition.
 */
#ifndef VMIG_TIMEIO_H
#define VMIG_TIMEIO_H

#include <stddef.h>
#include <stdint.h>

/* CLOCK_MONOTONIC in ns and ms; CLOCK_REALTIME in ns (for timestamps a
 * person reads). */
uint64_t vmig__mono_ns(void);
uint64_t vmig__real_ns(void);

static inline uint64_t
vmig__mono_ms(void)
{
    return vmig__mono_ns() / 1000000;
}

/*
 * Wait until @fd is ready for @events, for up to @timeout_ms (negative:
 * no limit); EINTR is retried.  Return 0, -ETIMEDOUT or -errno.
 */
int vmig__fd_wait(int fd, short events, int timeout_ms);

/*
 * After this side shut down its writing: read and discard what the peer
 * still sends (into @buf, @len bytes at a time) until it hangs up, an
 * error, or @ms passed.  Closing a socket with unread data makes TCP send
 * a reset, which can destroy the last message before the peer reads it;
 * draining first lets that message arrive.
 */
void vmig__fd_drain(int fd, unsigned int ms, void *buf, size_t len);

#endif /* VMIG_TIMEIO_H */
