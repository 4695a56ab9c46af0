/* SPDX-License-Identifier: MIT */
/*
 * flowtab_testlib.h - shared helpers of the flowtab tests: guest RAM as a
 * memfd mapping, register/DMA/peer glue, a vCPU thread and stream copying.
 */
#ifndef FLOWTAB_TESTLIB_H
#define FLOWTAB_TESTLIB_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "flowtab_model.h"
#include "ft_guest.h"

struct ft_ram {
    int fd;
    uint8_t *base;
    size_t len;
};

int ft_ram_new(struct ft_ram *r, size_t len);
void ft_ram_free(struct ft_ram *r);

/* DMA ops over a struct ft_ram (the opaque). */
extern const struct ft_dma_ops ft_ram_dma;
/* Peer ops writing into a struct ft_model's inbound window (the opaque). */
extern const struct ft_peer_ops ft_model_peer;

/* Register accessors of @d for the guest driver. */
struct ft_guest_regs ft_regs_of(struct ft_model *d);

/* A vCPU: posts to and reaps from up to two drivers until stopped. */
struct ft_vcpu {
    struct ft_guest *g[2];
    unsigned int ng;
    unsigned int fwd_every;
    unsigned int burst;
    bool stop;
    long err;
    pthread_t thread;
};

int ft_vcpu_start(struct ft_vcpu *v);
/* Stop (pause) the vCPU; returns its first error or 0. */
long ft_vcpu_stop(struct ft_vcpu *v);

/* Reap until nothing is outstanding on @g (bounded); 0 or error. */
int ft_drain(struct ft_guest *g, unsigned int timeout_ms);

/*
 * Copy the saving session of @src into the resuming session of @dst.
 * Stops at -ENOMSG (PRE_COPY, returns 0), at end of data (returns 0) or
 * after @max bytes; adds the bytes moved to *@moved.  Negative errno on a
 * read or write error.
 */
int ft_copy(struct ft_model *src, uint64_t sgen, struct ft_model *dst,
            uint64_t dgen, uint64_t max, uint64_t *moved);

/* Generation of the current/last session of @d. */
uint64_t ft_gen(struct ft_model *d);

/*
 * A reader (writer) that must stay in saving (resuming) session @gen of
 * @d, as a VMM that remembers the session it started: -EBADF once that
 * session ended or was replaced, -ENODEV after a reset cut it short;
 * otherwise vmig_dev_read() (vmig_dev_write(), returning @len).
 */
ssize_t ft_read_gen(struct ft_model *d, uint64_t gen, void *buf, size_t len);
ssize_t ft_write_gen(struct ft_model *d, uint64_t gen, const void *buf,
                     size_t len);

/* Read a whole saving session (STOP_COPY) into a malloc'd buffer. */
int ft_read_all(struct ft_model *d, uint64_t gen, uint8_t **buf, size_t *len);

#endif /* FLOWTAB_TESTLIB_H */
