/* SPDX-License-Identifier: MIT */
/*
 * memdev.c - an in-process device backend built on the device-side
 * migration framework (<vmig/device.h>).
 *
 * Saved stream: a 32-byte header {magic "VMIGMEM" + version 1, state size,
 * work counter, XXH3 of state and counter} then the state bytes.  The
 * resuming session collects bytes in a staging buffer; RESUMING -> STOP
 * checks magic, size, length and digest and only then copies the staging
 * buffer into the live state (nothing is applied before validation).
 *
 * Locking: md->lock guards the state, the work counter, the staging
 * buffer and the cursors, for vmig_memdev_work() and the other accessors
 * that any thread may call.  The framework's lock is taken first when both
 * are held (every callback runs under it and takes md->lock); nothing
 * calls into the framework while holding md->lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>
#include <vmig/byteorder.h>
#include <vmig/device.h>
#include <vmig/ctx.h>
#include <vmig_testkit/memdev.h>

#define vmig_err(ctx, ...) vmig_log((ctx), VMIG_LOG_ERR, __VA_ARGS__)

#define MEMDEV_MAGIC 0x014d454d47494d56ull /* "VMIGMEM" + version 1 */
#define MEMDEV_HDR 32

struct vmig_memdev {
    vmig_ctx_t *ctx;
    struct vmig_dev *dev;
    struct vmig_memdev_params p;
    pthread_mutex_t lock;
    /* guarded by lock: */
    uint8_t *state;
    uint64_t work;
    bool running; /* RUNNING or RUNNING_P2P/PRE_COPY*: does work */
    uint8_t hdr[MEMDEV_HDR];
    uint64_t save_pos; /* bytes of header + state read so far */
    uint8_t *stage;    /* resuming staging buffer */
    uint64_t stage_len;
    enum vmig_memdev_fault fault;
    uint8_t config[VMIG_MEMDEV_CONFIG_SIZE];
};

static uint64_t
digest_locked(const struct vmig_memdev *md)
{
    XXH3_state_t st;
    uint8_t w[8];

    vmig_put_le64(w, md->work);
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, md->state, md->p.state_size);
    XXH3_64bits_update(&st, w, sizeof(w));
    return XXH3_64bits_digest(&st);
}

static int
validate_commit_locked(struct vmig_memdev *md)
{
    const uint8_t *h = md->stage;
    uint64_t magic, size, work, digest, saved_work;
    uint8_t *saved_state;

    if (md->stage_len != MEMDEV_HDR + md->p.state_size) {
        vmig_err(md->ctx,
                 "RESUMING -> STOP: %llu bytes loaded, %zu "
                 "expected; state refused",
                 (unsigned long long)md->stage_len,
                 (size_t)(MEMDEV_HDR + md->p.state_size));
        return -EBADMSG;
    }
    magic = vmig_get_le64(h);
    size = vmig_get_le64(h + 8);
    work = vmig_get_le64(h + 16);
    digest = vmig_get_le64(h + 24);
    if (magic != MEMDEV_MAGIC || size != md->p.state_size) {
        vmig_err(md->ctx,
                 "RESUMING -> STOP: bad header (magic %#llx, size "
                 "%llu); state refused",
                 (unsigned long long)magic, (unsigned long long)size);
        return -EBADMSG;
    }
    /* check the digest over the staged bytes before touching the state */
    saved_state = md->state;
    saved_work = md->work;
    md->state = md->stage + MEMDEV_HDR;
    md->work = work;
    if (digest_locked(md) != digest) {
        md->state = saved_state;
        md->work = saved_work;
        vmig_err(md->ctx, "RESUMING -> STOP: state digest mismatch; state "
                          "refused, device keeps its previous state");
        return -EBADMSG;
    }
    md->state = saved_state;
    memcpy(md->state, md->stage + MEMDEV_HDR, md->p.state_size);
    md->work = work;
    return 0;
}

static int
memdev_step(void *opaque, enum vmig_state from, enum vmig_state to,
            bool *broken)
{
    struct vmig_memdev *md = opaque;
    int ret = 0;

    (void)broken;
    pthread_mutex_lock(&md->lock);
    if (to == VMIG_STATE_STOP_COPY &&
        md->fault == VMIG_MEMDEV_FAULT_FAIL_STOP_COPY) {
        md->fault = VMIG_MEMDEV_FAULT_NONE;
        ret = -EIO;
        goto out;
    }
    if (to == VMIG_STATE_RUNNING &&
        md->fault == VMIG_MEMDEV_FAULT_FAIL_RUNNING) {
        md->fault = VMIG_MEMDEV_FAULT_NONE;
        ret = -EIO;
        goto out;
    }
    switch (vmig_arc_classify(from, to)) {
    case VMIG_ARC_OPEN_SAVE:
        vmig_put_le64(md->hdr, MEMDEV_MAGIC);
        vmig_put_le64(md->hdr + 8, md->p.state_size);
        vmig_put_le64(md->hdr + 16, md->work);
        vmig_put_le64(md->hdr + 24, digest_locked(md));
        md->save_pos = 0;
        break;
    case VMIG_ARC_OPEN_RESUME:
        md->stage_len = 0;
        break;
    case VMIG_ARC_END_RESUME:
        ret = validate_commit_locked(md);
        if (ret < 0) {
            goto out;
        }
        md->stage_len = 0;
        break;
    default:
        break;
    }
    md->running = to == VMIG_STATE_RUNNING || to == VMIG_STATE_PRE_COPY;
out:
    pthread_mutex_unlock(&md->lock);
    return ret;
}

/* The framework's save: the header, then the state bytes. */
static ssize_t
memdev_save(void *opaque, enum vmig_state state, void *buf, size_t cap)
{
    struct vmig_memdev *md = opaque;
    uint64_t total = MEMDEV_HDR + md->p.state_size;
    size_t n = 0;

    (void)state;
    pthread_mutex_lock(&md->lock);
    while (n < cap && md->save_pos < total) {
        uint64_t pos = md->save_pos;
        size_t chunk;

        if (pos < MEMDEV_HDR) {
            chunk = (size_t)(MEMDEV_HDR - pos);
            chunk = chunk < cap - n ? chunk : cap - n;
            memcpy((uint8_t *)buf + n, md->hdr + pos, chunk);
        } else {
            chunk = (size_t)(total - pos);
            chunk = chunk < cap - n ? chunk : cap - n;
            memcpy((uint8_t *)buf + n, md->state + (pos - MEMDEV_HDR), chunk);
        }
        if (md->fault == VMIG_MEMDEV_FAULT_CORRUPT_SAVE &&
            pos + chunk > MEMDEV_HDR) {
            ((uint8_t *)buf)[n + chunk - 1] ^= 0x40;
            md->fault = VMIG_MEMDEV_FAULT_NONE;
        }
        n += chunk;
        md->save_pos += chunk;
    }
    pthread_mutex_unlock(&md->lock);
    return (ssize_t)n;
}

/* The framework's load: staged until RESUMING -> STOP validates it. */
static int
memdev_load(void *opaque, const void *buf, size_t len)
{
    struct vmig_memdev *md = opaque;
    int ret = 0;

    pthread_mutex_lock(&md->lock);
    if (len > MEMDEV_HDR + md->p.state_size - md->stage_len) {
        ret = -E2BIG;
    } else {
        memcpy(md->stage + md->stage_len, buf, len);
        md->stage_len += len;
    }
    pthread_mutex_unlock(&md->lock);
    if (ret == -E2BIG) {
        vmig_err(md->ctx,
                 "RESUMING: more state than the %zu bytes this "
                 "device has; refused",
                 (size_t)(MEMDEV_HDR + md->p.state_size));
    }
    return ret;
}

static void
memdev_reset_cb(void *opaque, enum vmig_reset_cause cause)
{
    struct vmig_memdev *md = opaque;

    (void)cause;
    pthread_mutex_lock(&md->lock);
    md->stage_len = 0;
    md->save_pos = 0;
    md->running = true;
    pthread_mutex_unlock(&md->lock);
}

static const struct vmig_dev_ops memdev_dev_ops = {
    .step = memdev_step,
    .save = memdev_save,
    .load = memdev_load,
    .reset = memdev_reset_cb,
};

int
vmig_memdev_new(vmig_ctx_t *ctx, const struct vmig_memdev_params *p,
                struct vmig_memdev **out)
{
    struct vmig_memdev *md;
    uint64_t x;
    int ret;

    if (p == NULL || out == NULL || p->state_size < 64 ||
        vmig_flags_validate(p->flags) < 0 ||
        (p->flags & VMIG_MIGRATION_PRE_COPY)) {
        return -EINVAL;
    }
    md = calloc(1, sizeof(*md));
    if (md == NULL) {
        return -ENOMEM;
    }
    md->p = *p;
    md->ctx = ctx;
    md->state = malloc(p->state_size);
    md->stage = malloc(MEMDEV_HDR + p->state_size);
    if (md->state == NULL || md->stage == NULL ||
        pthread_mutex_init(&md->lock, NULL) != 0) {
        ret = -ENOMEM;
        goto err;
    }
    ret = vmig_dev_new(ctx, p->flags, &memdev_dev_ops, md, &md->dev);
    if (ret < 0) {
        pthread_mutex_destroy(&md->lock);
        goto err;
    }
    x = p->seed | 1;
    for (size_t i = 0; i < p->state_size; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        md->state[i] = (uint8_t)x;
    }
    md->running = true;
    *out = md;
    return 0;

err:
    free(md->state);
    free(md->stage);
    free(md);
    return ret;
}

void
vmig_memdev_free(struct vmig_memdev *md)
{
    if (md == NULL) {
        return;
    }
    vmig_dev_free(md->dev);
    pthread_mutex_destroy(&md->lock);
    free(md->state);
    free(md->stage);
    free(md);
}

int
vmig_memdev_work(struct vmig_memdev *md, uint64_t n)
{
    int ret = 0;

    pthread_mutex_lock(&md->lock);
    if (!md->running) {
        ret = -EBUSY;
        goto out;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t h =
            XXH3_64bits_withSeed(&md->work, sizeof(md->work), md->p.seed);
        size_t at = (size_t)(h % (md->p.state_size - 8));

        memcpy(md->state + at, &h, 8);
        md->work++;
    }
out:
    pthread_mutex_unlock(&md->lock);
    return ret;
}

uint64_t
vmig_memdev_digest(struct vmig_memdev *md)
{
    uint64_t d;

    pthread_mutex_lock(&md->lock);
    d = digest_locked(md);
    pthread_mutex_unlock(&md->lock);
    return d;
}

uint64_t
vmig_memdev_work_done(struct vmig_memdev *md)
{
    uint64_t w;

    pthread_mutex_lock(&md->lock);
    w = md->work;
    pthread_mutex_unlock(&md->lock);
    return w;
}

enum vmig_state
vmig_memdev_state(struct vmig_memdev *md)
{
    return vmig_dev_state(md->dev);
}

void
vmig_memdev_config(struct vmig_memdev *md, uint8_t *buf, const uint8_t *set)
{
    pthread_mutex_lock(&md->lock);
    if (set != NULL) {
        memcpy(md->config, set, sizeof(md->config));
    }
    if (buf != NULL) {
        memcpy(buf, md->config, sizeof(md->config));
    }
    pthread_mutex_unlock(&md->lock);
}

void
vmig_memdev_inject(struct vmig_memdev *md, enum vmig_memdev_fault fault)
{
    pthread_mutex_lock(&md->lock);
    md->fault = fault;
    pthread_mutex_unlock(&md->lock);
}

/* ------------------------------------------------------------ backend */

static int
op_get_flags(void *opaque, uint64_t *flags)
{
    struct vmig_memdev *md = opaque;

    *flags = md->p.flags;
    return 0;
}

static int
op_get_state(void *opaque, enum vmig_state *state)
{
    struct vmig_memdev *md = opaque;

    *state = vmig_dev_state(md->dev);
    return 0;
}

static int
op_set_state(void *opaque, enum vmig_state target)
{
    struct vmig_memdev *md = opaque;

    return vmig_dev_set_state(md->dev, target);
}

static ssize_t
op_read(void *opaque, void *buf, size_t cap)
{
    struct vmig_memdev *md = opaque;

    return vmig_dev_read(md->dev, buf, cap, NULL);
}

static int
op_write(void *opaque, const void *buf, size_t len)
{
    struct vmig_memdev *md = opaque;

    return vmig_dev_write(md->dev, buf, len);
}

static ssize_t
op_describe(void *opaque, struct vmig_pci_ids *ids, void *buf, size_t cap)
{
    struct vmig_memdev *md = opaque;
    int n;

    ids->valid = true;
    ids->vendor = VMIG_MEMDEV_VENDOR;
    ids->device = VMIG_MEMDEV_DEVICE;
    ids->subsys_vendor = VMIG_MEMDEV_VENDOR;
    ids->subsys_device = 0;
    ids->revision = md->p.revision;
    n = snprintf(buf, cap, "memdev state=%zu", md->p.state_size);
    return n < 0 || (size_t)n >= cap ? -E2BIG : n;
}

/* Same size; a source revision up to ours (older -> newer is fine). */
static int
op_compat(void *opaque, const struct vmig_mp_dev *src, char *reason, size_t len)
{
    struct vmig_memdev *md = opaque;
    char want[64];
    int n = snprintf(want, sizeof(want), "memdev state=%zu", md->p.state_size);

    if (!src->ids.valid || src->ids.vendor != VMIG_MEMDEV_VENDOR ||
        src->ids.device != VMIG_MEMDEV_DEVICE) {
        snprintf(reason, len, "not a memdev");
        return 0;
    }
    if (src->ids.revision > md->p.revision) {
        snprintf(reason, len, "source revision %u is newer than %u here",
                 src->ids.revision, md->p.revision);
        return 0;
    }
    if (src->desc_len != (uint32_t)n ||
        memcmp(src->desc, want, (size_t)n) != 0) {
        snprintf(reason, len, "state size differs (here %zu bytes)",
                 md->p.state_size);
        return 0;
    }
    return 1;
}

static ssize_t
op_config_save(void *opaque, void *buf, size_t cap)
{
    struct vmig_memdev *md = opaque;

    if (cap < VMIG_MEMDEV_CONFIG_SIZE) {
        return -E2BIG;
    }
    vmig_memdev_config(md, buf, NULL);
    return VMIG_MEMDEV_CONFIG_SIZE;
}

static int
op_config_load(void *opaque, const void *buf, size_t len)
{
    struct vmig_memdev *md = opaque;

    if (len != VMIG_MEMDEV_CONFIG_SIZE) {
        return -EINVAL;
    }
    vmig_memdev_config(md, NULL, buf);
    return 0;
}

static int
op_reset(void *opaque)
{
    struct vmig_memdev *md = opaque;

    vmig_dev_reset(md->dev, VMIG_RESET_HOST);
    return 0;
}

static const struct vmig_engine_dev_ops memdev_ops = {
    .get_flags = op_get_flags,
    .get_state = op_get_state,
    .set_state = op_set_state,
    .read = op_read,
    .write = op_write,
    .describe = op_describe,
    .compat = op_compat,
    .config_save = op_config_save,
    .config_load = op_config_load,
    .reset = op_reset,
};

const struct vmig_engine_dev_ops *
vmig_memdev_ops(void)
{
    return &memdev_ops;
}
