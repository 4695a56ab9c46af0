/* SPDX-License-Identifier: MIT */
/*
 * fdpass.h - send bytes on a UNIX socket with file descriptors riding
 * along (SCM_RIGHTS), for tests that write vfio-user messages by hand.
 * Header-only.
 */
#ifndef VMIG_TESTS_FDPASS_H
#define VMIG_TESTS_FDPASS_H

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#define FDPASS_MAX 32

/* sendmsg() of @iov[@iovcnt] (MSG_NOSIGNAL) with the @nfds descriptors
 * @fds attached to its first byte; none when @nfds is 0.  sendmsg()'s
 * result; -1 with errno EINVAL for more than FDPASS_MAX descriptors. */
static inline ssize_t
fdpass_send(int sock, struct iovec *iov, size_t iovcnt, const int *fds,
            size_t nfds)
{
    union {
        char b[CMSG_SPACE(sizeof(int) * FDPASS_MAX)];
        struct cmsghdr a;
    } ctl;
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = iovcnt};

    if (nfds > FDPASS_MAX) {
        errno = EINVAL;
        return -1;
    }
    if (nfds > 0) {
        struct cmsghdr *c;

        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.b;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    return sendmsg(sock, &mh, MSG_NOSIGNAL);
}

#endif /* VMIG_TESTS_FDPASS_H */
