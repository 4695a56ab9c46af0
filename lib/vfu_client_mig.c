/* SPDX-License-Identifier: MIT */
/*
 * vfu_client_mig.c - the vfio-user client's migration calls: device state
 * (SET walks the server's FSM; a failed SET asks where it ended), sizing
 * (MIG_DATA_SIZE, the precopy-info extension), DMA dirty logging, and the
 * data session: MIG_DATA_READ/WRITE or the bulk channel, pulls bounded by
 * the caller.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "internal.h"
#include "vfu_client_priv.h"

int
vmig_vfu_client_set_state(struct vmig_vfu_client *c, enum vmig_state target)
{
    struct vmig_vfu_feat_mig_state st = {(uint32_t)target, UINT32_MAX};
    enum vmig_state now;
    int ret;

    /* the reply echoes the request; nothing in it is needed */
    ret = vmig__vcli_feature(
        c, VMIG_VFU_FEAT_MIG_DEVICE_STATE | VMIG_VFU_FEATURE_SET, &st,
        sizeof(st), NULL, 0);
    if (ret == 0) {
        c->state = target;
        return 0;
    }
    /* "A failed SET leaves the device anywhere along the path": ask. */
    if (vmig_vfu_client_get_state(c, &now) == 0) {
        vmig_dbg(c->ctx, "vfu-client: SET %s failed (%s); device in %s",
                 vmig_state_name(target), strerror(-ret), vmig_state_name(now));
    }
    return ret;
}

int
vmig_vfu_client_data_size(struct vmig_vfu_client *c, uint64_t *bytes)
{
    /* a kernel feature the vfio-user spec does not list: only asked of
     * servers that negotiated vmig's extensions */
    if (c->caps.ext == 0) {
        return -EOPNOTSUPP;
    }
    return vmig__vcli_feature(
        c, VMIG_VFU_FEAT_MIG_DATA_SIZE | VMIG_VFU_FEATURE_GET, NULL, 0, bytes,
        sizeof(*bytes));
}

int
vmig_vfu_client_precopy_info(struct vmig_vfu_client *c, uint64_t *initial,
                             uint64_t *dirty)
{
    struct vmig_vfu_feat_precopy p;
    int ret;

    if (!(c->caps.ext & VMIG_VFU_EXT_PRECOPY_INFO)) {
        return -EOPNOTSUPP;
    }
    ret = vmig__vcli_feature(
        c, VMIG_VFU_FEAT_X_PRECOPY_INFO | VMIG_VFU_FEATURE_GET, NULL, 0, &p,
        sizeof(p));
    if (ret == 0) {
        *initial = p.initial_bytes;
        *dirty = p.dirty_bytes;
    }
    return ret;
}

int
vmig_vfu_client_probe(struct vmig_vfu_client *c, uint32_t index, uint32_t ops)
{
    if ((index & ~VMIG_VFU_FEATURE_MASK) ||
        (ops & ~(VMIG_VFU_FEATURE_GET | VMIG_VFU_FEATURE_SET))) {
        return -EINVAL;
    }
    return vmig__vcli_feature(c, index | ops | VMIG_VFU_FEATURE_PROBE, NULL, 0,
                              NULL, 0);
}

int
vmig_vfu_client_log_start(struct vmig_vfu_client *c, uint64_t page_size,
                          const struct vmig_vfu_log_range *ranges,
                          unsigned int n)
{
    struct vmig_vfu_feat_log_ctl lc = {page_size, n, 0};
    uint8_t *b;
    int ret;

    if (n == 0 || n > VMIG_VFU_MAX_LOG_RANGES || ranges == NULL) {
        return -EINVAL;
    }
    b = malloc(sizeof(lc) + sizeof(*ranges) * n);
    if (b == NULL) {
        return -ENOMEM;
    }
    memcpy(b, &lc, sizeof(lc));
    memcpy(b + sizeof(lc), ranges, sizeof(*ranges) * n);
    ret = vmig__vcli_feature(
        c, VMIG_VFU_FEAT_DMA_LOGGING_START | VMIG_VFU_FEATURE_SET, b,
        sizeof(lc) + sizeof(*ranges) * n, NULL, 0);
    free(b);
    return ret;
}

int
vmig_vfu_client_log_stop(struct vmig_vfu_client *c)
{
    return vmig__vcli_feature(
        c, VMIG_VFU_FEAT_DMA_LOGGING_STOP | VMIG_VFU_FEATURE_SET, NULL, 0, NULL,
        0);
}

int
vmig_vfu_client_log_report(struct vmig_vfu_client *c, uint64_t iova,
                           uint64_t length, uint64_t page_size,
                           uint64_t *bitmap)
{
    struct vmig_vfu_feat_log_report lr = {iova, length, page_size};
    struct vmig_vfu_reject why;
    struct vmig_vfu_feature f;
    const uint8_t *bm;
    uint64_t pages, bytes;
    struct rsp r;
    int ret;

    if (page_size == 0 || length == 0) {
        return -EINVAL;
    }
    pages = length / page_size + (length % page_size != 0);
    bytes = (pages + 63) / 64 * 8;
    if (bytes > c->xfer) {
        return -E2BIG;
    }
    f.argsz = (uint32_t)(sizeof(f) + sizeof(lr) + bytes);
    f.flags = VMIG_VFU_FEAT_DMA_LOGGING_REPORT | VMIG_VFU_FEATURE_GET;
    ret = vmig__vcli_xact(c, VMIG_VFU_CMD_DEVICE_FEATURE, &f, sizeof(f), &lr,
                          sizeof(lr), NULL, 0, &r);
    if (ret < 0) {
        return ret;
    }
    ret = vmig_vfu_reply_log_report(&r.m, &lr, &bm, &why);
    if (ret == 0) {
        memcpy(bitmap, bm, (size_t)bytes);
    }
    vmig__vcli_rsp_done(&r);
    return ret < 0
               ? vmig__vcli_refused(c, VMIG_VFU_CMD_DEVICE_FEATURE, ret, &why)
               : 0;
}

/* ---------------------------------------------------------- data */

/*
 * One MIG_DATA_READ; the data goes to @buf, or to @sink straight from the
 * reply buffer when @buf is NULL.
 */
static long
mig_read1(struct vmig_vfu_client *c, void *buf, size_t len,
          vmig_vfu_sink_fn *sink, void *opaque)
{
    struct vmig_vfu_mig_data md = {sizeof(md), 0};
    struct vmig_vfu_reject why;
    const uint8_t *data;
    struct rsp r;
    uint32_t got;
    int ret;

    md.size = len < c->xfer ? (uint32_t)len : c->xfer;
    md.argsz = (uint32_t)(sizeof(md) + md.size);
    ret = vmig__vcli_xact(c, VMIG_VFU_CMD_MIG_DATA_READ, &md, sizeof(md), NULL,
                          0, NULL, 0, &r);
    if (ret < 0) {
        return ret;
    }
    ret = vmig_vfu_reply_mig_read(&r.m, md.size, &got, &data, &why);
    if (ret < 0) {
        vmig__vcli_rsp_done(&r);
        return vmig__vcli_refused(c, VMIG_VFU_CMD_MIG_DATA_READ, ret, &why);
    }
    if (buf != NULL) {
        memcpy(buf, data, got);
    } else if (got > 0) {
        ret = sink(opaque, data, got);
    }
    vmig__vcli_rsp_done(&r);
    if (ret < 0) {
        return ret;
    }
    if (got > 0) {
        return got;
    }
    /* An empty reply: permanent end in STOP_COPY, "for now" in PRE_COPY. */
    return c->state == VMIG_STATE_STOP_COPY ? 0 : -ENOMSG;
}

long
vmig_vfu_client_mig_read(struct vmig_vfu_client *c, void *buf, size_t len)
{
    if (buf == NULL && len > 0) {
        return -EINVAL;
    }
    return mig_read1(c, buf, len, NULL, NULL);
}

static int bulk_open(struct vmig_vfu_client *c);

/* Resuming data over the bulk channel: frames, terminator, then reply. */
static int
write_bulk(struct vmig_vfu_client *c, const uint8_t *p, size_t len)
{
    struct vmig_vfu_feature f = {sizeof(f), VMIG_VFU_FEAT_X_BULK_WRITE |
                                                VMIG_VFU_FEATURE_SET};
    struct vmig_vfu_bulk_frame fr = {0, 0};
    struct rsp r;
    uint16_t id;
    int ret;

    pthread_mutex_lock(&c->lock);
    ret = vmig__vcli_send_req(c, VMIG_VFU_CMD_DEVICE_FEATURE, &f, sizeof(f),
                              NULL, 0, NULL, 0, &id);
    while (ret == 0 && len > 0) {
        struct iovec iov[2];

        fr.len = len < CLI_BULK_CHUNK ? (uint32_t)len : CLI_BULK_CHUNK;
        iov[0].iov_base = &fr;
        iov[0].iov_len = sizeof(fr);
        iov[1].iov_base = (void *)p;
        iov[1].iov_len = fr.len;
        ret = vmig__tran_write_all(c->bulk_fd, CLI_TIMEOUT_MS, iov, 2);
        p += fr.len;
        len -= fr.len;
    }
    if (ret == 0) {
        struct iovec iov = {.iov_base = &fr, .iov_len = sizeof(fr)};

        fr.len = 0;
        ret = vmig__tran_write_all(c->bulk_fd, CLI_TIMEOUT_MS, &iov, 1);
    }
    if (ret == 0) {
        ret = vmig__vcli_wait_reply(c, id, VMIG_VFU_CMD_DEVICE_FEATURE, &r);
        if (ret == 0) {
            vmig__vcli_rsp_done(&r);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return ret;
}

int
vmig_vfu_client_mig_write(struct vmig_vfu_client *c, const void *buf,
                          size_t len)
{
    const uint8_t *p = buf;

    if ((c->caps.ext & VMIG_VFU_EXT_BULK_DATA) && len > 0) {
        if (c->bulk_fd < 0) {
            int ret = bulk_open(c);

            if (ret < 0) {
                return ret;
            }
        }
        return write_bulk(c, p, len);
    }

    while (len > 0) {
        uint32_t n = len < c->xfer - 8 ? (uint32_t)len : c->xfer - 8;
        /* argsz = 8 + size, as libvfio-user sends it. */
        struct vmig_vfu_mig_data md = {(uint32_t)(sizeof(md) + n), n};
        int ret;

        ret = vmig__vcli_xact0(c, VMIG_VFU_CMD_MIG_DATA_WRITE, &md, sizeof(md),
                               p, n, NULL, 0);
        if (ret < 0) {
            return ret;
        }
        p += n;
        len -= n;
    }
    return 0;
}

static int
bulk_open(struct vmig_vfu_client *c)
{
    struct vmig_vfu_feature f = {sizeof(f), VMIG_VFU_FEAT_X_BULK_CHANNEL |
                                                VMIG_VFU_FEATURE_GET};
    struct rsp r;
    int ret;

    ret = vmig__vcli_xact(c, VMIG_VFU_CMD_DEVICE_FEATURE, &f, sizeof(f), NULL,
                          0, NULL, 0, &r);
    if (ret < 0) {
        return ret;
    }
    if (r.raw.nfds != 1) {
        vmig__vcli_rsp_done(&r);
        return -EPROTO;
    }
    c->bulk_fd = r.raw.fds[0];
    r.raw.fds[0] = -1;
    vmig__vcli_rsp_done(&r);
    return 0;
}

/*
 * Where saving data goes: to @sink piece by piece, or, when @buf is set,
 * straight into @buf (which holds the read's whole limit).
 */
struct pull_to {
    vmig_vfu_sink_fn *sink;
    void *opaque;
    uint8_t *buf;
};

static int
save_bulk(struct vmig_vfu_client *c, uint64_t max, const struct pull_to *to,
          uint64_t *bytes)
{
    struct {
        struct vmig_vfu_feature f;
        struct vmig_vfu_feat_bulk_read br;
    } req = {{sizeof(req), VMIG_VFU_FEAT_X_BULK_READ | VMIG_VFU_FEATURE_SET},
             {max, 0, 0}};
    struct vmig_vfu_feat_bulk_read rep;
    int status = 0, sink_ret = 0;
    struct rsp r;
    uint16_t id;
    int ret;

    pthread_mutex_lock(&c->lock);
    ret = vmig__vcli_send_req(c, VMIG_VFU_CMD_DEVICE_FEATURE, &req, sizeof(req),
                              NULL, 0, NULL, 0, &id);
    /* Drain the channel before waiting for the reply: the server sends
     * the reply only after the terminator frame. */
    while (ret == 0) {
        struct vmig_vfu_bulk_frame fr;

        ret = vmig__tran_read_all(c->bulk_fd, CLI_TIMEOUT_MS, &fr, sizeof(fr));
        if (ret < 0) {
            break;
        }
        if (fr.len == 0) {
            status = fr.status;
            break;
        }
        if (fr.len > VMIG_VFU_BULK_FRAME_MAX || fr.len > max - *bytes) {
            vmig_log(c->ctx, VMIG_LOG_ERR,
                     "%s: bulk channel: a frame of %u bytes after %llu of "
                     "a read of at most %llu (frames are at most %u "
                     "bytes, a read at most what was asked); the server "
                     "is broken",
                     c->name, fr.len, (unsigned long long)*bytes,
                     (unsigned long long)max, VMIG_VFU_BULK_FRAME_MAX);
            ret = -EPROTO;
            break;
        }
        if (to->buf != NULL) {
            /* max <= cap: straight into the caller's buffer */
            ret = vmig__tran_read_all(c->bulk_fd, CLI_TIMEOUT_MS,
                                      to->buf + *bytes, fr.len);
            *bytes += ret == 0 ? fr.len : 0;
            continue;
        }
        ret = vmig__tran_read_all(c->bulk_fd, CLI_TIMEOUT_MS, c->buf, fr.len);
        if (ret == 0 && sink_ret == 0) {
            sink_ret = to->sink(to->opaque, c->buf, fr.len);
            *bytes += fr.len;
        }
    }
    if (ret == 0) {
        ret = vmig__vcli_wait_reply(c, id, VMIG_VFU_CMD_DEVICE_FEATURE, &r);
        if (ret == 0) {
            if (r.m.len >= sizeof(req)) {
                memcpy(&rep, r.m.payload + sizeof(req.f), sizeof(rep));
                status = rep.status;
            }
            vmig__vcli_rsp_done(&r);
        }
    }
    pthread_mutex_unlock(&c->lock);
    if (ret < 0) {
        return ret;
    }
    if (sink_ret < 0) {
        return sink_ret;
    }
    if (status < 0 || status >= 4096) {
        return -EPROTO;
    }
    return -status; /* 0 end, -ENOMSG for now, -ENODEV reset, ... */
}

/* At most @max bytes of the saving session to @to, over the bulk channel
 * when negotiated, MIG_DATA_READs otherwise. */
static int
pull(struct vmig_vfu_client *c, uint64_t max, const struct pull_to *to,
     uint64_t *bytes)
{
    int ret;

    *bytes = 0;
    if ((c->caps.ext & VMIG_VFU_EXT_BULK_DATA) && c->bulk_fd < 0) {
        ret = bulk_open(c);
        if (ret < 0) {
            return ret;
        }
    }
    if (c->bulk_fd >= 0) {
        /* -EAGAIN: the server stopped at @max with more pending */
        return save_bulk(c, max, to, bytes);
    }
    for (;;) {
        size_t want = max - *bytes < c->xfer ? (size_t)(max - *bytes) : c->xfer;
        long n;

        if (*bytes >= max) {
            return -EAGAIN;
        }
        n = mig_read1(c, to->buf != NULL ? to->buf + *bytes : NULL, want,
                      to->sink, to->opaque);
        if (n <= 0) {
            return (int)n;
        }
        *bytes += (uint64_t)n;
    }
}

int
vmig_vfu_client_mig_save_max(struct vmig_vfu_client *c, uint64_t max,
                             vmig_vfu_sink_fn *sink, void *opaque,
                             uint64_t *bytes)
{
    struct pull_to to = {.sink = sink, .opaque = opaque};
    uint64_t dummy;

    if (bytes == NULL) {
        bytes = &dummy;
    }
    *bytes = 0;
    if (max == 0 || sink == NULL) {
        return -EINVAL;
    }
    return pull(c, max, &to, bytes);
}

int
vmig_vfu_client_mig_pull(struct vmig_vfu_client *c, void *buf, size_t len,
                         size_t *got)
{
    struct pull_to to = {.buf = buf};
    uint64_t bytes = 0;
    int ret;

    if (got == NULL || buf == NULL || len == 0) {
        return -EINVAL;
    }
    ret = pull(c, len, &to, &bytes);
    *got = (size_t)bytes;
    return ret;
}

int
vmig_vfu_client_mig_save(struct vmig_vfu_client *c, vmig_vfu_sink_fn *sink,
                         void *opaque, uint64_t *bytes)
{
    return vmig_vfu_client_mig_save_max(c, UINT64_MAX, sink, opaque, bytes);
}
