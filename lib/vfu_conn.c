/* SPDX-License-Identifier: MIT */
/*
 * vfu_conn.c - the vfio-user server's connection I/O: messages to and from
 * the client over the socket (struct vfu_io, which vfu_fuzz.c replaces),
 * serialised by conn.send_lock, and which thread runs the server's loop.
 * Everything else in the server sends through here, so no server file
 * needs another to reach the client.
 */
#include <errno.h>
#include "vfu_srv.h"

/* The server whose loop runs on this thread (callbacks see it). */
static __thread const struct vmig_vfu_server *loop_server;

void
vmig__vfu_loop_enter(struct vmig_vfu_server *s)
{
    loop_server = s;
}

void
vmig__vfu_loop_leave(void)
{
    loop_server = NULL;
}

bool
vmig__vfu_in_loop(const struct vmig_vfu_server *s)
{
    return loop_server == s;
}

static int
sock_send(struct vmig_vfu_server *s, struct vmig_vfu_hdr *h, const void *p1,
          size_t l1, const void *p2, size_t l2, const int *fds,
          unsigned int nfds)
{
    int ret;

    pthread_mutex_lock(&s->conn.send_lock);
    ret = s->conn.fd < 0 ? -ENOTCONN
                         : vmig__tran_send(s->conn.fd, VFU_TIMEOUT_MS, h, p1,
                                           l1, p2, l2, fds, nfds);
    pthread_mutex_unlock(&s->conn.send_lock);
    return ret;
}

static int
sock_recv(struct vmig_vfu_server *s, size_t max, struct vmig__tran_msg *m)
{
    return vmig__tran_recv(s->conn.fd, VFU_TIMEOUT_MS, max, m);
}

const struct vfu_io vmig__vfu_sock_io = {
    .send = sock_send,
    .recv = sock_recv,
};

int
vmig__vfu_send(struct vmig_vfu_server *s, struct vmig_vfu_hdr *h,
               const void *p1, size_t l1, const void *p2, size_t l2,
               const int *fds, unsigned int nfds)
{
    return s->conn.io->send(s, h, p1, l1, p2, l2, fds, nfds);
}
