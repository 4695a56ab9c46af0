/* SPDX-License-Identifier: MIT */
/*
 * conform.h - `vmig conform`: drive a VFIO migration device through the
 * rules a VMM relies on and report one row per rule.
 *
 * The rules are transport-neutral and reach the device only through
 * struct cf_ops: a vfio-user server today (conform_vfu.c), a kernel VFIO
 * cdev later (the same ops over VFIO_DEVICE_FEATURE and the data fd).  A
 * transport adds rules of its own (message formats, hostile inputs)
 * through ops->transport_rules and ops->hostile_rules.
 *
 * A rule's row says PASS, FAIL (what was seen, and the clause of the
 * vfio-user specification or the kernel uAPI it breaks) or SKIP (the
 * device does not advertise the feature).
 */
#ifndef VMIG_CONFORM_H
#define VMIG_CONFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <vmig/ctx.h>

struct cf;

enum cf_verdict { CF_PASS = 0, CF_FAIL, CF_SKIP, CF__COUNT };

struct cf_row {
    char rule[96];
    const char *clause; /* static text */
    enum cf_verdict verdict;
    char seen[512];
};

/*
 * What a transport provides.  @t is the transport's target (one device
 * instance).  Every op returns 0 (or a count) or -errno; the device's own
 * refusal comes back as its errno.
 */
struct cf_ops {
    const char *transport;
    /* a fresh session with the device, reviving it first if it died (a
     * spawned server is started again); -errno when it cannot be had */
    int (*open)(void *t);
    void (*close)(void *t);
    /* the device gave up on us (connection closed, server exited), and
     * what is known about why (NULL: nothing) */
    bool (*gone)(void *t);
    const char *(*gone_why)(void *t);
    int (*flags)(void *t, uint64_t *flags);
    int (*get_state)(void *t, uint32_t *state);
    /* any number, sent as it is */
    int (*set_state)(void *t, uint32_t state);
    /* one data read of at most @len bytes: > 0 bytes, 0 an empty read */
    long (*read)(void *t, void *buf, size_t len);
    int (*write)(void *t, const void *buf, size_t len);
    /* -EOPNOTSUPP when the device has no reset */
    int (*reset)(void *t);
    /* -EOPNOTSUPP when not offered */
    int (*precopy_info)(void *t, uint64_t *initial, uint64_t *dirty);
    /* DMA logging over memory the transport made the device see at
     * [*iova, *iova + *len) on open: -EOPNOTSUPP when not offered */
    int (*log_range)(void *t, uint64_t *iova, uint64_t *len);
    int (*log_start)(void *t, uint64_t page, uint64_t iova, uint64_t len);
    int (*log_report)(void *t, uint64_t iova, uint64_t len, uint64_t page,
                      uint64_t *bitmap);
    int (*log_stop)(void *t);
    /* rules of the transport: run before the generic ones, and the
     * hostile inputs (--hostile) after them */
    void (*transport_rules)(struct cf *cf, void *t);
    void (*hostile_rules)(struct cf *cf, void *t);
};

typedef void cf_row_fn(void *opaque, const struct cf_row *row);

/* next-step table: next[flags][cur][target], -1 = refused */
struct cf_fsm {
    int8_t next[8][8][8];
};

/* One run. */
struct cf {
    vmig_ctx_t *ctx;
    const struct cf_ops *ops;
    void *src, *dst; /* dst: a second instance, or NULL */
    struct cf_fsm fsm;
    bool hostile;
    cf_row_fn *emit;
    void *opaque;
    unsigned int count[CF__COUNT];
    /* learnt along the way */
    uint64_t flags;
    bool flags_ok;
    uint8_t *saved; /* one complete STOP_COPY save of src */
    size_t saved_len;
};

/* The kernel's next-step table from libvmig's FSM (vmig_fsm_next()). */
void cf_fsm_from_lib(struct cf_fsm *f);

/* The same from the kernel test vectors' text ("flags=F cur=C: ..."
 * lines, as tests/data/fsm-next-step.txt); -errno with a message in
 * @err on a malformed file. */
int cf_fsm_load(struct cf_fsm *f, const char *path, char *err, size_t len);

/* Report a row. */
void cf_row(struct cf *cf, const char *rule, const char *clause,
            enum cf_verdict v, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Run every rule. */
void cf_run(struct cf *cf);

/* The vfio-user transport: a server at @path; @revive (may be NULL) is
 * called when it cannot be reached, to start it again; @why (may be
 * NULL) says what became of a server that closed the session ("exited
 * with status 3: ...") into @buf, or returns -ENOENT. */
struct cf_vfu;
typedef int cf_revive_fn(void *opaque, const char *path);
typedef int cf_why_fn(void *opaque, char *buf, size_t len);
int cf_vfu_new(vmig_ctx_t *ctx, const char *path, cf_revive_fn *revive,
               cf_why_fn *why, void *opaque, struct cf_vfu **out);
void cf_vfu_free(struct cf_vfu *t);
extern const struct cf_ops cf_vfu_ops;

/* Sleep @ms milliseconds (polling a server that is starting). */
void cf_sleep_ms(int ms);

/* `vmig conform` */
int vmig_conform_main(int argc, char **argv);
void vmig_conform_usage(FILE *f);

#endif /* VMIG_CONFORM_H */
