/* SPDX-License-Identifier: MIT */
/*
 * acc_mig.c - the accelerator's migration driver (see acc_mig.h).
 *
 * Lock order: the state machine's lock (held while an arc runs), then
 * am->lock.  acc_mig_read/write take only am->lock, so they never wait
 * for an arc in progress longer than it takes to swap a buffer.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/mig.h>
#include "acc_mig.h"

enum sess {
    SESS_NONE = 0, /* no session; reads and writes are refused (-EBUSY) */
    SESS_SAVE,     /* buf[pos..len) is unread; final once STOP_COPY */
    SESS_RESUME,   /* buf[0..len) received so far */
    SESS_ABORTED,  /* cut short by a reset: -ENODEV until the next one */
};

#define REC_HDR 8u

struct acc_mig {
    vmig_ctx_t *ctx;
    struct acc_model *model;
    struct vmig_mig *mig;
    bool in_reset;   /* atomic: acc_mig_reset() is resetting the model */
    bool model_done; /* atomic: the model has reset itself already */

    pthread_mutex_t lock;
    /* Guarded by lock. */
    enum sess sess;
    bool final;
    uint8_t *buf;
    size_t len;
    size_t pos;
    bool compat_ok;
    int refused; /* 0, or the errno every later write returns */
    char err[256];
};

static void
put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint32_t
get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void
drop_locked(struct acc_mig *am, enum sess next)
{
    free(am->buf);
    am->buf = NULL;
    am->len = 0;
    am->pos = 0;
    am->final = false;
    am->compat_ok = false;
    am->refused = 0;
    am->sess = next;
}

/* Append one record; @body NULL means "the model's saved state". */
static int
append_locked(struct acc_mig *am, uint32_t type, const void *body,
              size_t body_len)
{
    uint8_t *p = realloc(am->buf, am->len + REC_HDR + body_len);
    size_t got = 0;
    int ret;

    if (p == NULL) {
        return -ENOMEM;
    }
    am->buf = p;
    p += am->len;
    put32(p, type);
    put32(p + 4, (uint32_t)body_len);
    if (body != NULL) {
        memcpy(p + REC_HDR, body, body_len);
    } else {
        ret = acc_model_save(am->model, p + REC_HDR, body_len, &got);
        if (ret < 0) {
            return ret;
        }
    }
    am->len += REC_HDR + body_len;
    return 0;
}

static void
compat_encode(const struct acc_match_info *mi, uint8_t *p)
{
    p[0] = (uint8_t)mi->vendor;
    p[1] = (uint8_t)(mi->vendor >> 8);
    p[2] = (uint8_t)mi->device;
    p[3] = (uint8_t)(mi->device >> 8);
    put32(p + 4, mi->qp_count);
    put32(p + 8, mi->isolation);
    put32(p + 12, mi->version);
}

static void
compat_decode(const uint8_t *p, struct acc_match_info *mi)
{
    mi->vendor = (uint16_t)(p[0] | p[1] << 8);
    mi->device = (uint16_t)(p[2] | p[3] << 8);
    mi->qp_count = get32(p + 4);
    mi->isolation = get32(p + 8);
    mi->version = get32(p + 12);
}

static int
open_save_locked(struct acc_mig *am, bool with_state)
{
    struct acc_match_info mi;
    uint8_t rec[ACC_MIG_COMPAT_SIZE];
    int ret;

    drop_locked(am, SESS_SAVE);
    acc_model_match_info(am->model, &mi);
    compat_encode(&mi, rec);
    ret = append_locked(am, ACC_MIG_REC_COMPAT, rec, sizeof(rec));
    if (ret == 0 && with_state) {
        ret = append_locked(am, ACC_MIG_REC_STATE, NULL,
                            acc_model_state_size(am->model));
        am->final = ret == 0;
    }
    if (ret < 0) {
        drop_locked(am, SESS_NONE);
    }
    return ret;
}

static int refuse_locked(struct acc_mig *am, int ret, const char *fmt, ...)
    VMIG_PRINTF(3, 4);

static int
refuse_locked(struct acc_mig *am, int ret, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(am->err, sizeof(am->err), fmt, ap);
    va_end(ap);
    vmig_log(am->ctx, VMIG_LOG_ERR, "incoming device state refused: %s",
             am->err);
    return ret;
}

/* The compatibility record, once complete; run on every write. */
static int
check_compat_locked(struct acc_mig *am)
{
    struct acc_match_info src, dst;
    char why[200];
    int ret;

    if (am->compat_ok || am->len < REC_HDR) {
        return 0;
    }
    if (get32(am->buf) != ACC_MIG_REC_COMPAT ||
        get32(am->buf + 4) != ACC_MIG_COMPAT_SIZE) {
        return refuse_locked(am, -EBADMSG,
                             "the stream does not start with a "
                             "compatibility record (type %u, %u bytes)",
                             get32(am->buf), get32(am->buf + 4));
    }
    if (am->len < REC_HDR + ACC_MIG_COMPAT_SIZE) {
        return 0;
    }
    compat_decode(am->buf + REC_HDR, &src);
    acc_model_match_info(am->model, &dst);
    ret = acc_check_match(&dst, &src, why, sizeof(why));
    if (ret < 0) {
        return refuse_locked(am, ret, "%s", why);
    }
    am->compat_ok = true;
    return 0;
}

static int
load_locked(struct acc_mig *am)
{
    size_t off = REC_HDR + ACC_MIG_COMPAT_SIZE;
    char why[200];
    uint32_t type, len;
    int ret;

    if (am->refused != 0) {
        return am->refused; /* am->err already says why */
    }
    if (!am->compat_ok) {
        return refuse_locked(am, -EBADMSG,
                             "the stream ended inside the compatibility "
                             "record (%zu bytes)",
                             am->len);
    }
    if (am->len - off < REC_HDR) {
        return refuse_locked(am, -EBADMSG,
                             "the stream ended before the state record");
    }
    type = get32(am->buf + off);
    len = get32(am->buf + off + 4);
    if (type != ACC_MIG_REC_STATE) {
        return refuse_locked(am, -EBADMSG,
                             "record type %u where the state record belongs",
                             type);
    }
    if (len != am->len - off - REC_HDR) {
        return refuse_locked(am, -EBADMSG,
                             "state record of %u bytes, but %zu follow", len,
                             am->len - off - REC_HDR);
    }
    ret = acc_model_load(am->model, am->buf + off + REC_HDR, len, why,
                         sizeof(why));
    if (ret < 0) {
        return refuse_locked(am, ret, "%s", why);
    }
    return 0;
}

#define ARC(a, b) ((unsigned int)(a) << 8 | (unsigned int)(b))
#define S(x) VMIG_STATE_##x

static int
step(void *opaque, enum vmig_state from, enum vmig_state to, bool *broken)
{
    struct acc_mig *am = opaque;
    int ret = 0;

    (void)broken;
    switch (ARC(from, to)) {
    case ARC(S(RUNNING), S(STOP)):
        acc_model_stop(am->model);
        return 0;
    case ARC(S(STOP), S(RUNNING)):
        acc_model_resume(am->model);
        return 0;
    case ARC(S(RUNNING), S(PRE_COPY)):
        pthread_mutex_lock(&am->lock);
        ret = open_save_locked(am, false);
        pthread_mutex_unlock(&am->lock);
        return ret;
    case ARC(S(PRE_COPY), S(STOP_COPY)):
        acc_model_stop(am->model);
        pthread_mutex_lock(&am->lock);
        ret = append_locked(am, ACC_MIG_REC_STATE, NULL,
                            acc_model_state_size(am->model));
        am->final = ret == 0;
        pthread_mutex_unlock(&am->lock);
        if (ret < 0) {
            acc_model_resume(am->model); /* still PRE_COPY: running */
        }
        return ret;
    case ARC(S(STOP), S(STOP_COPY)):
        pthread_mutex_lock(&am->lock);
        ret = open_save_locked(am, true);
        pthread_mutex_unlock(&am->lock);
        return ret;
    case ARC(S(PRE_COPY), S(RUNNING)):
    case ARC(S(STOP_COPY), S(STOP)):
        pthread_mutex_lock(&am->lock);
        drop_locked(am, SESS_NONE);
        pthread_mutex_unlock(&am->lock);
        return 0;
    case ARC(S(STOP), S(RESUMING)):
        pthread_mutex_lock(&am->lock);
        drop_locked(am, SESS_RESUME);
        am->err[0] = '\0';
        pthread_mutex_unlock(&am->lock);
        return 0;
    case ARC(S(RESUMING), S(STOP)):
        pthread_mutex_lock(&am->lock);
        ret = load_locked(am);
        if (ret == 0) {
            drop_locked(am, SESS_NONE);
        }
        pthread_mutex_unlock(&am->lock);
        return ret;
    default:
        return -EINVAL;
    }
}

static void
mig_reset(void *opaque)
{
    struct acc_mig *am = opaque;

    pthread_mutex_lock(&am->lock);
    drop_locked(am, am->sess == SESS_NONE ? SESS_NONE : SESS_ABORTED);
    pthread_mutex_unlock(&am->lock);
    if (!__atomic_load_n(&am->model_done, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&am->in_reset, true, __ATOMIC_RELEASE);
        acc_model_reset(am->model);
        __atomic_store_n(&am->in_reset, false, __ATOMIC_RELEASE);
    }
    /* Whatever raced with the reset, a reset device runs. */
    acc_model_resume(am->model);
}

static const struct vmig_mig_ops mig_ops = {
    .step = step,
    .reset = mig_reset,
};

int
acc_mig_new(vmig_ctx_t *ctx, struct acc_model *model, struct acc_mig **out)
{
    struct acc_mig *am;
    int ret;

    if (model == NULL || out == NULL) {
        return -EINVAL;
    }
    am = calloc(1, sizeof(*am));
    if (am == NULL) {
        return -ENOMEM;
    }
    am->ctx = ctx;
    am->model = model;
    ret = -pthread_mutex_init(&am->lock, NULL);
    if (ret < 0) {
        goto err_free;
    }
    ret = vmig_mig_new(ctx, ACC_MIG_FLAGS, &mig_ops, am, &am->mig);
    if (ret < 0) {
        goto err_lock;
    }
    *out = am;
    return 0;

err_lock:
    pthread_mutex_destroy(&am->lock);
err_free:
    free(am);
    return ret;
}

void
acc_mig_free(struct acc_mig *am)
{
    if (am == NULL) {
        return;
    }
    vmig_mig_free(am->mig);
    pthread_mutex_destroy(&am->lock);
    free(am->buf);
    free(am);
}

enum vmig_state
acc_mig_state(struct acc_mig *am)
{
    return vmig_mig_state(am->mig);
}

int
acc_mig_set_state(struct acc_mig *am, unsigned int target)
{
    return vmig_mig_set_state(am->mig, target);
}

ssize_t
acc_mig_read(struct acc_mig *am, void *buf, size_t len)
{
    ssize_t ret;

    pthread_mutex_lock(&am->lock);
    if (am->sess == SESS_ABORTED) {
        ret = -ENODEV;
    } else if (am->sess != SESS_SAVE) {
        ret = -EBUSY;
    } else if (am->pos == am->len) {
        ret = am->final ? 0 : -ENOMSG;
    } else {
        size_t n = am->len - am->pos < len ? am->len - am->pos : len;

        memcpy(buf, am->buf + am->pos, n);
        am->pos += n;
        ret = (ssize_t)n;
    }
    pthread_mutex_unlock(&am->lock);
    return ret;
}

ssize_t
acc_mig_write(struct acc_mig *am, const void *buf, size_t len)
{
    uint8_t *p;
    ssize_t ret;

    pthread_mutex_lock(&am->lock);
    if (am->sess == SESS_ABORTED) {
        ret = -ENODEV;
        goto out;
    }
    if (am->sess != SESS_RESUME) {
        ret = -EBUSY;
        goto out;
    }
    if (am->refused != 0) {
        ret = am->refused;
        goto out;
    }
    if (len > ACC_MIG_RESUME_MAX - am->len) {
        ret = am->refused =
            refuse_locked(am, -E2BIG, "more than %u bytes of device state",
                          ACC_MIG_RESUME_MAX);
        goto out;
    }
    p = realloc(am->buf, am->len + len + 1);
    if (p == NULL) {
        ret = -ENOMEM;
        goto out;
    }
    am->buf = p;
    memcpy(am->buf + am->len, buf, len);
    am->len += len;
    ret = check_compat_locked(am);
    if (ret < 0) {
        am->refused = (int)ret;
        goto out;
    }
    ret = (ssize_t)len;
out:
    pthread_mutex_unlock(&am->lock);
    return ret;
}

int
acc_mig_precopy_info(struct acc_mig *am, uint64_t *initial, uint64_t *dirty)
{
    int ret = 0;

    pthread_mutex_lock(&am->lock);
    if (am->sess != SESS_SAVE || am->final) {
        ret = -EINVAL;
    } else {
        *initial = am->len - am->pos;
        *dirty = 0;
    }
    pthread_mutex_unlock(&am->lock);
    return ret;
}

uint64_t
acc_mig_data_size(const struct acc_mig *am)
{
    return 2 * REC_HDR + ACC_MIG_COMPAT_SIZE + acc_model_state_size(am->model);
}

const char *
acc_mig_last_error(struct acc_mig *am)
{
    return am->err;
}

void
acc_mig_reset(struct acc_mig *am)
{
    vmig_mig_reset(am->mig);
}

void
acc_mig_model_reset(struct acc_mig *am, bool guest)
{
    if (__atomic_load_n(&am->in_reset, __ATOMIC_ACQUIRE)) {
        return; /* our own acc_model_reset() calling back */
    }
    vmig_log(am->ctx, VMIG_LOG_NOTICE, "%s device reset in %s",
             guest ? "guest-initiated" : "host",
             vmig_state_name(vmig_mig_state(am->mig)));
    __atomic_store_n(&am->model_done, true, __ATOMIC_RELEASE);
    vmig_mig_reset(am->mig);
    __atomic_store_n(&am->model_done, false, __ATOMIC_RELEASE);
}
