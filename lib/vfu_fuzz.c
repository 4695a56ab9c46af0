/* SPDX-License-Identifier: MIT */
/*
 * vfu_fuzz.c - the fuzzing entry point of the vfio-user server
 * (vfu_priv.h): a message handed in as if it had arrived on the
 * connection.
 *
 * The server's connection I/O is replaced by fuzz_io: replies are
 * dropped and waiting for a client reply (a server-to-client DMA request)
 * fails at once with -ENOTCONN, so no input can make the harness wait.
 * Everything else is the server's own code.
 */
#include <errno.h>
#include <stdlib.h>
#include "vfu_priv.h"
#include "vfu_srv.h"

static int
fuzz_send(struct vmig_vfu_server *s, struct vmig_vfu_hdr *h, const void *p1,
          size_t l1, const void *p2, size_t l2, const int *fds,
          unsigned int nfds)
{
    (void)s;
    (void)h;
    (void)p1;
    (void)l1;
    (void)p2;
    (void)l2;
    (void)fds;
    (void)nfds;
    return 0;
}

static int
fuzz_recv(struct vmig_vfu_server *s, size_t max, struct vmig__tran_msg *m)
{
    (void)s;
    (void)max;
    (void)m;
    return -ENOTCONN;
}

static const struct vfu_io fuzz_io = {
    .send = fuzz_send,
    .recv = fuzz_recv,
};

int
vmig__vfu_server_feed(struct vmig_vfu_server *s, const void *buf, size_t len,
                      const int *fds, unsigned int nfds)
{
    struct vmig__tran_msg raw = {0};
    int ret;

    s->conn.io = &fuzz_io;
    ret = vmig__vfu_ensure_scratch(s);
    for (unsigned int i = 0; i < nfds && i < VMIG_VFU_MAX_FDS; i++) {
        raw.fds[raw.nfds++] = fds[i];
    }
    if (ret < 0 || len < sizeof(struct vmig_vfu_hdr) ||
        len > VMIG_VFU_MAX_MSG_SIZE) {
        vmig__tran_msg_release(&raw);
        return ret < 0 ? ret : -ECONNRESET;
    }
    raw.buf = malloc(len);
    if (raw.buf == NULL) {
        vmig__tran_msg_release(&raw);
        return -ENOMEM;
    }
    memcpy(raw.buf, buf, len);
    raw.len = len;
    /* The transport would have refused a lying msg_size. */
    if (vmig__rd32(raw.buf, 4) != len) {
        vmig__tran_msg_release(&raw);
        return -ECONNRESET;
    }
    vmig__vfu_loop_enter(s);
    ret = vmig__vfu_handle(s, &raw);
    vmig__vfu_loop_leave();
    vmig__tran_msg_release(&raw);
    if (ret < 0) {
        vmig__vfu_conn_close(s, "fuzz");
    }
    return ret;
}
