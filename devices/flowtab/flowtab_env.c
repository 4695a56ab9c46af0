/* SPDX-License-Identifier: MIT */
/*
 * flowtab_env.c - the flowtab stream inside the device-state envelope.
 *
 * Saving: the envelope writer pulls records through src_next()/src_read():
 * next() reads the 24-byte flowtab record header from the model's saving
 * session (the model's save callback), read() hands out that header and then
 * the record's payload straight from the model.  The model's "no more for now"
 * (-ENOMSG) is the writer's -EAGAIN; the model's end of data (after its END
 * record) is the writer's "no more records", so the envelope END follows.
 *
 * Loading: the envelope loader checks header, descriptor (IS_COMPATIBLE
 * against this device's descriptor), record order, every checksum, and
 * feeds each record's payload to the model's staging copy
 * (the model's load callback), which parses and checks it again; nothing
 * reaches the device state before RESUMING -> STOP.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "flowtab_env.h"

#define REC_HDR sizeof(struct ft_rec_hdr)
/* Envelope bytes around each record: header + trailer. */
#define ENV_REC_OVERHEAD                                                       \
    (VMIG_STREAM_REC_HEADER_SIZE + VMIG_STREAM_REC_TRAILER_SIZE)
#define ENV_END_BYTES (ENV_REC_OVERHEAD + VMIG_STREAM_END_PAYLOAD_SIZE)

int
ft_env_init(struct ft_env *e, vmig_ctx_t *ctx, struct ft_model *m,
            uint32_t mig_flags, const struct ft_env_hooks *hooks,
            void *hooks_opaque)
{
    int n;

    memset(e, 0, sizeof(*e));
    e->ctx = ctx;
    e->hooks = hooks;
    e->hooks_opaque = hooks_opaque;
    e->m = m;
    e->chunk = ft_model_chunk_bytes(m);
    snprintf(e->p_state, sizeof(e->p_state), "%" PRIu64,
             ft_model_state_bytes(m));
    snprintf(e->p_chunk, sizeof(e->p_chunk), "%u", e->chunk);
    e->params[0].key = "state_bytes";
    e->params[0].value = e->p_state;
    e->params[1].key = "chunk_bytes";
    e->params[1].value = e->p_chunk;
    e->desc.vendor_id = FT_ENV_VENDOR;
    e->desc.device_type = FT_ENV_DEVICE_TYPE;
    e->desc.generation = 1;
    e->desc.mig_flags = mig_flags;
    e->desc.stream_version = FT_STREAM_VERSION;
    e->desc.vendor_version = "flowtab-1";
    e->desc.params = e->params;
    e->desc.n_params = 2;
    n = vmig_compat_desc_to_bin(&e->desc, NULL, 0);
    if (n < 0) {
        return n;
    }
    e->compat_bytes = VMIG_STREAM_HEADER_SIZE + ENV_REC_OVERHEAD + (unsigned)n;
    return 0;
}

static void save_end(struct ft_env *e);
static void load_end(struct ft_env *e);

void
ft_env_fini(struct ft_env *e)
{
    save_end(e);
    load_end(e);
}

/* ------------------------------------------------------------ saving */

/* Envelope source: describe the next flowtab record. */
static int
src_next(void *opaque, struct vmig_stream_record *rec)
{
    struct ft_env *e = opaque;
    struct ft_rec_hdr h;

    while (e->rh_have < REC_HDR) {
        ssize_t n = ft_model_stream_ops()->save(
            e->m, e->state, e->rh + e->rh_have, REC_HDR - e->rh_have);

        if (n == -ENOMSG) {
            return -EAGAIN;
        }
        if (n == 0) {
            return e->rh_have == 0 ? 0 : -EPROTO;
        }
        if (n < 0) {
            return (int)n;
        }
        e->rh_have += (size_t)n;
    }
    memcpy(&h, e->rh, sizeof(h));
    if (h.type < FT_REC_HDR || h.type > FT_REC_END) {
        return -EPROTO;
    }
    rec->type = FT_ENV_REC_BASE + h.type;
    rec->flags =
        VMIG_RECF_MANDATORY | (h.type == FT_REC_CHUNK ? VMIG_RECF_MULTI : 0u);
    rec->len = REC_HDR + h.len;
    e->rh_given = 0;
    e->rec_left = h.len;
    return 1;
}

static ssize_t
src_read(void *opaque, void *buf, size_t n)
{
    struct ft_env *e = opaque;
    ssize_t r;

    if (e->rh_given < REC_HDR) {
        size_t k = REC_HDR - e->rh_given < n ? REC_HDR - e->rh_given : n;

        memcpy(buf, e->rh + e->rh_given, k);
        e->rh_given += k;
        if (e->rh_given == REC_HDR && e->rec_left == 0) {
            e->rh_have = 0;
        }
        return (ssize_t)k;
    }
    r = ft_model_stream_ops()->save(e->m, e->state, buf,
                                    n < e->rec_left ? n : e->rec_left);
    if (r == -ENOMSG) {
        return -EAGAIN;
    }
    if (r == 0) {
        return -EPROTO; /* the model ended inside a record */
    }
    if (r > 0) {
        e->rec_left -= (uint64_t)r;
        if (e->rec_left == 0) {
            e->rh_have = 0; /* next record */
        }
    }
    return r;
}

static const struct vmig_stream_source_ops src_ops = {
    .next = src_next,
    .read = src_read,
};

static int
save_open(struct ft_env *e)
{
    save_end(e);
    e->rh_have = e->rh_given = 0;
    e->rec_left = 0;
    return vmig_stream_writer_new(e->ctx, &e->desc, 0, &src_ops, e, &e->w);
}

static void
save_end(struct ft_env *e)
{
    vmig_stream_writer_free(e->w);
    e->w = NULL;
}

static ssize_t
env_save(void *opaque, enum vmig_state state, void *buf, size_t len)
{
    struct ft_env *e = opaque;
    ssize_t n;

    if (e->w == NULL) {
        return -EBUSY;
    }
    e->state = state;
    n = vmig_stream_writer_read(e->w, buf, len);
    return n == -EAGAIN ? -ENOMSG : n;
}

/* Stream bytes of @model flowtab bytes once wrapped in the envelope. */
static uint64_t
env_bytes(const struct ft_env *e, uint64_t model)
{
    uint64_t per = REC_HDR + e->chunk;

    return model + (model + per - 1) / per * ENV_REC_OVERHEAD;
}

static uint64_t
compat_left(const struct ft_env *e)
{
    uint64_t off;

    if (e->w == NULL) {
        return e->compat_bytes;
    }
    off = vmig_stream_writer_offset(e->w);
    return off < e->compat_bytes ? e->compat_bytes - off : 0;
}

static int
env_precopy_info(void *opaque, uint64_t *initial, uint64_t *dirty)
{
    struct ft_env *e = opaque;
    uint64_t i, d;
    int ret;

    ret = ft_model_stream_ops()->precopy_info(e->m, &i, &d);
    if (ret < 0) {
        return ret;
    }
    *initial = env_bytes(e, i) + compat_left(e);
    *dirty = env_bytes(e, d);
    return 0;
}

static int
env_data_size(void *opaque, uint64_t *bytes)
{
    struct ft_env *e = opaque;
    uint64_t s;
    int ret;

    ret = ft_model_stream_ops()->data_size(e->m, &s);
    if (ret < 0) {
        return ret;
    }
    *bytes = env_bytes(e, s) + compat_left(e) + ENV_END_BYTES;
    return 0;
}

/* ------------------------------------------------------------ loading */

static int
sink_data(void *opaque, const void *buf, size_t n)
{
    struct ft_env *e = opaque;

    return ft_model_stream_ops()->load(e->m, buf, n);
}

static const struct vmig_stream_sink_ops sink_ops = {.data = sink_data};

/* clang-format off */
static const struct vmig_stream_rule load_rules[] = {
    {FT_ENV_REC_BASE + FT_REC_HDR, VMIG_RULE_REQUIRED,
     REC_HDR + sizeof(struct ft_rec_stream_hdr)},
    {FT_ENV_REC_BASE + FT_REC_CHUNK, VMIG_RULE_MULTI,
     REC_HDR + FT_MAX_CHUNK_BYTES},
    {FT_ENV_REC_BASE + FT_REC_END, VMIG_RULE_REQUIRED,
     REC_HDR + sizeof(struct ft_rec_end)},
};
/* clang-format on */

static int
load_open(struct ft_env *e)
{
    struct vmig_stream_loader_cfg lc = {
        .local = &e->desc,
        .rules = load_rules,
        .n_rules = sizeof(load_rules) / sizeof(load_rules[0]),
        .sink = &sink_ops,
        .sink_opaque = e,
    };

    load_end(e);
    return vmig_stream_loader_new(e->ctx, &lc, &e->l);
}

/* Consume envelope bytes; once refused, refused for good. */
static int
env_load(void *opaque, const void *buf, size_t len)
{
    struct ft_env *e = opaque;

    if (e->l == NULL) {
        return -EBUSY;
    }
    if (e->load_err < 0) {
        return e->load_err;
    }
    e->load_err = vmig_stream_loader_write(e->l, buf, len);
    if (e->load_err < 0) {
        vmig_log(e->ctx, VMIG_LOG_ERR, "flowtab: incoming state refused: %s",
                 vmig_stream_loader_error(e->l, NULL));
    }
    return e->load_err;
}

static int
load_finish(struct ft_env *e)
{
    if (e->l == NULL) {
        return -EBADMSG;
    }
    if (e->finished) {
        return 0; /* a retried RESUMING -> STOP */
    }
    if (e->load_err == 0) {
        e->load_err = vmig_stream_loader_finish(e->l);
        if (e->load_err < 0) {
            vmig_log(e->ctx, VMIG_LOG_ERR,
                     "flowtab: incoming state incomplete: %s",
                     vmig_stream_loader_error(e->l, NULL));
        }
    }
    e->finished = e->load_err == 0;
    return e->load_err;
}

static void
load_end(struct ft_env *e)
{
    vmig_stream_loader_free(e->l);
    e->l = NULL;
    e->load_err = 0;
    e->finished = false;
}

/* ------------------------------------------------------------ arcs */

static int
env_step(void *opaque, enum vmig_state from, enum vmig_state to, bool *broken)
{
    struct ft_env *e = opaque;
    enum vmig_arc_kind kind = vmig_arc_classify(from, to);
    int ret = 0;

    if (kind == VMIG_ARC_OPEN_SAVE) {
        ret = save_open(e);
    } else if (kind == VMIG_ARC_OPEN_RESUME) {
        ret = load_open(e);
    } else if (kind == VMIG_ARC_END_RESUME) {
        ret = load_finish(e); /* the envelope first: END, nothing after */
    }
    if (ret < 0) {
        return ret;
    }
    ret = ft_model_stream_ops()->step(e->m, from, to, broken);
    if (ret < 0) {
        if (kind == VMIG_ARC_OPEN_SAVE) {
            save_end(e);
        } else if (kind == VMIG_ARC_OPEN_RESUME) {
            load_end(e);
        }
        return ret;
    }
    if (kind == VMIG_ARC_END_SAVE) {
        save_end(e);
    } else if (kind == VMIG_ARC_END_RESUME) {
        load_end(e);
    }
    if (to != VMIG_STATE_RUNNING && to != VMIG_STATE_PRE_COPY &&
        e->hooks != NULL && e->hooks->quiesced != NULL) {
        e->hooks->quiesced(e->hooks_opaque);
    }
    return 0;
}

static void
env_reset(void *opaque, enum vmig_reset_cause cause)
{
    struct ft_env *e = opaque;

    if (e->hooks != NULL && e->hooks->reset != NULL) {
        e->hooks->reset(e->hooks_opaque);
    }
    ft_model_stream_ops()->reset(e->m, cause);
    save_end(e);
    load_end(e);
}

static const struct vmig_dev_ops env_ops = {
    .step = env_step,
    .save = env_save,
    .load = env_load,
    .reset = env_reset,
    .precopy_info = env_precopy_info,
    .data_size = env_data_size,
};

const struct vmig_dev_ops *
ft_env_dev_ops(void)
{
    return &env_ops;
}
