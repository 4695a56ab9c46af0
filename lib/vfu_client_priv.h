/* SPDX-License-Identifier: MIT */
/*
 * vfu_client_priv.h - what the vfio-user client's files share: the client
 * object and the request/reply machinery of vfu_client.c (setup, DMA,
 * regions, IRQs, the device feature call), which vfu_client_mig.c (the
 * migration state, sizing, dirty logging, the data session and the bulk
 * channel) uses.
 */
#ifndef VMIG_VFU_CLIENT_PRIV_H
#define VMIG_VFU_CLIENT_PRIV_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <vmig/proto_reply.h>
#include <vmig/vfu_client.h>
#include "tran.h"

/* Waits for a reply; SET_STATE and bulk reads may run device work. */
#define CLI_TIMEOUT_MS 30000
#define CLI_MAX_DMA 1024
#define CLI_BULK_CHUNK (256u << 10) /* frames we send */

struct cli_dma {
    uint64_t iova;
    uint64_t size;
    uint32_t prot;
    uint8_t *va; /* NULL: the server must use its own mmap */
};

struct vmig_vfu_client {
    vmig_ctx_t *ctx;
    char name[64]; /* for messages: the device's name, or the socket */
    int fd;
    pthread_mutex_t lock;
    uint16_t next_id;
    struct vmig_vfu_caps caps; /* the server's, ext = agreed */
    uint32_t xfer;             /* largest transfer the server accepts */
    struct cli_dma dma[CLI_MAX_DMA];
    unsigned int ndma;
    enum vmig_state state; /* last state the server reported */
    int bulk_fd;
    uint8_t *buf;
};

struct rsp {
    struct vmig__tran_msg raw;
    struct vmig_vfu_msg m;
};

/* A reply the specification does not allow: logged naming the device, the
 * reply, the rule and what was seen; returns @err. */
int vmig__vcli_refused(struct vmig_vfu_client *c, uint16_t cmd, int err,
                       const struct vmig_vfu_reject *why);
/* Release a reply. */
void vmig__vcli_rsp_done(struct rsp *r);
/* Send a request (its id in *@id). */
int vmig__vcli_send_req(struct vmig_vfu_client *c, uint16_t cmd, const void *p1,
                        size_t l1, const void *p2, size_t l2, const int *fds,
                        unsigned int nfds, uint16_t *id);
/* Wait for the reply to @id, serving the server's DMA meanwhile. */
int vmig__vcli_wait_reply(struct vmig_vfu_client *c, uint16_t id, uint16_t cmd,
                          struct rsp *r);
/* Request and reply, under c->lock; xact0 drops the reply. */
int vmig__vcli_xact(struct vmig_vfu_client *c, uint16_t cmd, const void *p1,
                    size_t l1, const void *p2, size_t l2, const int *fds,
                    unsigned int nfds, struct rsp *r);
int vmig__vcli_xact0(struct vmig_vfu_client *c, uint16_t cmd, const void *p1,
                     size_t l1, const void *p2, size_t l2, const int *fds,
                     unsigned int nfds);
/* DEVICE_FEATURE: @in sent, the first @olen bytes of the reply's data to
 * @out. */
int vmig__vcli_feature(struct vmig_vfu_client *c, uint32_t flags,
                       const void *in, size_t ilen, void *out, size_t olen);

#endif /* VMIG_VFU_CLIENT_PRIV_H */
