/* SPDX-License-Identifier: MIT */
/*
 * flowtab_env.h - the flowtab stream carried in the device-state envelope
 * (<vmig/stream.h>): one envelope record per flowtab record (type
 * FT_ENV_REC_BASE + flowtab type, MANDATORY, CHUNK also MULTI; payload =
 * the flowtab record with its header), after a DESCRIPTOR whose resource
 * parameters are the geometry (state_bytes, chunk_bytes), so that a
 * destination of another geometry refuses before any state arrives.
 *
 * Transport-independent: the vfio-user server (flowtab_server.c) calls it
 * from its migration callbacks, and the fuzz harness drives the loading
 * side directly.  Not thread-safe: one thread at a time (the caller's
 * loop).  docs/flowtab.md §5 describes the descriptor and the sizes.
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
 * struct ft_env - envelope state of one device.  Fields are private.
 */
struct ft_env {
    vmig_ctx_t *ctx;
    struct ft_model *m;
    uint32_t chunk;
    char p_state[24];
    char p_chunk[24];
    struct vmig_compat_kv params[2];
    struct vmig_compat_desc desc;
    uint64_t compat_bytes;
    /* saving: the writer pulls flowtab records from the model */
    struct vmig_stream_writer *w;
    uint64_t sgen;
    uint8_t rh[sizeof(struct ft_rec_hdr)];
    size_t rh_have;    /* header bytes read from the model */
    size_t rh_given;   /* header bytes handed to the writer */
    uint64_t rec_left; /* payload bytes of the record still to read */
    /* loading */
    struct vmig_stream_loader *l;
    uint64_t lgen;
    int load_err;
    bool finished;
};

/* Build the descriptor of @m offering @mig_flags.  0 or -errno. */
int ft_env_init(struct ft_env *e, vmig_ctx_t *ctx, struct ft_model *m,
                uint32_t mig_flags);
/* Free the writer and loader. */
void ft_env_fini(struct ft_env *e);

/* Saving: before the arc that opens the model's session (the writer is
 * prepared); after it, with the session's generation; at its end. */
int ft_env_save_open(struct ft_env *e);
void ft_env_save_opened(struct ft_env *e, uint64_t gen);
void ft_env_save_end(struct ft_env *e);
/* > 0 bytes; 0 at the permanent end; -ENOMSG nothing for now; -errno. */
long ft_env_read(struct ft_env *e, void *buf, size_t len);

/* Loading: likewise; ft_env_load_finish() before RESUMING -> STOP checks
 * that the envelope is complete (END, digest, nothing trailing). */
int ft_env_load_open(struct ft_env *e);
void ft_env_load_opened(struct ft_env *e, uint64_t gen);
int ft_env_write(struct ft_env *e, const void *buf, size_t len);
int ft_env_load_finish(struct ft_env *e);
void ft_env_load_end(struct ft_env *e);

/* Sizes in envelope bytes (PRECOPY_INFO, MIG_DATA_SIZE). */
int ft_env_precopy_info(struct ft_env *e, uint64_t *initial, uint64_t *dirty);
int ft_env_data_size(struct ft_env *e, uint64_t *bytes);

#endif /* FLOWTAB_ENV_H */
