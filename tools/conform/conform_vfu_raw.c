/* SPDX-License-Identifier: MIT */
/*
 * conform_vfu_raw.c - raw vfio-user connections for the transport's
 * rules: messages built and replies read with the public codec
 * (vmig/proto.h), so conform can send what vmig's client never would.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "conform_vfu.h"

static int
raw_try(struct cf_vfu *t, struct cf_raw *r, int ms)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    _Static_assert(sizeof(sa.sun_path) == sizeof(t->path), "path size");
    memcpy(sa.sun_path, t->path, sizeof(sa.sun_path));
    for (int w = 0; w <= ms; w += 20) {
        r->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (r->fd < 0) {
            return -errno;
        }
        if (connect(r->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            return 0;
        }
        close(r->fd);
        r->fd = -1;
        cf_sleep_ms(20);
    }
    return -ECONNREFUSED;
}

/* A raw connection (the client's is closed first: one at a time). */
int
cf_raw_connect(struct cf_vfu *t, struct cf_raw *r)
{
    int ret;

    cf_vfu_close(t);
    ret = raw_try(t, r, OPEN_WAIT_MS);
    if (ret < 0 && t->revive != NULL && t->revive(t->opaque, t->path) == 0) {
        ret = raw_try(t, r, REVIVE_WAIT_MS);
    }
    return ret;
}

void
cf_raw_close(struct cf_raw *r)
{
    if (r->fd >= 0) {
        close(r->fd);
        r->fd = -1;
    }
}

int
cf_raw_send(struct cf_raw *r, const void *p, size_t len, int sfd)
{
    struct iovec iov = {.iov_base = (void *)p, .iov_len = len};
    union {
        char b[CMSG_SPACE(sizeof(int))];
        struct cmsghdr a;
    } ctl;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

    if (sfd >= 0) {
        struct cmsghdr *c;

        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.b;
        mh.msg_controllen = sizeof(ctl.b);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &sfd, sizeof(int));
    }
    return sendmsg(r->fd, &mh, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -EPIPE;
}

/* Bytes into r->buf until @len; -ENOTCONN at EOF, -ETIMEDOUT. */
static int
raw_read(struct cf_raw *r, size_t off, size_t len)
{
    while (off < len) {
        struct pollfd p = {.fd = r->fd, .events = POLLIN};
        ssize_t n;

        if (poll(&p, 1, RAW_WAIT_MS) <= 0) {
            return -ETIMEDOUT;
        }
        n = recv(r->fd, r->buf + off, len - off, 0);
        if (n <= 0) {
            return n == 0 ? -ENOTCONN : -errno;
        }
        off += (size_t)n;
    }
    return 0;
}

/*
 * Send a command, wait for its reply.  Return: 0 success, > 0 the
 * reply's errno, -ENOTCONN/-ETIMEDOUT when the server closed or did not
 * answer, -EPROTO for a reply the decoder refuses.
 */
int
cf_raw_xact(struct cf_raw *r, uint16_t cmd, const void *p, size_t len, int sfd)
{
    struct vmig_vfu_hdr h = {
        .id = 0x77, .cmd = cmd, .flags = VMIG_VFU_F_TYPE_COMMAND};
    static uint8_t out[VMIG_VFU_MAX_MSG_SIZE];
    long n = vmig_vfu_encode(out, sizeof(out), &h, p, len, NULL, 0);
    int ret;

    if (n < 0) {
        return (int)n;
    }
    ret = cf_raw_send(r, out, (size_t)n, sfd);
    for (; ret == 0;) {
        ret = raw_read(r, 0, sizeof(h));
        if (ret < 0) {
            return ret;
        }
        memcpy(&h, r->buf, sizeof(h));
        if (h.size < sizeof(h) || h.size > sizeof(r->buf)) {
            return -EPROTO;
        }
        ret = raw_read(r, sizeof(h), h.size);
        if (ret < 0) {
            return ret;
        }
        if ((h.flags & VMIG_VFU_F_TYPE_MASK) == VMIG_VFU_F_TYPE_COMMAND) {
            continue; /* a server request (DMA): not ours to serve */
        }
        if (h.flags & VMIG_VFU_F_ERROR) {
            /* the header says it all (even for a command the decoder
             * does not know) */
            return h.error != 0 && h.error < 4096 ? (int)h.error : EIO;
        }
        if (vmig_vfu_decode(r->buf, h.size, 0, NULL, &r->m, NULL) < 0) {
            return -EPROTO;
        }
        return 0;
    }
    return ret == -EPIPE ? -ENOTCONN : ret;
}

/* VERSION @major.@minor with @json (NULL: none). */
int
cf_raw_version(struct cf_raw *r, uint16_t major, uint16_t minor,
               const char *json)
{
    uint8_t b[512];
    size_t l = json != NULL ? strlen(json) + 1 : 0;
    struct vmig_vfu_version v = {major, minor};

    memcpy(b, &v, sizeof(v));
    if (l > 0) {
        memcpy(b + sizeof(v), json, l);
    }
    return cf_raw_xact(r, VMIG_VFU_CMD_VERSION, b, sizeof(v) + l, -1);
}

int
cf_raw_feature(struct cf_raw *r, uint32_t flags, const void *data, size_t dl)
{
    uint8_t b[64];
    struct vmig_vfu_feature f = {(uint32_t)(sizeof(f) + 16), flags};

    memcpy(b, &f, sizeof(f));
    if (dl > 0) {
        memcpy(b + sizeof(f), data, dl);
    }
    return cf_raw_xact(r, VMIG_VFU_CMD_DEVICE_FEATURE, b, sizeof(f) + dl, -1);
}

/* The device state over a raw connection; -errno. */
int
cf_raw_state(struct cf_raw *r, uint32_t *st)
{
    int ret = cf_raw_feature(
        r, VMIG_VFU_FEAT_MIG_DEVICE_STATE | VMIG_VFU_FEATURE_GET, NULL, 0);

    if (ret != 0) {
        return ret > 0 ? -ret : ret;
    }
    if (r->m.len < 16) {
        return -EPROTO;
    }
    memcpy(st, r->m.payload + 8, sizeof(*st));
    return 0;
}
