/* SPDX-License-Identifier: MIT */
/*
 * engine.c - the VMM-side migration engine: object, params, stats and
 * events, throttling and device transitions, which both roles share.  The
 * source side is engine_src.c (with engine_precopy.c, engine_send.c and
 * engine_switchover.c), the destination side engine_dst.c; the wire
 * layout is docs/migration-protocol.md, the design docs/architecture.md.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vmig/engine.h>
#include "engine_priv.h"
#include "internal.h"

static const char *const status_names[VMIG_ENGINE__STATUS_COUNT] = {
    [VMIG_ENGINE_NONE] = "none",
    [VMIG_ENGINE_SETUP] = "setup",
    [VMIG_ENGINE_ACTIVE] = "active",
    [VMIG_ENGINE_DEVICE] = "device",
    [VMIG_ENGINE_COMPLETED] = "completed",
    [VMIG_ENGINE_FAILED] = "failed",
    [VMIG_ENGINE_CANCELLED] = "cancelled",
    [VMIG_ENGINE_RECOVERING] = "recovering",
    [VMIG_ENGINE_UNKNOWN] = "postmigrate-unknown",
};

const char *
vmig_engine_status_name(enum vmig_engine_status s)
{
    if ((unsigned int)s >= VMIG_ENGINE__STATUS_COUNT) {
        return "unknown";
    }
    return status_names[s];
}

static bool
name_ok(const char *s)
{
    size_t n;

    if (s == NULL) {
        return false;
    }
    n = strlen(s);
    if (n == 0 || n > VMIG_MP_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) {
            return false;
        }
    }
    return true;
}

int
vmig_engine_new(vmig_ctx_t *ctx, const struct vmig_engine_region *regions,
                unsigned int nregions, const struct vmig_engine_vm_ops *ops,
                void *opaque, struct vmig_engine **out)
{
    struct vmig_engine *e;

    if (out == NULL || ops == NULL || ops->vcpu_resume == NULL ||
        regions == NULL || nregions == 0 ||
        nregions > VMIG_ENGINE_MAX_REGIONS) {
        return -EINVAL;
    }
    for (unsigned int i = 0; i < nregions; i++) {
        if (!name_ok(regions[i].name) || regions[i].host == NULL ||
            regions[i].size == 0 || regions[i].size % VMIG_MP_PAGE_SIZE != 0) {
            return -EINVAL;
        }
        for (unsigned int j = 0; j < i; j++) {
            if (strcmp(regions[i].name, regions[j].name) == 0) {
                return -EINVAL;
            }
        }
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return -ENOMEM;
    }
    e->buf = malloc(VMIG_MP_PAYLOAD_MAX);
    e->evsnap = malloc(sizeof(*e->evsnap));
    if (e->buf == NULL || e->evsnap == NULL ||
        pthread_mutex_init(&e->lock, NULL) != 0) {
        free(e->buf);
        free(e->evsnap);
        free(e);
        return -ENOMEM;
    }
    e->ctx = ctx;
    e->ops = ops;
    e->opaque = opaque;
    e->nregions = nregions;
    for (unsigned int i = 0; i < nregions; i++) {
        snprintf(e->region[i].name, sizeof(e->region[i].name), "%s",
                 regions[i].name);
        e->region[i].host = regions[i].host;
        e->region[i].size = regions[i].size;
        e->ram_total += regions[i].size;
    }
    e->params.downtime_limit_ms = 300;
    e->params.timeout_ms = VMIG_ENGINE_PEER_TIMEOUT_MS;
    e->params.recover_timeout_ms = VMIG_ENGINE_RECOVER_TIMEOUT_MS;
    *out = e;
    return 0;
}

void
vmig_engine_free(struct vmig_engine *e)
{
    if (e == NULL) {
        return;
    }
    if (e->rec.release != NULL) {
        /* an unresolved migration (commit protocol) */
        e->rec.release(e);
    }
    pthread_mutex_destroy(&e->lock);
    free(e->buf);
    free(e->evsnap);
    free(e);
}

int
vmig_engine_add_device(struct vmig_engine *e, const char *name,
                       const struct vmig_engine_dev_ops *ops, void *opaque)
{
    struct eng_dev *d;
    int ret = 0;

    if (!name_ok(name) || ops == NULL || ops->get_flags == NULL ||
        ops->get_state == NULL || ops->set_state == NULL ||
        ops->reset == NULL) {
        return -EINVAL;
    }
    pthread_mutex_lock(&e->lock);
    if (e->running) {
        ret = -EBUSY;
        goto out;
    }
    if (e->ndev >= VMIG_ENGINE_MAX_DEVICES) {
        ret = -E2BIG;
        goto out;
    }
    for (unsigned int i = 0; i < e->ndev; i++) {
        if (strcmp(e->dev[i].name, name) == 0) {
            ret = -EINVAL;
            goto out;
        }
    }
    d = &e->dev[e->ndev++];
    memset(d, 0, sizeof(*d));
    snprintf(d->name, sizeof(d->name), "%s", name);
    d->ops = ops;
    d->opaque = opaque;
out:
    pthread_mutex_unlock(&e->lock);
    return ret;
}

int
vmig_engine_del_device(struct vmig_engine *e, const char *name)
{
    int ret = -ENOENT;

    pthread_mutex_lock(&e->lock);
    if (e->running) {
        ret = -EBUSY;
        goto out;
    }
    for (unsigned int i = 0; i < e->ndev; i++) {
        if (strcmp(e->dev[i].name, name) == 0) {
            /* a migration keeps its per-device state in its own struct
             * (engine_src_state.h, engine_dst_state.h): nothing to free */
            memmove(&e->dev[i], &e->dev[i + 1],
                    (e->ndev - i - 1) * sizeof(e->dev[0]));
            e->ndev--;
            memset(&e->dev[e->ndev], 0, sizeof(e->dev[0]));
            ret = 0;
            break;
        }
    }
out:
    pthread_mutex_unlock(&e->lock);
    return ret;
}

void
vmig_engine_set_params(struct vmig_engine *e,
                       const struct vmig_engine_params *p)
{
    pthread_mutex_lock(&e->lock);
    if (p->downtime_limit_ms != 0) {
        e->params.downtime_limit_ms = p->downtime_limit_ms;
    }
    e->params.max_bandwidth = p->max_bandwidth;
    if (p->timeout_ms != 0) {
        e->params.timeout_ms = p->timeout_ms;
    }
    e->params.no_precopy = p->no_precopy;
    e->params.max_iterations = p->max_iterations;
    e->params.max_precopy_ms = p->max_precopy_ms;
    e->params.cap_action = p->cap_action;
    e->params.reset_policy = p->reset_policy;
    e->params.max_restarts = p->max_restarts;
    e->params.allow_mixed_p2p = p->allow_mixed_p2p;
    e->params.test_one_phase_stop = p->test_one_phase_stop;
    if (p->recover_timeout_ms != 0) {
        e->params.recover_timeout_ms = p->recover_timeout_ms;
    }
    e->params.no_commit = p->no_commit;
    e->params.channels =
        p->channels > VMIG_MP_MAX_CHANNELS ? VMIG_MP_MAX_CHANNELS : p->channels;
    e->params.compression = p->compression == VMIG_ENGINE_COMPRESS_ZSTD
                                ? VMIG_ENGINE_COMPRESS_ZSTD
                                : VMIG_ENGINE_COMPRESS_NONE;
    e->params.zstd_level = p->zstd_level < 0    ? 0
                           : p->zstd_level > 19 ? 19
                                                : p->zstd_level;
    pthread_mutex_unlock(&e->lock);
}

void
vmig_engine_get_params(struct vmig_engine *e, struct vmig_engine_params *out)
{
    pthread_mutex_lock(&e->lock);
    *out = e->params;
    pthread_mutex_unlock(&e->lock);
}

int
vmig_engine_cancel(struct vmig_engine *e)
{
    int ret = 0;

    pthread_mutex_lock(&e->lock);
    if (!e->running) {
        ret = -EBUSY;
    } else {
        __atomic_store_n(&e->cancel, 1, __ATOMIC_RELEASE);
        /* after GO the flag is only a wish: see vmig_engine_cancel() */
        ret = e->committed ? -EINPROGRESS : 0;
    }
    pthread_mutex_unlock(&e->lock);
    return ret;
}

int
vmig_engine_fail(struct vmig_engine *e, const char *device, int err,
                 const char *reason)
{
    int ret = 0;

    if (err <= 0 || err > 4095 || reason == NULL) {
        return -EINVAL;
    }
    pthread_mutex_lock(&e->lock);
    if (!e->running) {
        ret = -EBUSY;
    } else if (e->fail_err == 0) {
        e->fail_err = err;
        e->fail_dev = -1;
        for (unsigned int i = 0; device != NULL && i < e->ndev; i++) {
            if (strcmp(e->dev[i].name, device) == 0) {
                e->fail_dev = (int)i;
            }
        }
        snprintf(e->fail_reason, sizeof(e->fail_reason), "%s", reason);
        /* the cause, whatever the engine met first on its way out */
        snprintf(e->st.error, sizeof(e->st.error), "%s", reason);
        __atomic_store_n(&e->cancel, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&e->lock);
    return ret;
}

int
vmig__engine_failure(struct vmig_engine *e, int *dev, char *reason, size_t len)
{
    int err;

    pthread_mutex_lock(&e->lock);
    err = e->fail_err;
    if (err != 0) {
        *dev = e->fail_dev;
        snprintf(reason, len, "%s", e->fail_reason);
    }
    pthread_mutex_unlock(&e->lock);
    return err;
}

static void
stats_fill_locked(struct vmig_engine *e, struct vmig_engine_stats *out)
{
    *out = e->st;
    if (e->running) {
        out->total_time_ms = (vmig__mono_ns() - e->t_start) / 1000000;
    }
}

void
vmig_engine_stats(struct vmig_engine *e, struct vmig_engine_stats *out)
{
    pthread_mutex_lock(&e->lock);
    stats_fill_locked(e, out);
    pthread_mutex_unlock(&e->lock);
}

int
vmig_engine_device_states(struct vmig_engine *e)
{
    int count = 0;

    for (unsigned int i = 0; i < e->ndev; i++) {
        enum vmig_state s;
        int ret = e->dev[i].ops->get_state(e->dev[i].opaque, &s);

        if (ret < 0) {
            return ret;
        }
        pthread_mutex_lock(&e->lock);
        e->st.dev[i].state = s;
        pthread_mutex_unlock(&e->lock);
        if (s != VMIG_STATE_RUNNING) {
            count++;
        }
    }
    return count;
}

int
vmig_engine_mixed_p2p(struct vmig_engine *e, char *reason, size_t len)
{
    if (e->ndev < 2) {
        return 0;
    }
    for (unsigned int i = 0; i < e->ndev; i++) {
        const struct eng_dev *d = &e->dev[i];
        uint64_t flags = 0;
        int ret = d->ops->get_flags(d->opaque, &flags);

        if (ret < 0) {
            return ret;
        }
        if (!(flags & VMIG_MIGRATION_P2P)) {
            if (reason != NULL) {
                snprintf(reason, len,
                         "device %s lacks P2P support and %u devices "
                         "migrate together; set allow-mixed-p2p to override",
                         d->name, e->ndev);
            }
            return 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ shared */

static void
emit(struct vmig_engine *e, enum vmig_engine_event_kind kind)
{
    if (e->ops->event == NULL) {
        return;
    }
    pthread_mutex_lock(&e->lock);
    stats_fill_locked(e, e->evsnap);
    pthread_mutex_unlock(&e->lock);
    e->ops->event(e->opaque, kind, e->evsnap);
}

int
vmig__engine_begin(struct vmig_engine *e, enum vmig_engine_role role)
{
    pthread_mutex_lock(&e->lock);
    if (e->running) {
        pthread_mutex_unlock(&e->lock);
        return -EBUSY;
    }
    e->running = true;
    e->committed = false;
    __atomic_store_n(&e->cancel, 0, __ATOMIC_RELEASE);
    e->fail_err = 0;
    memset(&e->st, 0, sizeof(e->st));
    e->st.role = role;
    e->st.status = VMIG_ENGINE_NONE;
    e->st.ram_total = e->ram_total;
    e->st.ram_remaining = e->ram_total;
    e->st.ndevices = e->ndev;
    for (unsigned int i = 0; i < e->ndev; i++) {
        snprintf(e->st.dev[i].name, sizeof(e->st.dev[i].name), "%s",
                 e->dev[i].name);
        e->st.dev[i].verdict = -1;
    }
    e->t_start = vmig__mono_ns();
    e->t_last_progress = 0;
    e->tb_ns = 0; /* the throttle starts afresh */
    e->wire_extra = 0;
    e->zm_raw = e->zm_packed = e->zx_raw = e->zx_packed = 0;
    pthread_mutex_unlock(&e->lock);
    return 0;
}

void
vmig__engine_end(struct vmig_engine *e, int ret)
{
    enum vmig_engine_status s;

    pthread_mutex_lock(&e->lock);
    e->st.total_time_ms = (vmig__mono_ns() - e->t_start) / 1000000;
    if (ret < 0 && e->fail_err != 0) {
        ret = -e->fail_err; /* vmig_engine_fail(): failed, not cancelled */
    }
    if (ret == 0) {
        s = VMIG_ENGINE_COMPLETED;
    } else if (ret == -ECANCELED) {
        s = VMIG_ENGINE_CANCELLED;
    } else {
        s = VMIG_ENGINE_FAILED;
    }
    if (ret < 0) {
        e->st.errnum = -ret;
        if (e->st.error[0] == '\0' && ret == -ETIMEDOUT) {
            /* every wait for the peer is bounded by the peer timeout */
            snprintf(e->st.error, sizeof(e->st.error),
                     "%s: " VMIG__PEER_SILENT_FMT, strerror(-ret),
                     e->st.role == VMIG_ENGINE_ROLE_SOURCE ? "destination"
                                                           : "source",
                     e->params.timeout_ms);
        } else if (e->st.error[0] == '\0') {
            snprintf(e->st.error, sizeof(e->st.error), "%s", strerror(-ret));
        }
    }
    e->st.status = s;
    e->running = false;
    pthread_mutex_unlock(&e->lock);
    emit(e, VMIG_ENGINE_EV_STATUS);
}

void
vmig__engine_on_release(struct vmig_engine *e,
                        void (*release)(struct vmig_engine *e))
{
    pthread_mutex_lock(&e->lock);
    e->rec.release = release;
    pthread_mutex_unlock(&e->lock);
}

void
vmig__engine_set_status(struct vmig_engine *e, enum vmig_engine_status s)
{
    pthread_mutex_lock(&e->lock);
    e->st.status = s;
    pthread_mutex_unlock(&e->lock);
    emit(e, VMIG_ENGINE_EV_STATUS);
}

void
vmig__engine_set_error(struct vmig_engine *e, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&e->lock);
    if (e->st.error[0] == '\0') {
        va_start(ap, fmt);
        vsnprintf(e->st.error, sizeof(e->st.error), fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&e->lock);
}

int
vmig__engine_handshake(struct vmig_engine *e, struct vmig_mp_conn *c,
                       bool source)
{
    int ret = vmig_mp_handshake(c);

    if (ret == -EPROTONOSUPPORT) {
        vmig__engine_set_error(
            e, "%s",
            source ? "the destination requires TLS and this agent has no "
                     "TLS credentials: give it --tls-creds DIR or --tls-psk "
                     "FILE (QMP tls-creds)"
                   : "the source speaks TLS and this destination has no TLS "
                     "credentials: give it --tls-creds DIR or --tls-psk FILE");
    }
    return ret;
}

int
vmig__engine_compress(struct vmig_engine *e, struct vmig_mp_conn *c,
                      uint64_t features, int level)
{
    int ret;

    if (!(features & VMIG_MP_FEAT_ZSTD)) {
        return 0;
    }
    ret = vmig_mp_conn_set_compress(c, VMIG_MP_COMPRESS_ZSTD, level);
    if (ret < 0) {
        vmig__engine_set_error(e, "cannot set up zstd compression: %s",
                               strerror(-ret));
    }
    return ret;
}

void
vmig__engine_pass(struct vmig_engine *e, unsigned int pass)
{
    pthread_mutex_lock(&e->lock);
    e->st.pass = pass;
    pthread_mutex_unlock(&e->lock);
    emit(e, VMIG_ENGINE_EV_PASS);
}

/* With e->lock held: RAM and device bytes moved, into the stats. */
static void
count_locked(struct vmig_engine *e, uint64_t ram_bytes, uint64_t zero_pages,
             int dev, uint64_t dev_bytes)
{
    e->st.ram_transferred += ram_bytes;
    e->st.ram_zero_pages += zero_pages;
    e->st.ram_remaining =
        e->st.ram_remaining > ram_bytes ? e->st.ram_remaining - ram_bytes : 0;
    if (dev >= 0 && (unsigned int)dev < VMIG_ENGINE_MAX_DEVICES) {
        e->st.dev[dev].bytes += dev_bytes;
        e->st.dev_total += dev_bytes;
    }
}

void
vmig__engine_account_extra(struct vmig_engine *e, uint64_t ram_bytes,
                           uint64_t zero_pages, int dev, uint64_t dev_bytes,
                           uint64_t wire)
{
    pthread_mutex_lock(&e->lock);
    count_locked(e, ram_bytes, zero_pages, dev, dev_bytes);
    e->wire_extra += wire;
    e->st.wire_bytes += wire;
    e->st.channel_bytes = e->wire_extra;
    pthread_mutex_unlock(&e->lock);
}

void
vmig__engine_zaccount_extra(struct vmig_engine *e, const struct vmig_mp_conn *c)
{
    uint64_t raw, packed;

    vmig_mp_conn_zbytes(c, &raw, &packed);
    pthread_mutex_lock(&e->lock);
    e->zx_raw += raw;
    e->zx_packed += packed;
    e->st.zstd_raw_bytes = e->zm_raw + e->zx_raw;
    e->st.zstd_bytes = e->zm_packed + e->zx_packed;
    pthread_mutex_unlock(&e->lock);
}

void
vmig__engine_account(struct vmig_engine *e, struct vmig_mp_conn *c,
                     uint64_t ram_bytes, uint64_t zero_pages, int dev,
                     uint64_t dev_bytes)
{
    uint64_t now = vmig__mono_ns(), sent, recvd;
    bool fire = false;

    vmig_mp_conn_bytes(c, &sent, &recvd);
    pthread_mutex_lock(&e->lock);
    count_locked(e, ram_bytes, zero_pages, dev, dev_bytes);
    e->st.wire_bytes = sent + recvd + e->wire_extra;
    vmig_mp_conn_zbytes(c, &e->zm_raw, &e->zm_packed);
    e->st.zstd_raw_bytes = e->zm_raw + e->zx_raw;
    e->st.zstd_bytes = e->zm_packed + e->zx_packed;
    if (now > e->t_xfer) {
        double secs = (double)(now - e->t_xfer) / 1e9;

        e->st.mbps = secs > 0 ? (double)e->st.wire_bytes * 8 / 1e6 / secs : 0;
        if (e->st.mbps > 0 && !e->st.precopy) {
            e->st.expected_downtime_ms =
                (uint64_t)((double)e->st.ram_remaining * 8 / 1e3 / e->st.mbps);
        }
    }
    if (now - e->t_last_progress >= 100000000ull) {
        e->t_last_progress = now;
        fire = true;
    }
    pthread_mutex_unlock(&e->lock);
    if (fire) {
        emit(e, VMIG_ENGINE_EV_PROGRESS);
    }
}

bool
vmig__engine_cancelled(struct vmig_engine *e)
{
    return __atomic_load_n(&e->cancel, __ATOMIC_ACQUIRE) != 0;
}

/*
 * Keep the wire rate under max_bandwidth with a token bucket: tokens
 * (bytes) flow in at the limit as it is now, up to THROTTLE_BURST_NS
 * worth; the bytes sent since the last call are taken out, and a debt is
 * waited off in slices of at most THROTTLE_SLICE_NS that each re-read the
 * limit, so lowering or raising max-bandwidth acts within one slice and
 * a cancel is seen as fast.  Only what happened since the last call
 * counts: a limit lowered after a fast start does not make up for the
 * bytes sent before, and a frame's debt is capped (THROTTLE_DEBT_NS).
 * Frames are sized to the live limit (vmig__engine_frame_cap()), so the
 * waits between them stay short: the peer hears from us often.  Once
 * the VM is paused (status "device") nothing is throttled: as in QEMU's
 * switchover, the limiter never holds the guest down.
 */
#define THROTTLE_SLICE_NS 20000000ull  /* 20 ms */
#define THROTTLE_BURST_NS 100000000ull /* 100 ms of tokens at most */
/* Under a limit a frame carries at most this long's worth of bytes, so
 * the stream never goes quiet for longer than about that between two
 * frames (a 4 MiB frame at 1 MB/s would be 4 s of silence, more than a
 * peer timeout of a few seconds) */
#define THROTTLE_FRAME_NS 50000000ull /* 50 ms */
/* and the debt one frame can run up: a frame sized under an older, higher
 * limit (or none: the frame in flight when a limit was set) does not hold
 * the stream silent at the new one */
#define THROTTLE_DEBT_NS 100000000ull /* 100 ms */

/* The live limit, 0 when none applies (unlimited, or stop-copy). */
static uint64_t
throttle_limit(struct vmig_engine *e)
{
    uint64_t bw;

    pthread_mutex_lock(&e->lock);
    bw = e->st.status == VMIG_ENGINE_DEVICE ? 0 : e->params.max_bandwidth;
    pthread_mutex_unlock(&e->lock);
    return bw;
}

/* Add the tokens earned since the last refill at @bw, capped. */
static void
throttle_refill(struct vmig_engine *e, uint64_t bw, uint64_t now)
{
    double cap = (double)bw * (double)THROTTLE_BURST_NS / 1e9;

    if (now > e->tb_ns) {
        e->tb_tokens += (double)(now - e->tb_ns) * (double)bw / 1e9;
    }
    e->tb_ns = now;
    if (e->tb_tokens > cap) {
        e->tb_tokens = cap;
    }
}

uint64_t
vmig__engine_frame_cap(struct vmig_engine *e, uint64_t unit, uint64_t max)
{
    uint64_t bw = throttle_limit(e), cap;

    if (bw == 0) {
        return max;
    }
    cap = (uint64_t)((double)bw * (double)THROTTLE_FRAME_NS / 1e9);
    cap -= cap % unit;
    if (cap < unit) {
        cap = unit;
    }
    return cap < max ? cap : max;
}

int
vmig__engine_throttle(struct vmig_engine *e, struct vmig_mp_conn *c)
{
    uint64_t bw = throttle_limit(e), sent;
    double debt_max;

    vmig_mp_conn_bytes(c, &sent, NULL);
    if (bw == 0 || e->tb_ns == 0) {
        /* nothing owed for what went out unlimited */
        e->tb_tokens = 0;
        e->tb_ns = vmig__mono_ns();
        e->tb_sent = bw == 0 ? sent : 0;
        if (bw == 0) {
            return 0;
        }
    }
    throttle_refill(e, bw, vmig__mono_ns());
    e->tb_tokens -= (double)(sent - e->tb_sent);
    e->tb_sent = sent;
    debt_max = (double)bw * (double)THROTTLE_DEBT_NS / 1e9;
    if (debt_max < (double)(VMIG_MP_PAGE_SIZE + VMIG_MP_HDR_LEN)) {
        /* a frame cannot be smaller: below ~1.4 KB/s the stream is quiet
         * longer than a 3 s peer timeout between two pages */
        debt_max = (double)(VMIG_MP_PAGE_SIZE + VMIG_MP_HDR_LEN);
    }
    if (e->tb_tokens < -debt_max) {
        e->tb_tokens = -debt_max;
    }
    while (e->tb_tokens < 0) {
        uint64_t wait = (uint64_t)(-e->tb_tokens / (double)bw * 1e9) + 1;
        struct timespec ts;

        if (vmig__engine_cancelled(e)) {
            return -ECANCELED;
        }
        if (wait > THROTTLE_SLICE_NS) {
            wait = THROTTLE_SLICE_NS;
        }
        ts.tv_sec = 0;
        ts.tv_nsec = (long)wait;
        nanosleep(&ts, NULL);
        bw = throttle_limit(e);
        if (bw == 0) {
            e->tb_tokens = 0; /* raised to unlimited: the debt is gone */
            break;
        }
        throttle_refill(e, bw, vmig__mono_ns());
    }
    return 0;
}

void
vmig__engine_dev_state(struct vmig_engine *e, unsigned int i, enum vmig_state s)
{
    pthread_mutex_lock(&e->lock);
    e->st.dev[i].state = s;
    pthread_mutex_unlock(&e->lock);
}

/*
 * Move device @i to @target.  On failure the device is reset when it is
 * not at @target and @reset_on_fail is set: a rollback must hand the VM a
 * device that runs, and a reset is the one way back from a failed arc
 * (docs/migration-protocol.md section 6).  The state reached is recorded
 * in the stats: @target after a successful SET (as the kernel's uAPI
 * defines it, and as QEMU takes it), what the device says after a failed
 * one ("anywhere along the path").  Not asking after a success saves a
 * round trip to a vfio-user server per arc while the guest is down.
 */
int
vmig__engine_dev_set(struct vmig_engine *e, unsigned int i,
                     enum vmig_state target, bool reset_on_fail)
{
    struct eng_dev *d = &e->dev[i];
    enum vmig_state s = target;
    int ret;

    ret = d->ops->set_state(d->opaque, target);
    if (ret < 0 && d->ops->get_state(d->opaque, &s) < 0) {
        s = VMIG_STATE_ERROR;
    }
    if (ret < 0) {
        vmig_err(e->ctx, "device %s: -> %s failed: %s; device is in %s%s",
                 d->name, vmig_state_name(target), strerror(-ret),
                 vmig_state_name(s), reset_on_fail ? "; resetting it" : "");
        if (reset_on_fail) {
            if (d->ops->reset(d->opaque) < 0 ||
                d->ops->get_state(d->opaque, &s) < 0) {
                s = VMIG_STATE_ERROR;
            }
            if (s != VMIG_STATE_RUNNING) {
                vmig_err(e->ctx,
                         "device %s: still in %s after reset; it needs "
                         "attention before the VM can use it",
                         d->name, vmig_state_name(s));
            }
        }
    }
    vmig__engine_dev_state(e, i, s);
    return ret;
}
