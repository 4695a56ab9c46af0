/* SPDX-License-Identifier: MIT */
/*
 * flowtab_server.h - the flowtab device (flowtab_model.h) served over
 * vfio-user by the libvmig server framework (<vmig/vfu_server.h>).
 *
 * Regions:
 *   0  BAR0, 64 bytes of 32-bit registers (flowtab_regs.h)
 *   2  inbound P2P window, 4 KiB: a peer writes one struct ft_p2p_rec
 *      at offset 0 (reads return zeroes)
 *   3  digest, 16 bytes, read-only: XXH3-128 of the whole device state
 *      (u64 high, u64 low), for tests and diagnostics
 * IRQ index 0, one vector: raised after a batch of descriptors completed.
 *
 * P2P: a server listening at PATH also listens at PATH.p2p, its P2P
 * port: a second vfio-user server exposing only region 2, for peer
 * devices (a vfio-user server takes one client at a time, and the main
 * socket belongs to the VMM).  With @peer set, forwarded records are
 * queued (posted writes) and a sender thread writes each into the peer's
 * P2P port with REGION_WRITE over its own client connection.  Arcs to a
 * state that may not initiate P2P wait until the queue is empty.
 *
 * Guest memory is reached through zero-copy windows of the framework
 * (vmig_vfu_dma_get()/_put()), so it must be mapped with a file
 * descriptor; every window the device wrote is dirty-logged by the
 * framework's DMA logging.  Migration data is the flowtab stream carried
 * in the device-state envelope with a compatibility descriptor
 * (flowtab_env.h); see docs/flowtab.md, "vfio-user server".
 */
#ifndef FLOWTAB_SERVER_H
#define FLOWTAB_SERVER_H

#include <stdint.h>
#include <sys/types.h>
#include <vmig/log.h>
#include "flowtab_model.h"

#define FT_SRV_REGION_BAR0 0u
#define FT_SRV_REGION_P2P 2u
#define FT_SRV_REGION_DIGEST 3u
#define FT_SRV_P2P_REGION_SIZE 4096u
#define FT_SRV_DIGEST_SIZE 16u

/**
 * struct ft_server_cfg - what to serve.
 * @model: device parameters (no_thread is forced: the server's loop
 *         thread runs the device between messages).
 * @peer:  the P2P port (PATH.p2p) of the peer flowtab server that FWD
 *         descriptors are forwarded to, or NULL for none.
 */
struct ft_server_cfg {
    struct ft_config model;
    const char *peer;
};

/**
 * ft_server_serve() - Serve a flowtab device in this process: at @path,
 * or on the connected socket @fd when @path is NULL, until SIGTERM (or,
 * for @fd, until the client leaves).
 * @path:  socket path, or NULL.
 * @fd:    connected socket when @path is NULL.
 * @cfg:   parameters.
 * @log:   log sink (NULL: silent).
 * @level: log level.
 *
 * Return: 0; 1 on a setup failure; 2 when the server loop failed.
 */
int ft_server_serve(const char *path, int fd, const struct ft_server_cfg *cfg,
                    vmig_log_fn *log, int level);

/**
 * ft_server_spawn() - Fork a child serving a flowtab device at @path.
 * @path: socket path (a stale one is removed first).
 * @cfg:  parameters.
 *
 * Return: the child's pid once the socket exists, or -errno.
 */
pid_t ft_server_spawn(const char *path, const struct ft_server_cfg *cfg);

/**
 * ft_server_stop() - SIGTERM the child and reap it.
 * @pid: from ft_server_spawn().
 *
 * Return: its exit status, or -1.
 */
int ft_server_stop(pid_t pid);

#endif /* FLOWTAB_SERVER_H */
