/* SPDX-License-Identifier: MIT */
/*
 * vfu_client.c - the vfio-user client.
 *
 * Every call is send-request / wait-for-reply under c->lock.  While
 * waiting, commands from the server (DMA_READ/DMA_WRITE) are served at
 * once from the client's DMA table, then the wait goes on: the server may
 * need that DMA to finish our request.  Replies whose id is not the one
 * we wait for are dropped (a reply to a request we gave up on).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <vmig/proto_reply.h>
#include <vmig/vfu_client.h>
#include "internal.h"
#include "tran.h"
#include "vfu_client_priv.h"

static const struct vmig_vfu_limits vmig__vcli_lim = {VMIG_VFU_MAX_DATA_XFER,
                                                      VMIG_VFU_MAX_FDS};

/*
 * A reply the specification does not allow: one message naming the
 * device, the reply, the rule and what was seen, and what to do.
 */
int
vmig__vcli_refused(struct vmig_vfu_client *c, uint16_t cmd, int err,
                   const struct vmig_vfu_reject *why)
{
    vmig_err(c->ctx,
             "%s: %s reply refused: %s; the vfio-user specification says "
             "\"%s\". The device server does not follow the protocol: "
             "update it or report this to its authors",
             c->name, vmig_vfu_cmd_name(cmd), why->seen, why->rule);
    return err;
}

/* ------------------------------------------------ server-to-client DMA */

static struct cli_dma *
cli_dma_find(struct vmig_vfu_client *c, uint64_t addr, uint64_t count,
             uint32_t prot)
{
    for (unsigned int i = 0; i < c->ndma; i++) {
        struct cli_dma *d = &c->dma[i];

        if (d->va != NULL && addr >= d->iova && addr - d->iova < d->size &&
            count <= d->size - (addr - d->iova) && (d->prot & prot)) {
            return d;
        }
    }
    return NULL;
}

/* Serve one DMA_READ/DMA_WRITE from the server. */
static int
serve(struct vmig_vfu_client *c, const struct vmig_vfu_msg *m)
{
    struct vmig_vfu_hdr h = {
        .id = m->hdr.id, .cmd = m->hdr.cmd, .flags = VMIG_VFU_F_TYPE_REPLY};
    struct vmig_vfu_dma_rw d;
    struct cli_dma *e;
    bool rd = m->hdr.cmd == VMIG_VFU_CMD_DMA_READ;

    if (m->hdr.cmd != VMIG_VFU_CMD_DMA_READ &&
        m->hdr.cmd != VMIG_VFU_CMD_DMA_WRITE) {
        h.flags |= VMIG_VFU_F_ERROR;
        h.error = EINVAL;
        return vmig__tran_send(c->fd, CLI_TIMEOUT_MS, &h, NULL, 0, NULL, 0,
                               NULL, 0);
    }
    memcpy(&d, m->payload, sizeof(d));
    e = cli_dma_find(c, d.addr, d.count,
                     rd ? VMIG_VFU_DMA_READ : VMIG_VFU_DMA_WRITE);
    if (e == NULL) {
        vmig_dbg(c->ctx, "vfu-client: server %s %#llx+%llu outside maps",
                 vmig_vfu_cmd_name(m->hdr.cmd), (unsigned long long)d.addr,
                 (unsigned long long)d.count);
        h.flags |= VMIG_VFU_F_ERROR;
        h.error = EFAULT;
        return vmig__tran_send(c->fd, CLI_TIMEOUT_MS, &h, NULL, 0, NULL, 0,
                               NULL, 0);
    }
    if (rd) {
        return vmig__tran_send(c->fd, CLI_TIMEOUT_MS, &h, &d, sizeof(d),
                               e->va + (d.addr - e->iova), d.count, NULL, 0);
    }
    memcpy(e->va + (d.addr - e->iova), m->payload + sizeof(d), d.count);
    return vmig__tran_send(c->fd, CLI_TIMEOUT_MS, &h, &d, sizeof(d), NULL, 0,
                           NULL, 0);
}

/*
 * Receive until the reply to @id arrives, serving server commands on the
 * way.  On success @r holds the reply (release it with vmig__vcli_rsp_done()).
 */
int
vmig__vcli_wait_reply(struct vmig_vfu_client *c, uint16_t id, uint16_t cmd,
                      struct rsp *r)
{
    for (;;) {
        enum vmig_vfu_perr why;
        int ret;

        ret = vmig__tran_recv(c->fd, CLI_TIMEOUT_MS, VMIG_VFU_MAX_MSG_SIZE,
                              &r->raw);
        if (ret < 0) {
            vmig_err(c->ctx, "%s: no reply to %s: %s%s", c->name,
                     vmig_vfu_cmd_name(cmd), strerror(-ret),
                     ret == -ETIMEDOUT ? " (the device server did not answer "
                                         "within 30 s)"
                     : ret == -ENOTCONN || ret == -ECONNRESET
                         ? " (the device server closed the connection: it "
                           "exited or dropped us; see its own log)"
                         : "");
            return ret;
        }
        ret = vmig_vfu_decode(r->raw.buf, r->raw.len, r->raw.nfds,
                              &vmig__vcli_lim, &r->m, &why);
        if (ret < 0) {
            struct vmig_vfu_hdr h;

            memcpy(&h, r->raw.buf, sizeof(h));
            vmig_err(c->ctx,
                     "%s: malformed %s %s from the device server: %s "
                     "(%u bytes, %u fds; the layout the vfio-user "
                     "specification gives: %s). The device server does "
                     "not follow the protocol: update it or report this "
                     "to its authors",
                     c->name, vmig_vfu_cmd_name(h.cmd),
                     (h.flags & VMIG_VFU_F_TYPE_MASK) == VMIG_VFU_F_TYPE_REPLY
                         ? "reply"
                         : "request",
                     vmig_vfu_perr_name(why), h.size, r->raw.nfds,
                     vmig_vfu_reply_layout(h.cmd));
            vmig__tran_msg_release(&r->raw);
            return -EPROTO;
        }
        if ((r->m.hdr.flags & VMIG_VFU_F_TYPE_MASK) ==
            VMIG_VFU_F_TYPE_COMMAND) {
            ret = serve(c, &r->m);
            vmig__tran_msg_release(&r->raw);
            if (ret < 0) {
                return ret;
            }
            continue;
        }
        if (r->m.hdr.id != id || r->m.hdr.cmd != cmd) {
            vmig_dbg(c->ctx, "vfu-client: stray reply %#x dropped",
                     r->m.hdr.id);
            vmig__tran_msg_release(&r->raw);
            continue;
        }
        if (r->m.hdr.flags & VMIG_VFU_F_ERROR) {
            ret = r->m.hdr.error != 0 && r->m.hdr.error < 4096
                      ? -(int)r->m.hdr.error
                      : -EIO;
            vmig__tran_msg_release(&r->raw);
            return ret;
        }
        return 0;
    }
}

void
vmig__vcli_rsp_done(struct rsp *r)
{
    vmig__tran_msg_release(&r->raw);
}

int
vmig__vcli_send_req(struct vmig_vfu_client *c, uint16_t cmd, const void *p1,
                    size_t l1, const void *p2, size_t l2, const int *fds,
                    unsigned int nfds, uint16_t *id)
{
    struct vmig_vfu_hdr h = {.cmd = cmd, .flags = VMIG_VFU_F_TYPE_COMMAND};

    h.id = ++c->next_id;
    *id = h.id;
    return vmig__tran_send(c->fd, CLI_TIMEOUT_MS, &h, p1, l1, p2, l2, fds,
                           nfds);
}

/* One request/reply; the caller holds c->lock. */
static int
xact_locked(struct vmig_vfu_client *c, uint16_t cmd, const void *p1, size_t l1,
            const void *p2, size_t l2, const int *fds, unsigned int nfds,
            struct rsp *r)
{
    uint16_t id;
    int ret;

    ret = vmig__vcli_send_req(c, cmd, p1, l1, p2, l2, fds, nfds, &id);
    if (ret < 0) {
        return ret;
    }
    return vmig__vcli_wait_reply(c, id, cmd, r);
}

int
vmig__vcli_xact(struct vmig_vfu_client *c, uint16_t cmd, const void *p1,
                size_t l1, const void *p2, size_t l2, const int *fds,
                unsigned int nfds, struct rsp *r)
{
    int ret;

    pthread_mutex_lock(&c->lock);
    ret = xact_locked(c, cmd, p1, l1, p2, l2, fds, nfds, r);
    pthread_mutex_unlock(&c->lock);
    return ret;
}

/* A request whose reply payload is not needed. */
int
vmig__vcli_xact0(struct vmig_vfu_client *c, uint16_t cmd, const void *p1,
                 size_t l1, const void *p2, size_t l2, const int *fds,
                 unsigned int nfds)
{
    struct rsp r;
    int ret = vmig__vcli_xact(c, cmd, p1, l1, p2, l2, fds, nfds, &r);

    if (ret == 0) {
        vmig__vcli_rsp_done(&r);
    }
    return ret;
}

/* ---------------------------------------------------------- setup */

static int
negotiate(struct vmig_vfu_client *c, uint32_t ext)
{
    const struct vmig_vfu_version asked = {VMIG_VFU_MAJOR, VMIG_VFU_MINOR};
    struct vmig_vfu_version v = asked;
    struct vmig_vfu_reject why;
    struct vmig_vfu_caps mine;
    char json[512];
    struct rsp r;
    int n, ret;

    vmig_vfu_caps_default(&mine);
    mine.max_msg_fds = VMIG_VFU_MAX_FDS;
    mine.ext = ext & VMIG_VFU_EXT__ALL;
    n = vmig_vfu_caps_format(&mine, json, sizeof(json));
    if (n < 0) {
        return n;
    }
    ret = vmig__vcli_xact(c, VMIG_VFU_CMD_VERSION, &v, sizeof(v), json,
                          (size_t)n + 1, NULL, 0, &r);
    if (ret < 0) {
        vmig_err(c->ctx,
                 "%s: VERSION %u.%u refused: %s; the device server speaks "
                 "another vfio-user version or is not a vfio-user server",
                 c->name, VMIG_VFU_MAJOR, VMIG_VFU_MINOR, strerror(-ret));
        return ret;
    }
    ret = vmig_vfu_reply_version(&r.m, &asked, &v, &c->caps, &why);
    vmig__vcli_rsp_done(&r);
    if (ret < 0) {
        return vmig__vcli_refused(c, VMIG_VFU_CMD_VERSION, ret, &why);
    }
    c->caps.ext &= mine.ext;
    c->xfer = c->caps.max_data_xfer_size < VMIG_VFU_MAX_DATA_XFER
                  ? c->caps.max_data_xfer_size
                  : VMIG_VFU_MAX_DATA_XFER;
    return 0;
}

int
vmig_vfu_client_adopt(vmig_ctx_t *ctx, int fd, uint32_t ext,
                      struct vmig_vfu_client **out)
{
    struct vmig_vfu_client *c;
    int ret;

    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return -ENOMEM;
    }
    c->buf = malloc(VMIG_VFU_MAX_DATA_XFER);
    if (c->buf == NULL) {
        free(c);
        close(fd);
        return -ENOMEM;
    }
    c->ctx = ctx;
    c->fd = fd;
    snprintf(c->name, sizeof(c->name), "vfio-user fd %d", fd);
    c->bulk_fd = -1;
    c->state = VMIG_STATE_RUNNING;
    pthread_mutex_init(&c->lock, NULL);
    ret = negotiate(c, ext);
    if (ret < 0) {
        vmig_vfu_client_free(c);
        return ret;
    }
    *out = c;
    return 0;
}

int
vmig_vfu_client_connect(vmig_ctx_t *ctx, const char *path, uint32_t ext,
                        struct vmig_vfu_client **out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd, ret;

    if (path == NULL || strlen(path) >= sizeof(sa.sun_path)) {
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        ret = -errno;
        vmig_dbg(ctx, "vfu-client: connect %s: %s", path, strerror(-ret));
        close(fd);
        return ret;
    }
    ret = vmig_vfu_client_adopt(ctx, fd, ext, out);
    if (ret == 0) {
        vmig_vfu_client_set_name(*out, path);
    }
    return ret;
}

void
vmig_vfu_client_set_name(struct vmig_vfu_client *c, const char *name)
{
    pthread_mutex_lock(&c->lock);
    snprintf(c->name, sizeof(c->name), "%s", name != NULL ? name : "?");
    pthread_mutex_unlock(&c->lock);
}

void
vmig_vfu_client_free(struct vmig_vfu_client *c)
{
    if (c == NULL) {
        return;
    }
    close(c->fd);
    if (c->bulk_fd >= 0) {
        close(c->bulk_fd);
    }
    pthread_mutex_destroy(&c->lock);
    free(c->buf);
    free(c);
}

void
vmig_vfu_client_caps(struct vmig_vfu_client *c, struct vmig_vfu_caps *out)
{
    *out = c->caps;
}

int
vmig_vfu_client_fd(struct vmig_vfu_client *c)
{
    return c->fd;
}

int
vmig_vfu_client_service(struct vmig_vfu_client *c, int timeout_ms)
{
    int served = 0;

    pthread_mutex_lock(&c->lock);
    for (;;) {
        struct rsp r;
        int ret = vmig__tran_wait_in(c->fd, served == 0 ? timeout_ms : 0);

        if (ret == -ETIMEDOUT) {
            break;
        }
        if (ret == 0) {
            ret = vmig__tran_recv(c->fd, CLI_TIMEOUT_MS, VMIG_VFU_MAX_MSG_SIZE,
                                  &r.raw);
        }
        if (ret == 0) {
            ret = vmig_vfu_decode(r.raw.buf, r.raw.len, r.raw.nfds,
                                  &vmig__vcli_lim, &r.m, NULL);
            if (ret == 0 && (r.m.hdr.flags & VMIG_VFU_F_TYPE_MASK) ==
                                VMIG_VFU_F_TYPE_COMMAND) {
                ret = serve(c, &r.m);
            }
            vmig__tran_msg_release(&r.raw);
        }
        if (ret < 0) {
            pthread_mutex_unlock(&c->lock);
            return ret;
        }
        served++;
    }
    pthread_mutex_unlock(&c->lock);
    return served;
}

/* ---------------------------------------------------------- device */

int
vmig_vfu_client_device_info(struct vmig_vfu_client *c,
                            struct vmig_vfu_device_info *out)
{
    struct vmig_vfu_device_info di = {.argsz = sizeof(di)};
    struct vmig_vfu_reject why;
    struct rsp r;
    int ret;

    ret = vmig__vcli_xact(c, VMIG_VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di),
                          NULL, 0, NULL, 0, &r);
    if (ret < 0) {
        return ret;
    }
    ret = vmig_vfu_reply_device_info(&r.m, out, &why);
    vmig__vcli_rsp_done(&r);
    return ret < 0
               ? vmig__vcli_refused(c, VMIG_VFU_CMD_DEVICE_GET_INFO, ret, &why)
               : 0;
}

int
vmig_vfu_client_region_info(struct vmig_vfu_client *c, unsigned int index,
                            struct vmig_vfu_region_info *out, int *fd_out)
{
    struct vmig_vfu_region_info ri = {.argsz = sizeof(ri), .index = index};
    struct vmig_vfu_reject why;
    struct rsp r;
    int ret;

    if (fd_out != NULL) {
        *fd_out = -1;
    }
    ret = vmig__vcli_xact(c, VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, &ri,
                          sizeof(ri), NULL, 0, NULL, 0, &r);
    if (ret < 0) {
        return ret;
    }
    ret = vmig_vfu_reply_region_info(&r.m, index, out, &why);
    if (ret == 0 && r.raw.nfds > 0 && fd_out != NULL) {
        *fd_out = r.raw.fds[0];
        r.raw.fds[0] = -1;
    }
    vmig__vcli_rsp_done(&r);
    return ret < 0 ? vmig__vcli_refused(c, VMIG_VFU_CMD_DEVICE_GET_REGION_INFO,
                                        ret, &why)
                   : 0;
}

int
vmig_vfu_client_region_sparse(struct vmig_vfu_client *c, unsigned int index,
                              struct vmig_vfu_sparse_area *areas,
                              unsigned int max)
{
    struct vmig_vfu_region_info ri = {.argsz = sizeof(ri), .index = index};
    struct rsp r;
    int ret;

    for (int attempt = 0; attempt < 2; attempt++) {
        struct vmig_vfu_region_info got;
        struct vmig_vfu_reject why;
        uint32_t need;

        ret = vmig__vcli_xact(c, VMIG_VFU_CMD_DEVICE_GET_REGION_INFO, &ri,
                              sizeof(ri), NULL, 0, NULL, 0, &r);
        if (ret < 0) {
            return ret;
        }
        ret = vmig_vfu_reply_region_info(&r.m, index, &got, &why);
        if (ret < 0) {
            vmig__vcli_rsp_done(&r);
            return vmig__vcli_refused(c, VMIG_VFU_CMD_DEVICE_GET_REGION_INFO,
                                      ret, &why);
        }
        need = got.argsz;
        if (need <= r.m.len) {
            ret = vmig_vfu_region_sparse(r.m.payload, r.m.len, areas, max);
            vmig__vcli_rsp_done(&r);
            return ret;
        }
        vmig__vcli_rsp_done(&r);
        if (attempt == 1) {
            why.rule = "Message sizes: argsz in a reply is the size needed "
                       "for a full payload";
            snprintf(why.seen, sizeof(why.seen),
                     "argsz %u again after asking with room for it", need);
            return vmig__vcli_refused(c, VMIG_VFU_CMD_DEVICE_GET_REGION_INFO,
                                      -EPROTO, &why);
        }
        if (need > 65536) {
            return -E2BIG;
        }
        ri.argsz = need;
    }
    return -EPROTO;
}

int
vmig_vfu_client_irq_info(struct vmig_vfu_client *c, unsigned int index,
                         struct vmig_vfu_irq_info *out)
{
    struct vmig_vfu_irq_info ii = {.argsz = sizeof(ii), .index = index};
    struct vmig_vfu_reject why;
    struct rsp r;
    int ret;

    ret = vmig__vcli_xact(c, VMIG_VFU_CMD_DEVICE_GET_IRQ_INFO, &ii, sizeof(ii),
                          NULL, 0, NULL, 0, &r);
    if (ret < 0) {
        return ret;
    }
    ret = vmig_vfu_reply_irq_info(&r.m, index, out, &why);
    vmig__vcli_rsp_done(&r);
    return ret < 0 ? vmig__vcli_refused(c, VMIG_VFU_CMD_DEVICE_GET_IRQ_INFO,
                                        ret, &why)
                   : 0;
}

int
vmig_vfu_client_set_irqs(struct vmig_vfu_client *c, unsigned int index,
                         unsigned int start, unsigned int count,
                         const int *efds)
{
    struct vmig_vfu_irq_set is = {
        .argsz = sizeof(is),
        .flags = VMIG_VFU_IRQ_DATA_EVENTFD | VMIG_VFU_IRQ_ACTION_TRIGGER,
        .index = index,
        .start = start,
        .count = count,
    };

    if (efds != NULL && count > VMIG_VFU_MAX_FDS) {
        return -E2BIG;
    }
    return vmig__vcli_xact0(c, VMIG_VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is),
                            NULL, 0, efds, efds != NULL ? count : 0);
}

int
vmig_vfu_client_region_read(struct vmig_vfu_client *c, unsigned int region,
                            uint64_t offset, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len > 0) {
        uint32_t n = len < c->xfer ? (uint32_t)len : c->xfer;
        struct vmig_vfu_region_rw rw = {offset, region, n};
        struct vmig_vfu_reject why;
        const uint8_t *data;
        struct rsp r;
        int ret;

        ret = vmig__vcli_xact(c, VMIG_VFU_CMD_REGION_READ, &rw, sizeof(rw),
                              NULL, 0, NULL, 0, &r);
        if (ret < 0) {
            return ret;
        }
        ret = vmig_vfu_reply_region_read(&r.m, &rw, &data, &why);
        if (ret < 0) {
            vmig__vcli_rsp_done(&r);
            return vmig__vcli_refused(c, VMIG_VFU_CMD_REGION_READ, ret, &why);
        }
        memcpy(p, data, n);
        vmig__vcli_rsp_done(&r);
        p += n;
        offset += n;
        len -= n;
    }
    return 0;
}

int
vmig_vfu_client_region_write(struct vmig_vfu_client *c, unsigned int region,
                             uint64_t offset, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        uint32_t n = len < c->xfer ? (uint32_t)len : c->xfer;
        struct vmig_vfu_region_rw rw = {offset, region, n};
        struct vmig_vfu_reject why;
        struct rsp r;
        int ret;

        ret = vmig__vcli_xact(c, VMIG_VFU_CMD_REGION_WRITE, &rw, sizeof(rw), p,
                              n, NULL, 0, &r);
        if (ret < 0) {
            return ret;
        }
        ret = vmig_vfu_reply_region_write(&r.m, &rw, &why);
        vmig__vcli_rsp_done(&r);
        if (ret < 0) {
            return vmig__vcli_refused(c, VMIG_VFU_CMD_REGION_WRITE, ret, &why);
        }
        p += n;
        offset += n;
        len -= n;
    }
    return 0;
}

int
vmig_vfu_client_dma_map(struct vmig_vfu_client *c, uint64_t iova, uint64_t size,
                        uint32_t prot, int fd, uint64_t fd_off, void *vaddr)
{
    struct vmig_vfu_dma_map d = {sizeof(d), prot, fd >= 0 ? fd_off : 0, iova,
                                 size};
    int ret;

    if (fd < 0 && vaddr == NULL) {
        return -EINVAL;
    }
    pthread_mutex_lock(&c->lock);
    if (c->ndma >= CLI_MAX_DMA) {
        pthread_mutex_unlock(&c->lock);
        return -ENOSPC;
    }
    {
        struct rsp r;

        ret = xact_locked(c, VMIG_VFU_CMD_DMA_MAP, &d, sizeof(d), NULL, 0,
                          fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0, &r);
        if (ret == 0) {
            vmig__vcli_rsp_done(&r);
            c->dma[c->ndma++] = (struct cli_dma){iova, size, prot, vaddr};
        }
    }
    pthread_mutex_unlock(&c->lock);
    return ret;
}

int
vmig_vfu_client_dma_unmap(struct vmig_vfu_client *c, uint64_t iova,
                          uint64_t size)
{
    struct vmig_vfu_dma_unmap d = {sizeof(d), 0, iova, size};
    struct rsp r;
    int ret;

    pthread_mutex_lock(&c->lock);
    ret = xact_locked(c, VMIG_VFU_CMD_DMA_UNMAP, &d, sizeof(d), NULL, 0, NULL,
                      0, &r);
    if (ret == 0) {
        vmig__vcli_rsp_done(&r);
        for (unsigned int i = 0; i < c->ndma; i++) {
            if (c->dma[i].iova == iova && c->dma[i].size == size) {
                c->dma[i] = c->dma[--c->ndma];
                break;
            }
        }
    }
    pthread_mutex_unlock(&c->lock);
    return ret;
}

int
vmig_vfu_client_reset(struct vmig_vfu_client *c)
{
    int ret = vmig__vcli_xact0(c, VMIG_VFU_CMD_DEVICE_RESET, NULL, 0, NULL, 0,
                               NULL, 0);
    enum vmig_state now;

    if (ret == 0) {
        c->state = VMIG_STATE_RUNNING;
        return 0;
    }
    /* Some servers refuse a reset in some states (a reset is how the
     * spec leaves ERROR, so no state should refuse it): say where the
     * device is and what it means. */
    if (ret != -ENOTCONN && ret != -ECONNRESET && ret != -ETIMEDOUT &&
        vmig_vfu_client_get_state(c, &now) == 0) {
        vmig_err(c->ctx,
                 "%s: DEVICE_RESET refused in %s: %s; the device stays in "
                 "%s. The vfio-user specification uses DEVICE_RESET to "
                 "return a device to RUNNING from any state: fix the device "
                 "server, or move the device to RUNNING first",
                 c->name, vmig_state_name(now), strerror(-ret),
                 vmig_state_name(now));
    } else {
        vmig_err(c->ctx, "%s: DEVICE_RESET failed: %s", c->name,
                 strerror(-ret));
    }
    return ret;
}

/* ---------------------------------------------------------- features */

/*
 * DEVICE_FEATURE: @in is the feature data sent, @out (if any) receives
 * the first @olen bytes of the reply's data.  argsz is the largest reply
 * payload expected: the request's for SET (echoed), the data's for GET.
 */
int
vmig__vcli_feature(struct vmig_vfu_client *c, uint32_t flags, const void *in,
                   size_t ilen, void *out, size_t olen)
{
    struct vmig_vfu_feature f = {
        (uint32_t)(sizeof(f) + (ilen > olen ? ilen : olen)), flags};
    struct vmig_vfu_reject why;
    const uint8_t *data;
    struct rsp r;
    long got;
    int ret;

    ret = vmig__vcli_xact(c, VMIG_VFU_CMD_DEVICE_FEATURE, &f, sizeof(f), in,
                          ilen, NULL, 0, &r);
    if (ret < 0) {
        return ret;
    }
    got = vmig_vfu_reply_feature(&r.m, flags, out != NULL ? olen : 0, &data,
                                 &why);
    if (got >= 0 && out != NULL) {
        memcpy(out, data, olen);
    }
    vmig__vcli_rsp_done(&r);
    return got < 0 ? vmig__vcli_refused(c, VMIG_VFU_CMD_DEVICE_FEATURE,
                                        (int)got, &why)
                   : 0;
}

int
vmig_vfu_client_mig_flags(struct vmig_vfu_client *c, uint64_t *flags)
{
    return vmig__vcli_feature(c, VMIG_VFU_FEAT_MIGRATION | VMIG_VFU_FEATURE_GET,
                              NULL, 0, flags, sizeof(*flags));
}

int
vmig_vfu_client_get_state(struct vmig_vfu_client *c, enum vmig_state *out)
{
    struct vmig_vfu_feat_mig_state st;
    int ret;

    ret = vmig__vcli_feature(
        c, VMIG_VFU_FEAT_MIG_DEVICE_STATE | VMIG_VFU_FEATURE_GET, NULL, 0, &st,
        sizeof(st));
    if (ret < 0) {
        return ret;
    }
    if (st.device_state >= VMIG_STATE__COUNT) {
        return -EPROTO;
    }
    c->state = (enum vmig_state)st.device_state;
    *out = c->state;
    return 0;
}
