/* SPDX-License-Identifier: MIT */
/*
 * conform_vfu.h - what the files of conform's vfio-user transport share:
 * conform_vfu.c (the session: the ops the generic rules use),
 * conform_vfu_raw.c (raw connections built with the public codec),
 * conform_vfu_rules.c (the rules of the transport itself) and
 * conform_vfu_hostile.c (the hostile inputs, --hostile).  Private to them.
 *
 * Servers serve one client at a time, so a raw connection is opened only
 * while the client's is closed.
 */
#ifndef VMIG_CONFORM_VFU_H
#define VMIG_CONFORM_VFU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmig/vfu_client.h>
#include "conform.h"

#define OPEN_WAIT_MS 3000
#define REVIVE_WAIT_MS 10000
#define RAW_WAIT_MS 5000
#define MEM_IOVA (1ull << 20)
#define MEM_LEN (1ull << 20)

struct cf_vfu {
    vmig_ctx_t *ctx;
    char path[108]; /* sun_path */
    cf_revive_fn *revive;
    cf_why_fn *why;
    void *opaque;
    char gone_why[320];
    struct vmig_vfu_client *c;
    bool dead; /* the session broke (server gone?) */
    struct vmig_vfu_device_info di;
    int memfd;
    uint8_t *mem;
    int log; /* DMA logging probed: 0 offered, -errno not, 1 unknown */
};

/* conform_vfu.c: a client session (reviving the server when it is gone),
 * and closing it. */
int cf_vfu_open(void *o);
void cf_vfu_close(void *o);

/* conform_vfu_raw.c: a raw connection and its last reply. */
struct cf_raw {
    int fd;
    uint8_t buf[VMIG_VFU_MAX_MSG_SIZE];
    struct vmig_vfu_msg m; /* the last reply */
};

/* Open one (the client's is closed first: one at a time); -errno. */
int cf_raw_connect(struct cf_vfu *t, struct cf_raw *r);
void cf_raw_close(struct cf_raw *r);
/* Bytes as they are, with @sfd (>= 0) passed along; 0 or -EPIPE. */
int cf_raw_send(struct cf_raw *r, const void *p, size_t len, int sfd);
/*
 * Send a command, wait for its reply.  Return: 0 success, > 0 the
 * reply's errno, -ENOTCONN/-ETIMEDOUT when the server closed or did not
 * answer, -EPROTO for a reply the decoder refuses.
 */
int cf_raw_xact(struct cf_raw *r, uint16_t cmd, const void *p, size_t len,
                int sfd);
/* VERSION @major.@minor with @json (NULL: none). */
int cf_raw_version(struct cf_raw *r, uint16_t major, uint16_t minor,
                   const char *json);
/* DEVICE_FEATURE with @flags and @dl bytes of @data. */
int cf_raw_feature(struct cf_raw *r, uint32_t flags, const void *data,
                   size_t dl);
/* The device state over a raw connection; -errno. */
int cf_raw_state(struct cf_raw *r, uint32_t *st);

/* conform_vfu_rules.c, conform_vfu_hostile.c: the transport's rules. */
void cf_vfu_transport_rules(struct cf *cf, void *o);
void cf_vfu_hostile_rules(struct cf *cf, void *o);

#endif /* VMIG_CONFORM_VFU_H */
