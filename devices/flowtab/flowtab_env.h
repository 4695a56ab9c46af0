/* SPDX-License-Identifier: MIT */
/*
 * flowtab_env.h - the flowtab stream carried in the device-state envelope
 * (<vmig/stream.h>): one envelope record per flowtab record (type
 * FT_ENV_REC_BASE + flowtab type, MANDATORY, CHUNK also MULTI; payload =
 * the flowtab record with its header), after a DESCRIPTOR whose resource
 * parameters are the geometry (state_bytes, chunk_bytes), so that a
 * destination of another geometry refuses before any state arrives.
 *
 * Transport-independent: these are framework callbacks (<vmig/device.h>,
 * ft_env_dev_ops()) around the model's raw stream callbacks
 * (ft_model_stream_ops()), used for the device's framework object by the
 * vfio-user server (flowtab_server.c, with its hooks) and the fuzz
 * harness.  They run under the framework's lock.
 * docs/flowtab.md ("vfio-user server") describes the descriptor
 * and the sizes.
 */
#ifndef FLOWTAB_ENV_H
#define FLOWTAB_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmig/compat.h>
#include <vmig/stream.h>
#include "flowtab_model.h"

/* Descriptor identity (vmig's own vendor space). */
#define FT_ENV_VENDOR 0x00766d67u /* "vmg" */
#define FT_ENV_DEVICE_TYPE 0x46544142u
/* Envelope record types: 0x100 + the flowtab record type. */
#define FT_ENV_REC_BASE 0x100u

/**
 * struct ft_env_hooks - what the owner adds to the callbacks.
 * @quiesced: after an arc into a state that may not initiate P2P (posted
 *            writes in flight must complete).  Optional.
 * @reset:    before a device reset.  Optional.
 */
struct ft_env_hooks {
    void (*quiesced)(void *opaque);
    void (*reset)(void *opaque);
};

/**
 * struct ft_env - envelope state of one device.  Fields are private.
 */
struct ft_env {
    vmig_ctx_t *ctx;
    const struct ft_env_hooks *hooks;
    void *hooks_opaque;
    struct ft_model *m;
    uint32_t chunk;
    char p_state[24];
    char p_chunk[24];
    struct vmig_compat_kv params[2];
    struct vmig_compat_desc desc;
    uint64_t compat_bytes;
    /* saving: the writer pulls flowtab records from the model */
    struct vmig_stream_writer *w;
    enum vmig_state state; /* the device's, while the writer reads */
    uint8_t rh[sizeof(struct ft_rec_hdr)];
    size_t rh_have;    /* header bytes read from the model */
    size_t rh_given;   /* header bytes handed to the writer */
    uint64_t rec_left; /* payload bytes of the record still to read */
    /* loading */
    struct vmig_stream_loader *l;
    int load_err;
    bool finished;
};

/* Build the descriptor of @m offering @mig_flags; @hooks (borrowed) may
 * be NULL.  0 or -errno. */
int ft_env_init(struct ft_env *e, vmig_ctx_t *ctx, struct ft_model *m,
                uint32_t mig_flags, const struct ft_env_hooks *hooks,
                void *hooks_opaque);
/* Free the writer and loader. */
void ft_env_fini(struct ft_env *e);

/*
 * The framework callbacks (the opaque is the struct ft_env), with the
 * envelope around the model's stream: an arc that opens a saving session
 * prepares the writer, STOP -> RESUMING the loader, and RESUMING -> STOP
 * first requires a complete, valid envelope (END, digest, nothing
 * trailing), then lets the model validate and commit its stream.  Reads
 * give envelope bytes, 0 at the permanent end, -ENOMSG for nothing now;
 * a refused envelope stays refused.  Sizes are in envelope bytes.  A
 * reset resets the model and drops the writer and loader.
 */
const struct vmig_dev_ops *ft_env_dev_ops(void);

#endif /* FLOWTAB_ENV_H */
