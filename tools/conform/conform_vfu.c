/* SPDX-License-Identifier: MIT */
/*
 * conform_vfu.c - `vmig conform` over vfio-user: the ops the generic
 * rules use, through vmig's client, offering only the PRECOPY_INFO
 * extension so data moves in the spec's MIG_DATA_READ/WRITE messages.
 * The transport's own rules are in conform_vfu_rules.c and
 * conform_vfu_hostile.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <vmig/vfu_client.h>
#include "conform_vfu.h"

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

void
cf_vfu_close(void *o)
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
    cf_vfu_close(t);
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
        cf_sleep_ms(20);
    }
    return ret;
}

int
cf_vfu_open(void *o)
{
    struct cf_vfu *t = o;
    int ret;

    if (t->c != NULL && !t->dead) {
        return 0;
    }
    cf_vfu_close(t);
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
        cf_vfu_close(t);
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

const struct cf_ops cf_vfu_ops = {
    .transport = "vfio-user",
    .open = cf_vfu_open,
    .close = cf_vfu_close,
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
    .transport_rules = cf_vfu_transport_rules,
    .hostile_rules = cf_vfu_hostile_rules,
};
