/* SPDX-License-Identifier: MIT */
/*
 * tran_sock.c - vfio-user messages over AF_UNIX stream sockets.
 *
 * All socket calls are non-blocking (MSG_DONTWAIT) and waits go through
 * poll() with the caller's timeout, so a peer that stalls mid-message or
 * stops reading costs at most one timeout, never a hung thread.  fds are
 * passed as SCM_RIGHTS ancillary data (spec: "On AF_UNIX sockets, the file
 * descriptor must be passed as SCM_RIGHTS type ancillary data"); they are
 * received with MSG_CMSG_CLOEXEC and a truncated control message (more fds
 * than we accept) is a protocol error.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "internal.h"
#include "timeio.h"
#include "tran.h"

int
vmig__tran_wait_in(int fd, int timeout_ms)
{
    return vmig__fd_wait(fd, POLLIN, timeout_ms);
}

/* Advance an iovec array past @n bytes; returns the new count. */
static int
iov_advance(struct iovec **iov, int iovcnt, size_t n)
{
    while (iovcnt > 0 && n >= (*iov)->iov_len) {
        n -= (*iov)->iov_len;
        (*iov)++;
        iovcnt--;
    }
    if (iovcnt > 0) {
        (*iov)->iov_base = (uint8_t *)(*iov)->iov_base + n;
        (*iov)->iov_len -= n;
    }
    return iovcnt;
}

static int
send_iov(int fd, int timeout_ms, struct iovec *iov, int iovcnt, const int *fds,
         unsigned int nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * VMIG_VFU_MAX_FDS)];
        struct cmsghdr align;
    } ctl;
    bool fds_sent = nfds == 0;

    if (nfds > VMIG_VFU_MAX_FDS) {
        return -E2BIG;
    }
    while (iovcnt > 0) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
        ssize_t n;

        if (iov->iov_len == 0) {
            iovcnt = iov_advance(&iov, iovcnt, 0);
            continue;
        }
        if (!fds_sent) {
            struct cmsghdr *c;

            memset(&ctl, 0, sizeof(ctl));
            mh.msg_control = ctl.buf;
            mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
            c = CMSG_FIRSTHDR(&mh);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
            memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
        }
        n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            int ret;

            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                return -errno;
            }
            ret = vmig__fd_wait(fd, POLLOUT, timeout_ms);
            if (ret < 0) {
                return ret;
            }
            continue;
        }
        fds_sent = true;
        iovcnt = iov_advance(&iov, iovcnt, (size_t)n);
    }
    return 0;
}

int
vmig__tran_write_all(int fd, int timeout_ms, const struct iovec *iov,
                     int iovcnt)
{
    struct iovec v[8];

    if (iovcnt < 0 || iovcnt > 8) {
        return -EINVAL;
    }
    memcpy(v, iov, sizeof(*iov) * (size_t)iovcnt);
    return send_iov(fd, timeout_ms, v, iovcnt, NULL, 0);
}

int
vmig__tran_send(int fd, int timeout_ms, struct vmig_vfu_hdr *hdr,
                const void *p1, size_t l1, const void *p2, size_t l2,
                const int *fds, unsigned int nfds)
{
    struct iovec iov[3] = {
        {.iov_base = hdr, .iov_len = sizeof(*hdr)},
        {.iov_base = (void *)p1, .iov_len = l1},
        {.iov_base = (void *)p2, .iov_len = l2},
    };
    size_t total = sizeof(*hdr) + l1 + l2;

    if (l1 > VMIG_VFU_MAX_MSG_SIZE || l2 > VMIG_VFU_MAX_MSG_SIZE ||
        total > VMIG_VFU_MAX_MSG_SIZE) {
        return -E2BIG;
    }
    hdr->size = (uint32_t)total;
    return send_iov(fd, timeout_ms, iov, 3, fds, nfds);
}

static void
close_fds(int *fds, unsigned int n)
{
    for (unsigned int i = 0; i < n; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
    }
}

/*
 * Receive up to @len bytes into @buf, collecting fds into @m.  Returns
 * bytes read (> 0), 0 on EOF, or -errno.
 */
static ssize_t
recv_some(int fd, int timeout_ms, void *buf, size_t len,
          struct vmig__tran_msg *m)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * VMIG_VFU_MAX_FDS)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = buf, .iov_len = len};

    for (;;) {
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = ctl.buf,
                            .msg_controllen = sizeof(ctl.buf)};
        struct cmsghdr *c;
        bool bad = false;
        ssize_t n;

        n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0) {
            int ret;

            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                return -errno;
            }
            ret = vmig__fd_wait(fd, POLLIN, timeout_ms);
            if (ret < 0) {
                return ret;
            }
            continue;
        }
        for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
            size_t k;
            int *p;

            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
                c->cmsg_len < CMSG_LEN(0)) {
                continue;
            }
            k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            p = (int *)(void *)CMSG_DATA(c);
            for (size_t i = 0; i < k; i++) {
                int v;

                memcpy(&v, p + i, sizeof(v));
                if (m->nfds < VMIG_VFU_MAX_FDS) {
                    m->fds[m->nfds++] = v;
                } else {
                    close(v);
                    bad = true;
                }
            }
        }
        if (bad || (mh.msg_flags & MSG_CTRUNC)) {
            return -EPROTO;
        }
        return n;
    }
}

int
vmig__tran_recv(int fd, int timeout_ms, size_t max_size,
                struct vmig__tran_msg *out)
{
    struct vmig__tran_msg m;
    struct vmig_vfu_hdr hdr = {0};
    size_t got = 0;
    int ret;

    memset(&m, 0, sizeof(m));
    while (got < sizeof(hdr)) {
        ssize_t n = recv_some(fd, timeout_ms, (uint8_t *)&hdr + got,
                              sizeof(hdr) - got, &m);

        if (n < 0) {
            ret = (int)n;
            goto err;
        }
        if (n == 0) {
            ret = got == 0 ? -ENOTCONN : -ECONNRESET;
            goto err;
        }
        got += (size_t)n;
    }
    if (hdr.size < sizeof(hdr)) {
        ret = -EPROTO;
        goto err;
    }
    if (hdr.size > max_size || hdr.size > VMIG_VFU_MAX_MSG_SIZE) {
        ret = -E2BIG;
        goto err;
    }
    m.buf = malloc(hdr.size);
    if (m.buf == NULL) {
        ret = -ENOMEM;
        goto err;
    }
    memcpy(m.buf, &hdr, sizeof(hdr));
    while (got < hdr.size) {
        ssize_t n = recv_some(fd, timeout_ms, m.buf + got, hdr.size - got, &m);

        if (n < 0) {
            ret = (int)n;
            goto err;
        }
        if (n == 0) {
            ret = -ECONNRESET;
            goto err;
        }
        got += (size_t)n;
    }
    m.len = hdr.size;
    *out = m;
    return 0;

err:
    free(m.buf);
    close_fds(m.fds, m.nfds);
    return ret;
}

void
vmig__tran_msg_release(struct vmig__tran_msg *m)
{
    free(m->buf);
    m->buf = NULL;
    close_fds(m->fds, m->nfds);
    m->nfds = 0;
}

int
vmig__tran_read_all(int fd, int timeout_ms, void *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = recv((fd), (uint8_t *)buf + got, len - got, MSG_DONTWAIT);

        if (n < 0) {
            int ret;

            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                return -errno;
            }
            ret = vmig__fd_wait(fd, POLLIN, timeout_ms);
            if (ret < 0) {
                return ret;
            }
            continue;
        }
        if (n == 0) {
            return -ECONNRESET;
        }
        got += (size_t)n;
    }
    return 0;
}
