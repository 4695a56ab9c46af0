/* SPDX-License-Identifier: MIT */
/*
 * acc_mig.c - the accelerator's migration callbacks (see acc_mig.h).
 *
 * Every callback runs under the framework's lock, which therefore guards
 * the session data below; the framework also decides when a session may
 * be read or written, so the callbacks only ever see an open one.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/stream.h>
#include "acc_mig.h"

struct acc_mig {
    vmig_ctx_t *ctx;
    struct acc_model *model;
    struct vmig_dev *dev;

    /* The descriptor and what it points at; constant after creation. */
    struct vmig_compat_desc desc;
    struct vmig_compat_kv params[2];
    struct vmig_compat_bad bad[1];
    uint32_t versions[1];
    char qp_str[12];
    char vendor_version[32];

    /* Guarded by the framework's lock: session data. */
    struct vmig_stream_writer *writer; /* saving: produces the envelope */
    struct vmig_stream_loader *loader; /* resuming: consumes it */
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

/* Drop the session's data. */
static void
drop_locked(struct acc_mig *am)
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

    drop_locked(am);
    ret = vmig_stream_writer_new(am->ctx, &am->desc, 0, &src_ops, am,
                                 &am->writer);
    if (ret == 0 && with_state) {
        ret = save_state_locked(am);
    }
    if (ret < 0) {
        drop_locked(am);
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

    drop_locked(am);
    am->err[0] = '\0';
    ret = vmig_stream_loader_new(am->ctx, &cfg, &am->loader);
    if (ret < 0) {
        drop_locked(am);
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
    drop_locked(am);
    return 0;
}

#define ARC(a, b) ((unsigned int)(a) << 8 | (unsigned int)(b))
#define S(x) VMIG_STATE_##x

static int
acc_step(void *opaque, enum vmig_state from, enum vmig_state to, bool *broken)
{
    struct acc_mig *am = opaque;
    int ret;

    (void)broken;
    switch (ARC(from, to)) {
    case ARC(S(RUNNING), S(STOP)):
        acc_model_stop(am->model);
        return 0;
    case ARC(S(STOP), S(RUNNING)):
        acc_model_resume(am->model);
        return 0;
    case ARC(S(RUNNING), S(PRE_COPY)):
        return open_save_locked(am, false);
    case ARC(S(PRE_COPY), S(STOP_COPY)):
        acc_model_stop(am->model);
        ret = save_state_locked(am);
        if (ret < 0) {
            acc_model_resume(am->model); /* still PRE_COPY: running */
        }
        return ret;
    case ARC(S(STOP), S(STOP_COPY)):
        return open_save_locked(am, true);
    case ARC(S(PRE_COPY), S(RUNNING)):
    case ARC(S(STOP_COPY), S(STOP)):
        drop_locked(am);
        return 0;
    case ARC(S(STOP), S(RESUMING)):
        return open_resume_locked(am);
    case ARC(S(RESUMING), S(STOP)):
        return finish_resume_locked(am);
    default:
        return -EINVAL;
    }
}

/* The envelope; the writer's "later" (-EAGAIN) is PRE_COPY's -ENOMSG. */
static ssize_t
acc_save(void *opaque, enum vmig_state state, void *buf, size_t len)
{
    struct acc_mig *am = opaque;
    ssize_t ret;

    (void)state;
    ret = vmig_stream_writer_read(am->writer, buf, len);
    return ret == -EAGAIN ? -ENOMSG : ret;
}

static int
acc_load(void *opaque, const void *buf, size_t len)
{
    struct acc_mig *am = opaque;
    int ret = vmig_stream_loader_write(am->loader, buf, len);

    return ret < 0 ? refused_locked(am, ret) : 0;
}

/* What the destination needs before any downtime: the compatibility
 * part; the device state goes only in STOP_COPY. */
static int
acc_precopy_info(void *opaque, uint64_t *initial, uint64_t *dirty)
{
    struct acc_mig *am = opaque;
    uint64_t part = vmig_stream_writer_compat_size(am->writer);
    uint64_t off = vmig_stream_writer_offset(am->writer);

    *initial = off < part ? part - off : 0;
    *dirty = 0;
    return 0;
}

static int
acc_data_size(void *opaque, uint64_t *bytes)
{
    struct acc_mig *am = opaque;
    const uint64_t rec =
        VMIG_STREAM_REC_HEADER_SIZE + VMIG_STREAM_REC_TRAILER_SIZE;
    int desc = vmig_compat_desc_to_bin(&am->desc, NULL, 0);

    *bytes = VMIG_STREAM_HEADER_SIZE + rec + (uint64_t)(desc > 0 ? desc : 0) +
             rec + acc_model_state_size(am->model) + rec +
             VMIG_STREAM_END_PAYLOAD_SIZE;
    return 0;
}

/* A guest reset already reset the model (its RESET register); a host
 * reset resets it here.  Either way a reset device runs. */
static void
acc_reset(void *opaque, enum vmig_reset_cause cause)
{
    struct acc_mig *am = opaque;

    drop_locked(am);
    if (cause == VMIG_RESET_HOST) {
        acc_model_reset(am->model); /* its callback: guest = false */
    }
    acc_model_resume(am->model);
}

static const struct vmig_dev_ops acc_dev_ops = {
    .step = acc_step,
    .save = acc_save,
    .load = acc_load,
    .reset = acc_reset,
    .precopy_info = acc_precopy_info,
    .data_size = acc_data_size,
};

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
    ret = vmig_dev_new(ctx, ACC_MIG_FLAGS, &acc_dev_ops, am, &am->dev);
    if (ret < 0) {
        free(am);
        return ret;
    }
    *out = am;
    return 0;
}

void
acc_mig_free(struct acc_mig *am)
{
    if (am == NULL) {
        return;
    }
    vmig_dev_free(am->dev);
    drop_locked(am);
    free(am);
}

struct vmig_dev *
acc_mig_dev(struct acc_mig *am)
{
    return am->dev;
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
acc_mig_model_reset(struct acc_mig *am, bool guest)
{
    if (guest) {
        vmig_dev_reset(am->dev, VMIG_RESET_GUEST);
    }
}
