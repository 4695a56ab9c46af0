/* SPDX-License-Identifier: MIT */
/*
 * tran.h - vfio-user message transport over a UNIX stream socket (private).
 *
 * Whole messages go out with one logical sendmsg (partial writes are
 * continued; fds ride on the first byte) and come in as one allocated
 * buffer plus the fds that arrived with it.  Sizes are checked before any
 * allocation; every wait is bounded by a timeout.  No function here keeps
 * state between calls, so a socket may be shared by threads as long as
 * each direction is serialised by the caller.
 */
#ifndef VMIG_TRAN_H
#define VMIG_TRAN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <vmig/proto.h>

/**
 * struct vmig__tran_msg - one received message.
 * @buf:  the whole message (header first), malloc'ed; @len bytes.
 * @len:  total size.
 * @fds:  fds received with it; a consumer that keeps one sets its slot
 *        to -1 so vmig__tran_msg_release() does not close it.
 * @nfds: number of valid entries in @fds.
 */
struct vmig__tran_msg {
    uint8_t *buf;
    size_t len;
    int fds[VMIG_VFU_MAX_FDS];
    unsigned int nfds;
};

/*
 * vmig__tran_send() - Send header + two payload parts + fds.
 * The header's size field is filled in.  Return: 0, -ETIMEDOUT, -EPIPE,
 * -E2BIG, or another negative errno from sendmsg.
 */
int vmig__tran_send(int fd, int timeout_ms, struct vmig_vfu_hdr *hdr,
                    const void *p1, size_t l1, const void *p2, size_t l2,
                    const int *fds, unsigned int nfds);

/*
 * vmig__tran_recv() - Receive one message of at most @max_size bytes.
 * @timeout_ms bounds every wait (the first byte included); -1 waits
 * forever.  Return: 0; -ENOTCONN when the peer closed between messages;
 * -ECONNRESET when it closed mid-message; -ETIMEDOUT; -EPROTO for a
 * msg_size below 16 or fds beyond VMIG_VFU_MAX_FDS; -E2BIG for a msg_size
 * above @max_size; -ENOMEM.  On error nothing is left allocated or open.
 */
int vmig__tran_recv(int fd, int timeout_ms, size_t max_size,
                    struct vmig__tran_msg *out);

/* Free the buffer and close every fd slot that is not -1. */
void vmig__tran_msg_release(struct vmig__tran_msg *m);

/* Write/read exactly the bytes asked, with a per-wait timeout. */
int vmig__tran_write_all(int fd, int timeout_ms, const struct iovec *iov,
                         int iovcnt);
int vmig__tran_read_all(int fd, int timeout_ms, void *buf, size_t len);

/* Wait until @fd is readable (POLLIN); 0, -ETIMEDOUT, -errno. */
int vmig__tran_wait_in(int fd, int timeout_ms);

#endif /* VMIG_TRAN_H */
