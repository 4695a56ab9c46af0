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
#include <vmig/stream.h>
#include "acc_mig.h"

enum sess {
    SESS_NONE = 0, /* no session; reads and writes are refused (-EBUSY) */
    SESS_SAVE,     /* am->writer produces the envelope */
    SESS_RESUME,   /* am->loader consumes it */
    SESS_ABORTED,  /* cut short by a reset: -ENODEV until the next one */
};

struct acc_mig {
    vmig_ctx_t *ctx;
    struct acc_model *model;
    struct vmig_mig *mig;
    bool in_reset;   /* atomic: acc_mig_reset() is resetting the model */
    bool model_done; /* atomic: the model has reset itself already */

    /* The descriptor and what it points at; constant after creation. */
    struct vmig_compat_desc desc;
    struct vmig_compat_kv params[2];
    struct vmig_compat_bad bad[1];
    uint32_t versions[1];
    char qp_str[12];
    char vendor_version[32];

    pthread_mutex_t lock;
    /* Guarded by lock (the stream callbacks run with it held). */
    enum sess sess;
    struct vmig_stream_writer *writer;
    struct vmig_stream_loader *loader;
    uint8_t *state; /* saved payload (SAVE) or staged payload (RESUME) */
    size_t state_len;
    size_t state_pos; /* SAVE: bytes handed to the writer */
    bool state_ready; /* SAVE: the payload exists (STOP_COPY) */
    bool state_sent;  /* SAVE: its record was announced */
    char err[256];
};

static const struct vmig_stream_rule rules[] = {
    {.type = ACC_MIG_REC_STATE,
     .flags = VMIG_RULE_REQUIRED,
     .max_len = ACC_STATE_SIZE(ACC_QP_MAX)},
};

static void
drop_locked(struct acc_mig *am, enum sess next)
{
    vmig_stream_writer_free(am->writer);
    vmig_stream_loader_free(am->loader);
    am->writer = NULL;
    am->loader = NULL;
    free(am->state);
    am->state = NULL;
    am->state_len = 0;
    am->state_pos = 0;
    am->state_ready = false;
    am->state_sent = false;
    am->sess = next;
}

/* ------------------------------------------------------------ saving */

static int
src_next(void *opaque, struct vmig_stream_record *rec)
{
    struct acc_mig *am = opaque;

    if (!am->state_ready) {
        return -EAGAIN; /* PRE_COPY: the state comes in STOP_COPY */
    }
    if (am->state_sent) {
        return 0;
    }
    am->state_sent = true;
    rec->type = ACC_MIG_REC_STATE;
    rec->flags = VMIG_RECF_MANDATORY;
    rec->len = am->state_len;
    return 1;
}

static ssize_t
src_read(void *opaque, void *buf, size_t n)
{
    struct acc_mig *am = opaque;

    if (n > am->state_len - am->state_pos) {
        n = am->state_len - am->state_pos;
    }
    memcpy(buf, am->state + am->state_pos, n);
    am->state_pos += n;
    return (ssize_t)n;
}

static const struct vmig_stream_source_ops src_ops = {
    .next = src_next,
    .read = src_read,
};

/* The model is stopped: take its state for the envelope. */
static int
save_state_locked(struct acc_mig *am)
{
    size_t cap = acc_model_state_size(am->model), len = 0;
    int ret;

    am->state = malloc(cap);
    if (am->state == NULL) {
        return -ENOMEM;
    }
    ret = acc_model_save(am->model, am->state, cap, &len);
    if (ret < 0) {
        free(am->state);
        am->state = NULL;
        return ret;
    }
    am->state_len = len;
    am->state_ready = true;
    return 0;
}

static int
open_save_locked(struct acc_mig *am, bool with_state)
{
    int ret;

    drop_locked(am, SESS_SAVE);
    ret = vmig_stream_writer_new(am->ctx, &am->desc, 0, &src_ops, am,
                                 &am->writer);
    if (ret == 0 && with_state) {
        ret = save_state_locked(am);
    }
    if (ret < 0) {
        drop_locked(am, SESS_NONE);
    }
    return ret;
}

/* ------------------------------------------------------------ resuming */

static int
sink_begin(void *opaque, const struct vmig_stream_record *rec)
{
    struct acc_mig *am = opaque;

    /* The loader enforces the rule's max_len before this is called. */
    free(am->state);
    am->state = malloc(rec->len ? rec->len : 1);
    am->state_len = 0;
    return am->state == NULL ? -ENOMEM : 0;
}

static int
sink_data(void *opaque, const void *buf, size_t n)
{
    struct acc_mig *am = opaque;

    memcpy(am->state + am->state_len, buf, n);
    am->state_len += n;
    return 0;
}

static int
sink_commit(void *opaque)
{
    struct acc_mig *am = opaque;
    char why[200];
    int ret;

    ret = acc_model_load(am->model, am->state, am->state_len, why, sizeof(why));
    if (ret < 0) {
        snprintf(am->err, sizeof(am->err), "%s", why);
    }
    return ret;
}

static void
sink_abort(void *opaque)
{
    struct acc_mig *am = opaque;

    free(am->state);
    am->state = NULL;
    am->state_len = 0;
}

static const struct vmig_stream_sink_ops sink_ops = {
    .begin = sink_begin,
    .data = sink_data,
    .commit = sink_commit,
    .abort = sink_abort,
};

static int
open_resume_locked(struct acc_mig *am)
{
    struct vmig_stream_loader_cfg cfg = {
        .local = &am->desc,
        .rules = rules,
        .n_rules = 1,
        .sink = &sink_ops,
        .sink_opaque = am,
    };
    int ret;

    drop_locked(am, SESS_RESUME);
    am->err[0] = '\0';
    ret = vmig_stream_loader_new(am->ctx, &cfg, &am->loader);
    if (ret < 0) {
        drop_locked(am, SESS_NONE);
    }
    return ret;
}

/* The loader failed with @ret: keep its reason unless the model gave one. */
static int
refused_locked(struct acc_mig *am, int ret)
{
    if (am->err[0] == '\0') {
        snprintf(am->err, sizeof(am->err), "%s",
                 vmig_stream_loader_error(am->loader, NULL));
    }
    vmig_log(am->ctx, VMIG_LOG_ERR, "incoming device state refused: %s",
             am->err);
    return ret;
}

static int
finish_resume_locked(struct acc_mig *am)
{
    int ret;

    if (am->loader == NULL) {
        return -EINVAL;
    }
    ret = vmig_stream_loader_finish(am->loader);
    if (ret < 0) {
        return refused_locked(am, ret);
    }
    drop_locked(am, SESS_NONE);
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
        ret = save_state_locked(am);
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
        ret = open_resume_locked(am);
        pthread_mutex_unlock(&am->lock);
        return ret;
    case ARC(S(RESUMING), S(STOP)):
        pthread_mutex_lock(&am->lock);
        ret = finish_resume_locked(am);
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

int
acc_mig_step(struct acc_mig *am, enum vmig_state from, enum vmig_state to,
             bool *broken)
{
    return step(am, from, to, broken);
}

void
acc_mig_ext_reset(struct acc_mig *am, bool model_done)
{
    __atomic_store_n(&am->model_done, model_done, __ATOMIC_RELEASE);
    mig_reset(am);
    __atomic_store_n(&am->model_done, false, __ATOMIC_RELEASE);
}

static void
build_desc(struct acc_mig *am)
{
    struct acc_match_info mi;

    acc_model_match_info(am->model, &mi);
    snprintf(am->qp_str, sizeof(am->qp_str), "%u", mi.qp_count);
    snprintf(am->vendor_version, sizeof(am->vendor_version), "%04x:%04x rev %u",
             ACC_PCI_VENDOR_ID, ACC_PCI_DEVICE_ID, ACC_HW_REVISION);
    am->params[0].key = "isolation";
    am->params[0].value = mi.isolation == ACC_ISO_QP ? "queue-pair" : "device";
    am->params[1].key = "qp-count";
    am->params[1].value = am->qp_str;
    am->bad[0].version = 1;
    am->bad[0].reason = ACC_MIG_BAD_V1_REASON;
    am->versions[0] = ACC_STATE_VERSION;
    am->desc = (struct vmig_compat_desc){
        .vendor_id = VMIG_VENDOR_PCI(ACC_PCI_VENDOR_ID),
        .device_type = ACC_PCI_DEVICE_ID,
        .generation = ACC_HW_REVISION,
        .mig_flags = VMIG_MIGF_STOP_COPY | VMIG_MIGF_PRE_COPY,
        .stream_version = ACC_STATE_VERSION,
        .vendor_version = am->vendor_version,
        .produced = am->versions,
        .n_produced = 1,
        .accepted = am->versions,
        .n_accepted = 1,
        .known_bad = am->bad,
        .n_known_bad = 1,
        .params = am->params,
        .n_params = 2,
    };
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
    build_desc(am);
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
    drop_locked(am, SESS_NONE);
    pthread_mutex_destroy(&am->lock);
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
    } else if (len == 0) {
        ret = 0;
    } else {
        ret = vmig_stream_writer_read(am->writer, buf, len);
        if (ret == -EAGAIN) {
            ret = -ENOMSG; /* PRE_COPY: no more for now */
        }
    }
    pthread_mutex_unlock(&am->lock);
    return ret;
}

ssize_t
acc_mig_write(struct acc_mig *am, const void *buf, size_t len)
{
    ssize_t ret;
    int rc;

    pthread_mutex_lock(&am->lock);
    if (am->sess == SESS_ABORTED) {
        ret = -ENODEV;
    } else if (am->sess != SESS_RESUME) {
        ret = -EBUSY;
    } else {
        rc = vmig_stream_loader_write(am->loader, buf, len);
        ret = rc < 0 ? refused_locked(am, rc) : (ssize_t)len;
    }
    pthread_mutex_unlock(&am->lock);
    return ret;
}

int
acc_mig_precopy_info(struct acc_mig *am, uint64_t *initial, uint64_t *dirty)
{
    int ret = 0;

    pthread_mutex_lock(&am->lock);
    if (am->sess != SESS_SAVE || am->state_ready) {
        ret = -EINVAL;
    } else {
        uint64_t part = vmig_stream_writer_compat_size(am->writer);
        uint64_t off = vmig_stream_writer_offset(am->writer);

        *initial = off < part ? part - off : 0;
        *dirty = 0;
    }
    pthread_mutex_unlock(&am->lock);
    return ret;
}

uint64_t
acc_mig_data_size(const struct acc_mig *am)
{
    const uint64_t rec =
        VMIG_STREAM_REC_HEADER_SIZE + VMIG_STREAM_REC_TRAILER_SIZE;
    int desc = vmig_compat_desc_to_bin(&am->desc, NULL, 0);

    return VMIG_STREAM_HEADER_SIZE + rec + (uint64_t)(desc > 0 ? desc : 0) +
           rec + acc_model_state_size(am->model) + rec +
           VMIG_STREAM_END_PAYLOAD_SIZE;
}

const struct vmig_compat_desc *
acc_mig_descriptor(const struct acc_mig *am)
{
    return &am->desc;
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
