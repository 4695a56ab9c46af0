/* SPDX-License-Identifier: MIT */
/*
 * engine_chan_vm.h - the fixture of the parallel-channel tests
 * (test_engine_chan, test_engine_chan_peer): two VMs of engine_vm.h with
 * three devices each, the source opening its extra connections through
 * the VMM ops (optionally through a proxy that cuts one), and a
 * destination thread handing every further connection it accepts to
 * vmig_engine_accept_chan().
 */
#ifndef VMIG_TESTS_ENGINE_CHAN_VM_H
#define VMIG_TESTS_ENGINE_CHAN_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <vmig/engine.h>
#include "engine_vm.h"

#define RAM_SIZE (16u << 20)
#define DEV_STATE (6u << 20)
#define NDEV 3

/*
 * Every wait on a peer (the engines' peer timeout, a channel's HELLO, a
 * hostile peer's answer, the cut proxy's idle wait) only bounds a hang:
 * no test waits for one to expire (a cut closes its connections).  At 20 s, a
 * source starved under ThreadSanitizer on a loaded machine (load 25 on two
 * cores) was silent on its main connection for longer while its extra channels
 * carried the device states; the destination gave up ("the source was silent
 * for 20000 ms") and the source's channels failed with EPIPE.
 */
#define CHAN_PEER_TIMEOUT_MS 120000

/* What a channel test adds to its VMs (tvm.ext). */
struct chx {
    /* source side: where extra channels connect, how many were opened */
    int port;
    int opened;
    int (*pre_open)(struct tvm *vm, unsigned int index);
    /* a cut: channel @cut_index goes through a proxy that closes both
     * ends after @cut_after bytes (0: no cut) */
    unsigned int cut_index;
    uint64_t cut_after;
    /* the extra channels' send buffers (0: the system's) */
    int sndbuf;
    pthread_t cut_th;
    bool cut_live;
};

#define CHX(vm) ((struct chx *)(vm)->ext)

#define MAX_ACCEPTS 16

/* The destination's side of one migration (its result, the accept
 * results). */
struct dst_side {
    struct tvm *vm;
    int lfd;
    int ret;
    int in_done; /* atomic */
    int naccept;
    int accept_ret[MAX_ACCEPTS];
    pthread_t th, in_th;
    int main_fd;
};

/* The number of connections (channels) of @vm's migrations. */
void set_channels(struct tvm *vm, unsigned int n);
/* A VM with @channels channels, its devices and VM ops given (NULL: the
 * memdev's and the fixture's). */
struct tvm *tvm_new_ops(const char *name, bool program, uint64_t seed,
                        unsigned int channels,
                        const struct vmig_engine_dev_ops *dev_ops,
                        const struct vmig_engine_vm_ops *vm_ops);
struct tvm *tvm_new(const char *name, bool program, uint64_t seed,
                    unsigned int channels);
/* The peer timeout of @vm's engine. */
void set_peer_timeout(struct tvm *vm, unsigned int ms);
/* Migrate @src to @dst; the destination's side in @j. */
int migrate(struct tvm *src, struct tvm *dst, struct dst_side *j);
/* Everything moved, both engines completed, every device's state sent. */
void check_landed(struct tvm *src, struct tvm *dst);
/* Migrate @src to @dst and check it landed (check_landed()); on a failure
 * both sides' errors are printed first.  The source's stats in @st when
 * not NULL. */
void migrate_lands(struct tvm *src, struct tvm *dst,
                   struct vmig_engine_stats *st);
/* The destination of a failed migration kept nothing: never resumed, and
 * every device reset to RUNNING, with none of the source's state. */
void check_discarded(const struct tvm *dst);

#endif
