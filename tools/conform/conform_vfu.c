/* SPDX-License-Identifier: MIT */
/*
 * conform_vfu.c - `vmig conform` over vfio-user: the ops the generic
 * rules use (vmig's client, offering only the PRECOPY_INFO extension so
 * data moves in the spec's MIG_DATA_READ/WRITE messages), the rules of
 * the transport itself (VERSION, device, region and IRQ info, feature
 * flags), and the hostile inputs (--hostile), sent on raw connections
 * built with the public codec.
 *
 * Servers serve one client at a time, so a raw connection is opened only
 * while the client's is closed.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <vmig/proto_reply.h>
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

static void
sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static int
note(struct cf_vfu *t, int ret)
{
    if (ret == -ENOTCONN || ret == -ECONNRESET || ret == -EPIPE ||
        ret == -ETIMEDOUT) {
        t->dead = true;
    }
    return ret;
}

int
cf_vfu_new(vmig_ctx_t *ctx, const char *path, cf_revive_fn *revive,
           cf_why_fn *why, void *opaque, struct cf_vfu **out)
{
    struct cf_vfu *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        return -ENOMEM;
    }
    if (strlen(path) >= sizeof(t->path)) {
        free(t);
        return -ENAMETOOLONG;
    }
    snprintf(t->path, sizeof(t->path), "%s", path);
    t->ctx = ctx;
    t->revive = revive;
    t->why = why;
    t->opaque = opaque;
    t->log = 1;
    t->memfd = memfd_create("vmig-conform", MFD_CLOEXEC);
    if (t->memfd < 0 || ftruncate(t->memfd, (off_t)MEM_LEN) < 0) {
        int ret = -errno;

        if (t->memfd >= 0) {
            close(t->memfd);
        }
        free(t);
        return ret;
    }
    t->mem =
        mmap(NULL, MEM_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, t->memfd, 0);
    if (t->mem == MAP_FAILED) {
        int ret = -errno;

        close(t->memfd);
        free(t);
        return ret;
    }
    *out = t;
    return 0;
}

static void
v_close(void *o)
{
    struct cf_vfu *t = o;

    vmig_vfu_client_free(t->c);
    t->c = NULL;
}

void
cf_vfu_free(struct cf_vfu *t)
{
    if (t == NULL) {
        return;
    }
    v_close(t);
    munmap(t->mem, MEM_LEN);
    close(t->memfd);
    free(t);
}

/* Connect, waiting up to @ms for a server that is starting. */
static int
connect_wait(struct cf_vfu *t, uint32_t ext, int ms)
{
    int ret = -ENOENT;

    for (int w = 0; w <= ms; w += 20) {
        ret = vmig_vfu_client_connect(t->ctx, t->path, ext, &t->c);
        if (ret != -ENOENT && ret != -ECONNREFUSED) {
            return ret;
        }
        sleep_ms(20);
    }
    return ret;
}

static int
v_open(void *o)
{
    struct cf_vfu *t = o;
    int ret;

    if (t->c != NULL && !t->dead) {
        return 0;
    }
    v_close(t);
    t->dead = false;
    ret = connect_wait(t, VMIG_VFU_EXT_PRECOPY_INFO, OPEN_WAIT_MS);
    if (ret < 0 && t->revive != NULL && t->revive(t->opaque, t->path) == 0) {
        ret = connect_wait(t, VMIG_VFU_EXT_PRECOPY_INFO, REVIVE_WAIT_MS);
    }
    if (ret < 0) {
        return ret;
    }
    vmig_vfu_client_set_name(t->c, "device");
    ret = vmig_vfu_client_device_info(t->c, &t->di);
    if (ret == 0) {
        /* memory for DMA logging (and nothing else: the device is not
         * expected to DMA) */
        ret = vmig_vfu_client_dma_map(t->c, MEM_IOVA, MEM_LEN,
                                      VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE,
                                      t->memfd, 0, t->mem);
    }
    if (ret < 0) {
        v_close(t);
    }
    return ret;
}

static bool
v_gone(void *o)
{
    return ((struct cf_vfu *)o)->dead;
}

static const char *
v_gone_why(void *o)
{
    struct cf_vfu *t = o;

    if (t->why == NULL ||
        t->why(t->opaque, t->gone_why, sizeof(t->gone_why)) < 0) {
        return NULL;
    }
    return t->gone_why;
}

static int
v_flags(void *o, uint64_t *flags)
{
    struct cf_vfu *t = o;

    return note(t, vmig_vfu_client_mig_flags(t->c, flags));
}

static int
v_get_state(void *o, uint32_t *state)
{
    struct cf_vfu *t = o;
    enum vmig_state st;
    int ret = note(t, vmig_vfu_client_get_state(t->c, &st));

    if (ret == 0) {
        *state = (uint32_t)st;
    }
    return ret;
}

static int
v_set_state(void *o, uint32_t state)
{
    struct cf_vfu *t = o;

    return note(t, vmig_vfu_client_set_state(t->c, (enum vmig_state)state));
}

static long
v_read(void *o, void *buf, size_t len)
{
    struct cf_vfu *t = o;
    long n = vmig_vfu_client_mig_read(t->c, buf, len);

    if (n == -ENOMSG) {
        return 0; /* an empty reply, whatever the client makes of it */
    }
    return n < 0 ? note(t, (int)n) : n;
}

static int
v_write(void *o, const void *buf, size_t len)
{
    struct cf_vfu *t = o;

    return note(t, vmig_vfu_client_mig_write(t->c, buf, len));
}

static int
v_reset(void *o)
{
    struct cf_vfu *t = o;

    if (!(t->di.flags & VMIG_VFU_DEV_RESET)) {
        return -EOPNOTSUPP;
    }
    return note(t, vmig_vfu_client_reset(t->c));
}

static int
v_precopy_info(void *o, uint64_t *initial, uint64_t *dirty)
{
    struct cf_vfu *t = o;

    return note(t, vmig_vfu_client_precopy_info(t->c, initial, dirty));
}

static int
v_log_range(void *o, uint64_t *iova, uint64_t *len)
{
    struct cf_vfu *t = o;

    if (t->log == 1) {
        t->log =
            note(t, vmig_vfu_client_probe(t->c, VMIG_VFU_FEAT_DMA_LOGGING_START,
                                          VMIG_VFU_FEATURE_SET));
        if (t->log < 0 && t->log != -ENOTCONN && t->log != -ECONNRESET) {
            t->log = -EOPNOTSUPP;
        }
    }
    *iova = MEM_IOVA;
    *len = MEM_LEN;
    return t->log;
}

static int
v_log_start(void *o, uint64_t page, uint64_t iova, uint64_t len)
{
    struct cf_vfu *t = o;
    struct vmig_vfu_log_range r = {iova, len};

    return note(t, vmig_vfu_client_log_start(t->c, page, &r, 1));
}

static int
v_log_report(void *o, uint64_t iova, uint64_t len, uint64_t page,
             uint64_t *bitmap)
{
    struct cf_vfu *t = o;

    return note(t, vmig_vfu_client_log_report(t->c, iova, len, page, bitmap));
}

static int
v_log_stop(void *o)
{
    struct cf_vfu *t = o;

    return note(t, vmig_vfu_client_log_stop(t->c));
}

/* ------------------------------------------------------------ raw */

struct raw {
    int fd;
    uint8_t buf[VMIG_VFU_MAX_MSG_SIZE];
    struct vmig_vfu_msg m; /* the last reply */
};

static int
raw_try(struct cf_vfu *t, struct raw *r, int ms)
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
        sleep_ms(20);
    }
    return -ECONNREFUSED;
}

/* A raw connection (the client's is closed first: one at a time). */
static int
raw_connect(struct cf_vfu *t, struct raw *r)
{
    int ret;

    v_close(t);
    ret = raw_try(t, r, OPEN_WAIT_MS);
    if (ret < 0 && t->revive != NULL && t->revive(t->opaque, t->path) == 0) {
        ret = raw_try(t, r, REVIVE_WAIT_MS);
    }
    return ret;
}

static void
raw_close(struct raw *r)
{
    if (r->fd >= 0) {
        close(r->fd);
        r->fd = -1;
    }
}

static int
raw_send_bytes(struct raw *r, const void *p, size_t len, int sfd)
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
raw_read(struct raw *r, size_t off, size_t len)
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
static int
raw_xact(struct raw *r, uint16_t cmd, const void *p, size_t len, int sfd)
{
    struct vmig_vfu_hdr h = {
        .id = 0x77, .cmd = cmd, .flags = VMIG_VFU_F_TYPE_COMMAND};
    static uint8_t out[VMIG_VFU_MAX_MSG_SIZE];
    long n = vmig_vfu_encode(out, sizeof(out), &h, p, len, NULL, 0);
    int ret;

    if (n < 0) {
        return (int)n;
    }
    ret = raw_send_bytes(r, out, (size_t)n, sfd);
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
static int
raw_version(struct raw *r, uint16_t major, uint16_t minor, const char *json)
{
    uint8_t b[512];
    size_t l = json != NULL ? strlen(json) + 1 : 0;
    struct vmig_vfu_version v = {major, minor};

    memcpy(b, &v, sizeof(v));
    if (l > 0) {
        memcpy(b + sizeof(v), json, l);
    }
    return raw_xact(r, VMIG_VFU_CMD_VERSION, b, sizeof(v) + l, -1);
}

static int
raw_feature(struct raw *r, uint32_t flags, const void *data, size_t dl)
{
    uint8_t b[64];
    struct vmig_vfu_feature f = {(uint32_t)(sizeof(f) + 16), flags};

    memcpy(b, &f, sizeof(f));
    if (dl > 0) {
        memcpy(b + sizeof(f), data, dl);
    }
    return raw_xact(r, VMIG_VFU_CMD_DEVICE_FEATURE, b, sizeof(f) + dl, -1);
}

/* The device state over a raw connection; -errno. */
static int
raw_state(struct raw *r, uint32_t *st)
{
    int ret = raw_feature(
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

/* ------------------------------------------------------------ rules */

static const char c_version[] =
    "vfio-user VERSION: the reply has the proposed major, a minor no higher "
    "than proposed, and optional JSON capabilities (with its NUL)";
static const char c_minor[] =
    "vfio-user VERSION: the minor version in the reply must be equal to or "
    "less than the minor version proposed; the version data is optional";
static const char c_subset[] =
    "vfio-user VERSION: the capability list must be a subset of those "
    "proposed (vmig's x-vmig is answered only when offered)";
static const char c_devinfo[] =
    "vfio-user DEVICE_GET_INFO: argsz, flags (RESET, PCI: this version of "
    "the protocol only supports PCI devices), num_regions, num_irqs";
static const char c_reginfo[] =
    "vfio-user DEVICE_GET_REGION_INFO: every region index below "
    "num_regions answers with its own index; MMAP comes with an fd; a "
    "capability chain stays inside the reply, sparse areas inside the region";
static const char c_irqinfo[] =
    "vfio-user DEVICE_GET_IRQ_INFO: every index below num_irqs answers with "
    "its own index and count";
static const char c_featbits[] =
    "vfio-user DEVICE_FEATURE: flags are a feature index (bits 0-15) and "
    "GET/SET/PROBE (16-18); uAPI: unknown bits are refused, nothing changes";
static const char c_featidx[] =
    "vfio-user DEVICE_FEATURE: only the migration features (1, 2, 6, 7, 8) "
    "are defined; another index fails";

static void
version_rules(struct cf *cf, struct cf_vfu *t)
{
    struct vmig_vfu_caps caps;
    struct vmig_vfu_version asked = {0, 0}, v;
    struct vmig_vfu_reject why;
    struct raw *r = calloc(1, sizeof(*r));
    int ret;

    if (r == NULL) {
        return;
    }
    /* 0.0, no JSON */
    ret = raw_connect(t, r);
    if (ret == 0) {
        ret = raw_version(r, 0, 0, NULL);
    }
    if (ret == 0) {
        ret =
            vmig_vfu_reply_version(&r->m, &asked, &v, &caps, &why) < 0 ? -1 : 0;
        if (ret < 0) {
            cf_row(cf, "VERSION 0.0 without capabilities", c_minor, CF_FAIL,
                   "%s (%s)", why.seen, why.rule);
        } else {
            cf_row(cf, "VERSION 0.0 without capabilities", c_minor, CF_PASS,
                   "answered %u.%u", v.major, v.minor);
        }
    } else {
        cf_row(cf, "VERSION 0.0 without capabilities", c_minor, CF_FAIL, "%s",
               ret > 0 ? strerror(ret) : strerror(-ret));
    }
    raw_close(r);
    /* 0.1 with the spec's capabilities only: no x-vmig in the answer */
    asked.minor = 1;
    ret = raw_connect(t, r);
    if (ret == 0) {
        ret = raw_version(r, 0, 1,
                          "{\"capabilities\":{\"max_msg_fds\":8,"
                          "\"max_data_xfer_size\":1048576}}");
    }
    if (ret == 0 &&
        vmig_vfu_reply_version(&r->m, &asked, &v, &caps, &why) == 0) {
        cf_row(cf, "VERSION: no extension unless offered", c_subset,
               caps.ext == 0 ? CF_PASS : CF_FAIL, "%s",
               caps.ext == 0 ? "no x-vmig in the reply"
                             : "x-vmig answered although not offered");
    } else {
        cf_row(cf, "VERSION: no extension unless offered", c_subset, CF_FAIL,
               "%s", ret != 0 ? strerror(ret > 0 ? ret : -ret) : why.seen);
    }
    raw_close(r);
    free(r);
}

static void
feature_rules(struct cf *cf, struct cf_vfu *t)
{
    struct raw *r = calloc(1, sizeof(*r));
    uint32_t st = 99, to = VMIG_STATE_STOP;
    int ret, ret2, ret3;

    if (r == NULL) {
        return;
    }
    ret = raw_connect(t, r);
    if (ret == 0) {
        ret = raw_version(r, 0, 1, NULL);
    }
    if (ret != 0) {
        cf_row(cf, "DEVICE_FEATURE: unknown flag bits refused", c_featbits,
               CF_FAIL, "no session: %s", strerror(ret > 0 ? ret : -ret));
        raw_close(r);
        free(r);
        return;
    }
    ret = raw_feature(
        r, VMIG_VFU_FEAT_MIG_DEVICE_STATE | VMIG_VFU_FEATURE_GET | (1u << 20),
        NULL, 0);
    ret2 = raw_feature(
        r, VMIG_VFU_FEAT_MIG_DEVICE_STATE | VMIG_VFU_FEATURE_SET | (1u << 21),
        &to, sizeof(to));
    if (ret2 >= 0) {
        ret3 = raw_state(r, &st);
    } else {
        ret3 = ret2;
    }
    if (ret > 0 && ret2 > 0 && ret3 == 0 && st == VMIG_STATE_RUNNING) {
        cf_row(cf, "DEVICE_FEATURE: unknown flag bits refused", c_featbits,
               CF_PASS, "GET|bit 20: %s; SET STOP|bit 21: %s; still RUNNING",
               strerror(ret), strerror(ret2));
    } else {
        cf_row(cf, "DEVICE_FEATURE: unknown flag bits refused", c_featbits,
               CF_FAIL, "GET|bit 20: %s; SET STOP|bit 21: %s; then %s %s",
               ret == 0 ? "accepted" : strerror(ret < 0 ? -ret : ret),
               ret2 == 0 ? "accepted" : strerror(ret2 < 0 ? -ret2 : ret2),
               ret3 == 0 ? "the device is in" : "GET failed:",
               ret3 == 0 ? vmig_state_name(st) : strerror(-ret3));
    }
    ret = raw_feature(r, 0xabcd | VMIG_VFU_FEATURE_GET, NULL, 0);
    cf_row(cf, "DEVICE_FEATURE: an undefined feature refused", c_featidx,
           ret > 0 ? CF_PASS : CF_FAIL, "feature 0xabcd GET: %s",
           ret == 0  ? "answered"
           : ret > 0 ? strerror(ret)
                     : strerror(-ret));
    /* leave it RUNNING whatever happened */
    if (ret2 == 0 && st != VMIG_STATE_RUNNING) {
        to = VMIG_STATE_RUNNING;
        (void)raw_feature(r,
                          VMIG_VFU_FEAT_MIG_DEVICE_STATE | VMIG_VFU_FEATURE_SET,
                          &to, sizeof(to));
    }
    raw_close(r);
    free(r);
}

static void
info_rules(struct cf *cf, struct cf_vfu *t)
{
    char sum[400] = "", bad[300] = "";
    int ret = v_open(t);

    if (ret < 0) {
        cf_row(cf, "VERSION negotiation", c_version, CF_FAIL, "no session: %s",
               strerror(-ret));
        return;
    }
    {
        struct vmig_vfu_caps caps;

        vmig_vfu_client_caps(t->c, &caps);
        cf_row(cf, "VERSION negotiation", c_version, CF_PASS,
               "max_data_xfer_size %u, max_msg_fds %u, x-vmig %s",
               caps.max_data_xfer_size, caps.max_msg_fds,
               caps.ext ? "precopy_info" : "none");
    }
    cf_row(cf, "device info", c_devinfo,
           (t->di.flags & VMIG_VFU_DEV_PCI) ? CF_PASS : CF_FAIL,
           "flags %s%s, %u regions, %u IRQ types",
           (t->di.flags & VMIG_VFU_DEV_PCI) ? "PCI" : "not PCI",
           (t->di.flags & VMIG_VFU_DEV_RESET) ? "|RESET" : "",
           t->di.num_regions, t->di.num_irqs);
    for (unsigned int i = 0; i < t->di.num_regions; i++) {
        struct vmig_vfu_region_info ri;
        size_t u = strlen(sum), ub = strlen(bad);
        int fd = -1, ns = 0;

        ret = vmig_vfu_client_region_info(t->c, i, &ri, &fd);
        if (ret == 0 && (ri.flags & VMIG_VFU_REGION_CAPS)) {
            ns = vmig_vfu_client_region_sparse(t->c, i, NULL, 0);
        }
        if (fd >= 0) {
            close(fd);
        }
        if (ret < 0 || ns < 0 ||
            ((ri.flags & VMIG_VFU_REGION_MMAP) && fd < 0)) {
            snprintf(bad + ub, sizeof(bad) - ub, "%sregion %u: %s",
                     ub ? "; " : "", i,
                     ret < 0  ? strerror(-ret)
                     : ns < 0 ? "capability chain refused"
                              : "MMAP without an fd");
            continue;
        }
        if (ri.size > 0) {
            snprintf(sum + u, sizeof(sum) - u, "%s%u: %llu B %s%s%s%s",
                     u ? ", " : "", i, (unsigned long long)ri.size,
                     (ri.flags & VMIG_VFU_REGION_READ) ? "r" : "",
                     (ri.flags & VMIG_VFU_REGION_WRITE) ? "w" : "",
                     (ri.flags & VMIG_VFU_REGION_MMAP) ? " mmap" : "",
                     ns > 0 ? " sparse" : "");
        }
    }
    if (bad[0] != '\0') {
        cf_row(cf, "region info", c_reginfo, CF_FAIL, "%s", bad);
    } else {
        cf_row(cf, "region info", c_reginfo, CF_PASS, "%s",
               sum[0] ? sum : "no region with a size");
    }
    sum[0] = bad[0] = '\0';
    for (unsigned int i = 0; i < t->di.num_irqs; i++) {
        struct vmig_vfu_irq_info ii;
        size_t u = strlen(sum), ub = strlen(bad);

        ret = vmig_vfu_client_irq_info(t->c, i, &ii);
        if (ret < 0) {
            snprintf(bad + ub, sizeof(bad) - ub, "%sindex %u: %s",
                     ub ? "; " : "", i, strerror(-ret));
        } else if (ii.count > 0) {
            snprintf(sum + u, sizeof(sum) - u, "%s%u: %u", u ? ", " : "", i,
                     ii.count);
        }
    }
    if (bad[0] != '\0') {
        cf_row(cf, "IRQ info", c_irqinfo, CF_FAIL, "%s", bad);
    } else {
        cf_row(cf, "IRQ info", c_irqinfo, CF_PASS, "%s",
               sum[0] ? sum : "no interrupts");
    }
    v_close(t);
}

static void
transport_rules(struct cf *cf, void *o)
{
    struct cf_vfu *t = o;

    info_rules(cf, t);
    version_rules(cf, t);
    feature_rules(cf, t);
}

/* ------------------------------------------------------------ hostile */

static const char c_hostile[] =
    "vfio-user Security Considerations: clients should not trust servers, "
    "and vice versa - a malformed or out-of-range message is refused (an "
    "error reply, or the connection closed) and the device keeps answering";

enum h_kind { H_RAW, H_MSG, H_MSG_FD };

struct hostile {
    const char *name;
    bool before_version; /* sent before VERSION */
    enum h_kind kind;
    uint16_t cmd;
    uint8_t p[48];
    size_t len;
    uint32_t hdr_size; /* H_RAW: a header claiming this msg_size */
    unsigned int repeat;
};

/* clang-format off */
static const struct hostile hostiles[] = {
    {"garbage bytes", true, H_RAW, 0, {0}, 0, 0, 0},
    {"msg_size below the header", true, H_RAW, 1, {0}, 0, 8, 0},
    {"msg_size 4 GiB", true, H_RAW, 1, {0}, 0, 0xffffffffu, 0},
    {"a message cut short", true, H_RAW, 1, {0}, 0, 1000, 0},
    {"a command before VERSION", true, H_MSG, VMIG_VFU_CMD_DEVICE_RESET,
     {0}, 0, 0, 0},
    {"VERSION twice", false, H_MSG, VMIG_VFU_CMD_VERSION,
     {0, 0, 1, 0}, 4, 0, 0},
    {"an unknown command (14)", false, H_MSG, 14, {0}, 0, 0, 0},
    {"an unknown command (0xffff)", false, H_MSG, 0xffff, {0}, 0, 0, 0},
    {"REGION_WRITE count above max_data_xfer_size", false, H_MSG,
     VMIG_VFU_CMD_REGION_WRITE, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
     0, 0, 0, 0x40}, 16, 0, 0},
    {"REGION_WRITE count without the data", false, H_MSG,
     VMIG_VFU_CMD_REGION_WRITE, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
     100, 0, 0, 0}, 16, 0, 0},
    {"REGION_READ of region 0xffff", false, H_MSG, VMIG_VFU_CMD_REGION_READ,
     {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 4, 0, 0, 0}, 16, 0, 0},
    {"REGION_READ past the end of region 0", false, H_MSG,
     VMIG_VFU_CMD_REGION_READ, {0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0,
     4, 0, 0, 0}, 16, 0, 0},
    {"DMA_MAP of size 0", false, H_MSG, VMIG_VFU_CMD_DMA_MAP,
     {32, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
      0, 0, 0x10, 0, 0, 0, 0, 0}, 32, 0, 0},
    {"DMA_MAP wrapping the address space", false, H_MSG, VMIG_VFU_CMD_DMA_MAP,
     {32, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
      0, 0, 0, 0, 0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x02}, 32, 0, 0},
    {"DMA_MAP overlapping a mapping", false, H_MSG_FD, VMIG_VFU_CMD_DMA_MAP,
     {32, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
      0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0}, 32, 0, 0},
    {"DMA_UNMAP of a range never mapped", false, H_MSG,
     VMIG_VFU_CMD_DMA_UNMAP, {24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0, 0,
     0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0}, 24, 0, 0},
    {"SET_IRQS with two data types", false, H_MSG,
     VMIG_VFU_CMD_DEVICE_SET_IRQS, {20, 0, 0, 0, 0x23, 0, 0, 0, 0, 0, 0, 0,
     0, 0, 0, 0, 1, 0, 0, 0}, 20, 0, 0},
    {"SET_IRQS on IRQ index 0xffff", false, H_MSG,
     VMIG_VFU_CMD_DEVICE_SET_IRQS, {20, 0, 0, 0, 0x21, 0, 0, 0, 0xff, 0xff,
     0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, 20, 0, 0},
    {"DEVICE_FEATURE with GET and SET", false, H_MSG,
     VMIG_VFU_CMD_DEVICE_FEATURE, {16, 0, 0, 0, 2, 0, 3, 0}, 8, 0, 0},
    {"MIG_DATA_READ in RUNNING", false, H_MSG, VMIG_VFU_CMD_MIG_DATA_READ,
     {8, 0, 0, 0, 0, 0x10, 0, 0}, 8, 0, 0},
    {"MIG_DATA_WRITE in RUNNING", false, H_MSG, VMIG_VFU_CMD_MIG_DATA_WRITE,
     {12, 0, 0, 0, 4, 0, 0, 0, 1, 2, 3, 4}, 12, 0, 0},
    {"200 refused messages in a row", false, H_MSG, 14, {0}, 0, 0, 200},
};
/* clang-format on */

/* Does the device still answer a new client, RUNNING? */
static int
answers(struct cf_vfu *t, char *why, size_t wl)
{
    struct raw *r = calloc(1, sizeof(*r));
    uint32_t st = 99;
    int ret;

    if (r == NULL) {
        return -ENOMEM;
    }
    ret = raw_connect(t, r);
    if (ret == 0) {
        ret = raw_version(r, 0, 1, NULL);
    }
    if (ret == 0) {
        struct vmig_vfu_device_info di = {.argsz = sizeof(di)};

        ret = raw_xact(r, VMIG_VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), -1);
    }
    if (ret == 0) {
        ret = raw_state(r, &st);
    }
    raw_close(r);
    free(r);
    if (ret != 0) {
        snprintf(why, wl, "afterwards the device does not answer: %s",
                 strerror(ret > 0 ? ret : -ret));
        return -EIO;
    }
    if (st != VMIG_STATE_RUNNING) {
        snprintf(why, wl, "afterwards the device is in %s",
                 vmig_state_name(st));
        return -EIO;
    }
    return 0;
}

static void
hostile_one(struct cf *cf, struct cf_vfu *t, const struct hostile *h)
{
    struct raw *r = calloc(1, sizeof(*r));
    char rule[96], why[200] = "";
    int ret;

    if (r == NULL) {
        return;
    }
    snprintf(rule, sizeof(rule), "hostile: %s", h->name);
    ret = raw_connect(t, r);
    if (ret == 0 && !h->before_version) {
        ret = raw_version(r, 0, 1, NULL);
    }
    if (ret != 0) {
        cf_row(cf, rule, c_hostile, CF_FAIL, "no session: %s",
               strerror(ret > 0 ? ret : -ret));
        raw_close(r);
        free(r);
        return;
    }
    if (h->kind == H_RAW) {
        uint8_t junk[4096];
        struct vmig_vfu_hdr hd = {.id = 1, .cmd = h->cmd, .size = h->hdr_size};
        uint64_t x = 88172645463325252ull;

        for (size_t i = 0; i < sizeof(junk); i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            junk[i] = (uint8_t)x;
        }
        if (h->hdr_size != 0) {
            memcpy(junk, &hd, sizeof(hd));
        }
        (void)raw_send_bytes(r, junk, h->hdr_size == 1000 ? 100 : sizeof(junk),
                             -1);
        ret = 1; /* no reply expected: the device must only survive it */
    } else {
        unsigned int n = h->repeat ? h->repeat : 1;

        if (h->kind == H_MSG_FD) {
            /* a first mapping for the overlapping one to hit */
            uint8_t m[32] = {32, 0, 0, 0, 3, 0, 0, 0};
            uint64_t a = 0x100000, s = 0x100000;

            memcpy(m + 16, &a, 8);
            memcpy(m + 24, &s, 8);
            (void)raw_xact(r, VMIG_VFU_CMD_DMA_MAP, m, 32, t->memfd);
        }
        for (unsigned int i = 0; i < n; i++) {
            ret = raw_xact(r, h->cmd, h->p, h->len,
                           h->kind == H_MSG_FD ? t->memfd : -1);
            if (ret <= 0) {
                break;
            }
        }
    }
    raw_close(r);
    free(r);
    if (ret == 0) {
        cf_row(cf, rule, c_hostile, CF_FAIL, "accepted");
    } else if (answers(t, why, sizeof(why)) < 0) {
        cf_row(cf, rule, c_hostile, CF_FAIL, "%s", why);
    } else {
        cf_row(cf, rule, c_hostile, CF_PASS, "%s; the device answers",
               h->kind == H_RAW    ? "sent"
               : ret > 0           ? strerror(ret)
               : ret == -ENOTCONN  ? "connection closed"
               : ret == -ETIMEDOUT ? "no reply (5 s)"
                                   : strerror(-ret));
    }
}

static void
hostile_rules(struct cf *cf, void *o)
{
    for (size_t i = 0; i < sizeof(hostiles) / sizeof(hostiles[0]); i++) {
        hostile_one(cf, o, &hostiles[i]);
    }
}

const struct cf_ops cf_vfu_ops = {
    .transport = "vfio-user",
    .open = v_open,
    .close = v_close,
    .gone = v_gone,
    .gone_why = v_gone_why,
    .flags = v_flags,
    .get_state = v_get_state,
    .set_state = v_set_state,
    .read = v_read,
    .write = v_write,
    .reset = v_reset,
    .precopy_info = v_precopy_info,
    .log_range = v_log_range,
    .log_start = v_log_start,
    .log_report = v_log_report,
    .log_stop = v_log_stop,
    .transport_rules = transport_rules,
    .hostile_rules = hostile_rules,
};
