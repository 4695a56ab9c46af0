/* SPDX-License-Identifier: MIT */
/*
 * vfu_priv.h - the vfio-user server's fuzzing entry point (lib/vfu_fuzz.c),
 * for the fuzz harness (never installed).
 */
#ifndef VMIG_VFU_PRIV_H
#define VMIG_VFU_PRIV_H

#include <stddef.h>
#include <vmig/vfu_server.h>

/*
 * vmig__vfu_server_feed() - Handle @buf as if it had arrived on the
 * connection with @fds (ownership of every fd passes to the server).
 * Replies are discarded and server-to-client DMA fails with -ENOTCONN.
 * Return: 0, or -ECONNRESET when a real server would have disconnected.
 */
int vmig__vfu_server_feed(struct vmig_vfu_server *s, const void *buf,
                          size_t len, const int *fds, unsigned int nfds);

#endif /* VMIG_VFU_PRIV_H */
