/* SPDX-License-Identifier: MIT */
/*
 * vfu_testdev.c - the test device model and its child-process server.
 *
 * Stream records: {u32 type, u32 len, u64 off} + len bytes.
 *   type 1 MEM  - state bytes at off
 *   type 2 REGS - the register file (off 0)
 *   type 3 END  - last record (len 0); nothing is applied without it
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include <vmig/vfu_server.h>
#include <vmig_testkit/spawn.h>
#include "vfu_testdev.h"

#define CHUNK (64u << 10)
#define NREGS 16

enum { REC_MEM = 1, REC_REGS = 2, REC_END = 3 };

struct rec {
    uint32_t type;
    uint32_t len;
    uint64_t off;
};

struct td {
    struct vmig_vfu_server *srv;
    struct vmig_dev *dev;
    uint64_t seed;
    size_t size;
    uint8_t *mem;
    uint64_t regs[NREGS];
    /* saving */
    size_t cursor;  /* first pass: next chunk offset */
    uint8_t *dirty; /* per chunk, set after it was sent */
    bool regs_sent;
    bool end_sent;
    uint8_t *out;       /* staged record header */
    const uint8_t *src; /* the record's data, read in place */
    size_t out_len, out_pos;
    /* resuming: records are checked and written into a shadow of the
     * state as they arrive; END_RESUME swaps it in, so nothing is applied
     * without a whole valid stream and no input is buffered */
    uint8_t *shadow;    /* @size bytes */
    uint8_t *shadow_ok; /* per chunk: shadow holds the chunk's new bytes */
    uint64_t shadow_regs[NREGS];
    bool regs_in;          /* a REGS record arrived */
    struct rec hdr;        /* the record being received */
    size_t hdr_got;        /* its header bytes so far */
    size_t rec_pos;        /* its data bytes so far */
    bool end_in;           /* END arrived */
    bool in_bad;           /* the stream is invalid: END_RESUME fails */
    size_t in_len, in_cap; /* bytes received, and the most accepted */
    /* PCI config space (testdev_cfg_space) */
    uint8_t cfg[256];
};

static void
td_fill(struct td *t)
{
    uint64_t x = t->seed * 0x9e3779b97f4a7c15ull + 1;

    for (size_t i = 0; i < t->size; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t->mem[i] = (uint8_t)x;
    }
    memset(t->regs, 0, sizeof(t->regs));
}

static void
td_resume_reset(struct td *t)
{
    t->in_len = 0;
    t->hdr_got = t->rec_pos = 0;
    t->regs_in = t->end_in = t->in_bad = false;
    memset(t->shadow_ok, 0, (t->size + CHUNK - 1) / CHUNK);
}

static void
td_session_reset(struct td *t)
{
    t->cursor = 0;
    memset(t->dirty, 0, (t->size + CHUNK - 1) / CHUNK);
    t->regs_sent = false;
    t->end_sent = false;
    t->out_len = t->out_pos = 0;
    td_resume_reset(t);
}

static void
td_touch(struct td *t, size_t off)
{
    /* Bytes already sent in this session must be sent again. */
    if (off < t->cursor) {
        t->dirty[off / CHUNK] = 1;
    }
}

static uint64_t
td_hash(struct td *t)
{
    XXH3_state_t *st = XXH3_createState();
    uint64_t h;

    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, t->regs, sizeof(t->regs));
    XXH3_64bits_update(st, t->mem, t->size);
    h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

static int
td_doorbell(struct td *t)
{
    uint8_t b[64];
    int ret;

    ret = vmig_vfu_dma_read(t->srv, t->regs[TD_SRC / 8], b, sizeof(b));
    if (ret < 0) {
        return ret;
    }
    for (size_t i = 0; i < sizeof(b); i++) {
        b[i]++;
        t->mem[i] ^= b[i];
    }
    td_touch(t, 0);
    ret = vmig_vfu_dma_write(t->srv, t->regs[TD_DST / 8], b, sizeof(b));
    if (ret < 0) {
        return ret;
    }
    t->regs[TD_COUNT / 8]++;
    /* -EAGAIN (no eventfd wired, or masked) is fine: it stays pending */
    ret = vmig_vfu_irq_trigger(t->srv, 0, 0);
    if (ret < 0 && ret != -EAGAIN) {
        return ret;
    }
    return 0;
}

static void *
td_async_main(void *arg)
{
    struct td *t = arg;
    uint8_t b[64];

    /* Message-based DMA from a device thread: the loop routes replies. */
    if (vmig_vfu_dma_read(t->srv, t->regs[TD_SRC / 8], b, sizeof(b)) == 0) {
        for (size_t i = 0; i < sizeof(b); i++) {
            b[i]++;
        }
        if (vmig_vfu_dma_write(t->srv, t->regs[TD_DST / 8], b, sizeof(b)) ==
            0) {
            (void)!vmig_vfu_irq_trigger(t->srv, 0, 0);
        }
    }
    return NULL;
}

static int
td_access(void *opaque, unsigned int region, uint64_t off, void *buf,
          uint32_t len, bool wr)
{
    struct td *t = opaque;
    uint64_t v = 0;

    if (region == TD_CFG_REGION && testdev_cfg_space) {
        if (off > sizeof(t->cfg) || len > sizeof(t->cfg) - off) {
            return -EINVAL;
        }
        if (!wr) {
            memcpy(buf, t->cfg + off, len);
        } else if (off >= 4) { /* vendor and device ids are read-only */
            memcpy(t->cfg + off, buf, len);
        }
        return 0;
    }
    if (region != 0 || (len != 4 && len != 8) || off % len != 0 ||
        off + len > NREGS * 8) {
        /* Unused BAR space reads as zero, ignores writes. */
        if (!wr) {
            memset(buf, 0, len);
        }
        return 0;
    }
    if (!wr) {
        if (off == TD_HASH) {
            v = td_hash(t);
        } else {
            memcpy(&v, (uint8_t *)t->regs + (off & ~7ull), 8);
            if (off % 8 == 4) {
                v >>= 32;
            }
        }
        memcpy(buf, &v, len);
        return 0;
    }
    memcpy(&v, buf, len);
    switch (off) {
    case TD_DOORBELL:
        return td_doorbell(t);
    case TD_RESET:
        vmig_vfu_server_device_reset(t->srv);
        return 0;
    case TD_ZEROCOPY: {
        uint8_t *src, *dst;
        int ret;

        ret = vmig_vfu_dma_get(t->srv, t->regs[TD_SRC / 8], 64,
                               VMIG_VFU_DMA_READ, (void **)&src);
        if (ret < 0) {
            return ret;
        }
        ret = vmig_vfu_dma_get(t->srv, t->regs[TD_DST / 8], 64,
                               VMIG_VFU_DMA_WRITE, (void **)&dst);
        if (ret == 0) {
            for (int i = 0; i < 64; i++) {
                dst[i] = (uint8_t)(src[i] + 1);
            }
            vmig_vfu_dma_put(t->srv, t->regs[TD_DST / 8], 64, true);
        }
        vmig_vfu_dma_put(t->srv, t->regs[TD_SRC / 8], 64, false);
        return ret;
    }
    case TD_ASYNC: {
        pthread_t th;

        if (pthread_create(&th, NULL, td_async_main, t) != 0) {
            return -EAGAIN;
        }
        pthread_detach(th);
        return 0;
    }
    case TD_MUTATE:
        t->mem[v % t->size] ^= 0xff;
        td_touch(t, v % t->size);
        return 0;
    default:
        if (len == 8) {
            t->regs[off / 8] = v;
        } else {
            memcpy((uint8_t *)t->regs + off, &v, 4);
        }
        return 0;
    }
}

static void
td_reset(void *opaque, enum vmig_reset_cause cause)
{
    struct td *t = opaque;

    (void)cause;
    td_fill(t);
    td_session_reset(t);
}

/* Stage the next record; false when the stream is complete. */
static bool
td_stage(struct td *t, bool stopcopy)
{
    struct rec r = {0};
    const void *data = NULL;
    size_t nchunks = (t->size + CHUNK - 1) / CHUNK;

    if (t->cursor < t->size) {
        r.type = REC_MEM;
        r.off = t->cursor;
        r.len = (uint32_t)(t->size - t->cursor < CHUNK ? t->size - t->cursor
                                                       : CHUNK);
        t->cursor += r.len;
    } else {
        size_t i;

        for (i = 0; i < nchunks && !t->dirty[i]; i++) {
        }
        if (i < nchunks) {
            t->dirty[i] = 0;
            r.type = REC_MEM;
            r.off = (uint64_t)i * CHUNK;
            r.len =
                (uint32_t)(t->size - r.off < CHUNK ? t->size - r.off : CHUNK);
        } else if (!stopcopy || (t->regs_sent && t->end_sent)) {
            return false; /* PRE_COPY: nothing more now; or all sent */
        } else if (!t->regs_sent) {
            r.type = REC_REGS;
            r.len = sizeof(t->regs);
            data = t->regs;
            t->regs_sent = true;
        } else {
            r.type = REC_END;
            t->end_sent = true;
        }
    }
    if (r.type == REC_MEM) {
        data = t->mem + r.off;
    }
    /* Only the record header is staged; the data is read in place (a
     * chunk changed meanwhile is dirty and goes out again). */
    memcpy(t->out, &r, sizeof(r));
    t->src = data;
    t->out_len = sizeof(r) + r.len;
    t->out_pos = 0;
    return true;
}

static ssize_t
td_save(void *opaque, enum vmig_state state, void *buf, size_t len)
{
    struct td *t = opaque;
    bool stopcopy = state == VMIG_STATE_STOP_COPY;
    size_t n;

    if (t->out_pos == t->out_len && !td_stage(t, stopcopy)) {
        return stopcopy ? 0 : -ENOMSG;
    }
    if (t->out_pos < sizeof(struct rec)) {
        n = sizeof(struct rec) - t->out_pos < len
                ? sizeof(struct rec) - t->out_pos
                : len;
        memcpy(buf, t->out + t->out_pos, n);
    } else {
        n = t->out_len - t->out_pos < len ? t->out_len - t->out_pos : len;
        memcpy(buf, t->src + (t->out_pos - sizeof(struct rec)), n);
    }
    t->out_pos += n;
    return (ssize_t)n;
}

/* A MEM record [off, off + len) is about to be written into the shadow:
 * a chunk it covers only in part takes the current state first (a record
 * that stops short makes the stream invalid, so whole chunks need none). */
static void
td_shadow_prepare(struct td *t, uint64_t off, uint64_t len)
{
    uint64_t end = off + len;

    for (uint64_t c = off / CHUNK; c * CHUNK < end; c++) {
        uint64_t lo = c * CHUNK;
        uint64_t hi = lo + CHUNK < t->size ? lo + CHUNK : t->size;

        if (!t->shadow_ok[c] && (off > lo || end < hi)) {
            memcpy(t->shadow + lo, t->mem + lo, hi - lo);
        }
        t->shadow_ok[c] = 1;
    }
}

/* A record header is complete: check it as the whole-stream check did. */
static void
td_header(struct td *t)
{
    const struct rec *r = &t->hdr;

    t->rec_pos = 0;
    if (r->type == REC_MEM && r->off <= t->size && r->len <= t->size - r->off) {
        td_shadow_prepare(t, r->off, r->len);
    } else if (r->type == REC_REGS && r->len == sizeof(t->regs)) {
        t->regs_in = true;
    } else if (r->type == REC_END && r->len == 0) {
        t->end_in = true;
    } else {
        t->in_bad = true;
    }
}

static int
td_load(void *opaque, const void *buf, size_t len)
{
    struct td *t = opaque;
    const uint8_t *p = buf;

    if (len > t->in_cap - t->in_len) {
        return -E2BIG;
    }
    t->in_len += len;
    while (len > 0 && !t->in_bad) {
        size_t n;

        if (t->end_in) {
            t->in_bad = true; /* bytes after END */
        } else if (t->hdr_got < sizeof(t->hdr)) {
            n = sizeof(t->hdr) - t->hdr_got < len ? sizeof(t->hdr) - t->hdr_got
                                                  : len;
            memcpy((uint8_t *)&t->hdr + t->hdr_got, p, n);
            t->hdr_got += n;
            p += n;
            len -= n;
            if (t->hdr_got == sizeof(t->hdr)) {
                td_header(t);
            }
        } else {
            n = t->hdr.len - t->rec_pos < len ? t->hdr.len - t->rec_pos : len;
            if (t->hdr.type == REC_MEM) {
                memcpy(t->shadow + t->hdr.off + t->rec_pos, p, n);
            } else {
                memcpy((uint8_t *)t->shadow_regs + t->rec_pos, p, n);
            }
            t->rec_pos += n;
            p += n;
            len -= n;
        }
        if (t->hdr_got == sizeof(t->hdr) && t->rec_pos == t->hdr.len &&
            !t->in_bad) {
            t->hdr_got = 0; /* the record is complete */
        }
    }
    return 0;
}

/* Apply a whole valid resuming stream: swap the shadow in. */
static int
td_apply(struct td *t)
{
    size_t nchunks = (t->size + CHUNK - 1) / CHUNK;
    uint8_t *m;

    if (t->in_bad || !t->end_in || t->hdr_got != 0) {
        return -EINVAL;
    }
    for (size_t c = 0; c < nchunks; c++) {
        if (!t->shadow_ok[c]) { /* not in the stream: unchanged */
            size_t lo = c * CHUNK;
            size_t hi = lo + CHUNK < t->size ? lo + CHUNK : t->size;

            memcpy(t->shadow + lo, t->mem + lo, hi - lo);
        }
    }
    m = t->mem;
    t->mem = t->shadow;
    t->shadow = m;
    if (t->regs_in) {
        memcpy(t->regs, t->shadow_regs, sizeof(t->regs));
    }
    return 0;
}

static int
td_step(void *opaque, enum vmig_state from, enum vmig_state to, bool *broken)
{
    struct td *t = opaque;

    (void)broken;
    switch (vmig_arc_classify(from, to)) {
    case VMIG_ARC_OPEN_SAVE:
    case VMIG_ARC_OPEN_RESUME:
    case VMIG_ARC_END_SAVE:
        td_session_reset(t);
        return 0;
    case VMIG_ARC_END_RESUME: {
        int ret = td_apply(t);

        td_resume_reset(t);
        return ret;
    }
    default:
        return 0;
    }
}

static int
td_precopy(void *opaque, uint64_t *initial, uint64_t *dirty)
{
    struct td *t = opaque;
    size_t nd = 0;

    for (size_t i = 0; i < (t->size + CHUNK - 1) / CHUNK; i++) {
        nd += t->dirty[i];
    }
    *initial = t->size - t->cursor;
    *dirty = (uint64_t)nd * CHUNK;
    return 0;
}

static int
td_data_size(void *opaque, uint64_t *bytes)
{
    uint64_t i, d;

    (void)td_precopy(opaque, &i, &d);
    *bytes = i + d + sizeof(((struct td *)0)->regs) + 64;
    return 0;
}

static const struct vmig_vfu_dev_ops td_ops = {
    .region_access = td_access,
};

static const struct vmig_dev_ops td_mig_ops = {
    .step = td_step,
    .save = td_save,
    .load = td_load,
    .reset = td_reset,
    .data_size = td_data_size,
    .precopy_info = td_precopy,
};

bool testdev_no_dma_log;
bool testdev_cfg_space;

static int
td_nolog_start(void *opaque, uint64_t page_size,
               const struct vmig_dma_range *ranges, unsigned int nranges)
{
    (void)opaque;
    (void)page_size;
    (void)ranges;
    (void)nranges;
    return -EOPNOTSUPP;
}

static int
td_nolog_stop(void *opaque)
{
    (void)opaque;
    return -EOPNOTSUPP;
}

static int
td_nolog_report(void *opaque, uint64_t iova, uint64_t length,
                uint64_t page_size, uint64_t *bitmap)
{
    (void)opaque;
    (void)iova;
    (void)length;
    (void)page_size;
    (void)bitmap;
    return -EOPNOTSUPP;
}

static struct vmig_vfu_server *child_srv;

/* State memory: anonymous, in huge pages where the kernel has them (a
 * GiB of state in 4 KiB pages costs a quarter million page faults). */
static uint8_t *
td_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED) {
        return NULL;
    }
    (void)madvise(p, size, MADV_HUGEPAGE);
    return p;
}

static void
on_term(int sig)
{
    (void)sig;
    /* async-signal-safe: it only write()s to an eventfd */
    vmig_vfu_server_stop(child_srv); /* NOLINT(bugprone-signal-handler) */
}

static void
td_free(struct td *t)
{
    if (t->mem != NULL) {
        (void)munmap(t->mem, t->size);
    }
    if (t->shadow != NULL) {
        (void)munmap(t->shadow, t->size);
    }
    free(t->dirty);
    free(t->shadow_ok);
    free(t->out);
}

int
testdev_serve(const char *path, int fd, uint64_t seed, size_t size,
              vmig_log_fn *log, int level)
{
    struct td t = {0};
    struct vmig_dev_ops ops; /* borrowed by the framework until freed */
    vmig_ctx_t *ctx;
    int mfd, ret;

    t.seed = seed;
    t.size = size;
    t.mem = td_alloc(size);
    t.shadow = td_alloc(size);
    t.dirty = calloc((size + CHUNK - 1) / CHUNK, 1);
    t.shadow_ok = calloc((size + CHUNK - 1) / CHUNK, 1);
    t.out = malloc(sizeof(struct rec));
    t.in_cap = 2 * size + (1u << 20);
    if (t.mem == NULL || t.shadow == NULL || t.dirty == NULL ||
        t.shadow_ok == NULL || t.out == NULL) {
        td_free(&t);
        return 1;
    }
    /* the device's memory is resident from the start, like its state */
    memset(t.shadow, 0, size);
    td_fill(&t);
    if (vmig_ctx_new("testdev", log, NULL, &ctx) < 0) {
        return 1;
    }
    vmig_ctx_set_level(ctx, level);
    ops = td_mig_ops;
    if (testdev_no_dma_log) {
        ops.log_start = td_nolog_start;
        ops.log_stop = td_nolog_stop;
        ops.log_report = td_nolog_report;
    }
    if (vmig_dev_new(ctx, VMIG_MIGRATION__ALL, &ops, &t, &t.dev) < 0 ||
        vmig_vfu_server_new(ctx, &td_ops, &t, t.dev, &t.srv) < 0) {
        return 1;
    }
    mfd = memfd_create("td-bar1", MFD_CLOEXEC);
    if (mfd < 0 || ftruncate(mfd, 64 << 10) < 0 ||
        pwrite(mfd, "bar1", 4, 0) != 4) {
        return 1;
    }
    if (vmig_vfu_server_add_region(t.srv, 0, 4096,
                                   VMIG_VFU_REGION_READ | VMIG_VFU_REGION_WRITE,
                                   -1, 0) < 0 ||
        vmig_vfu_server_add_region(t.srv, 1, 64 << 10,
                                   VMIG_VFU_REGION_READ | VMIG_VFU_REGION_WRITE,
                                   mfd, 0) < 0 ||
        vmig_vfu_server_add_irq(t.srv, 0, 1) < 0) {
        return 1;
    }
    if (testdev_cfg_space) {
        t.cfg[0] = 0x36; /* vendor 0x1b36 */
        t.cfg[1] = 0x1b;
        t.cfg[2] = (uint8_t)TD_PCI_DEVICE;
        t.cfg[3] = (uint8_t)(TD_PCI_DEVICE >> 8);
        t.cfg[8] = 1; /* revision */
        if (vmig_vfu_server_add_region(
                t.srv, TD_CFG_REGION, sizeof(t.cfg),
                VMIG_VFU_REGION_READ | VMIG_VFU_REGION_WRITE, -1, 0) < 0) {
            return 1;
        }
    }
    {
        /* only the first and third 16 KiB of BAR1 may be mmap'ed */
        const struct vmig_vfu_sparse_area sp[2] = {{0, 16 << 10},
                                                   {32 << 10, 16 << 10}};

        if (vmig_vfu_server_set_sparse(t.srv, 1, sp, 2) < 0) {
            return 1;
        }
    }
    close(mfd);
    child_srv = t.srv;
    signal(SIGTERM, on_term);
    signal(SIGPIPE, SIG_IGN);
    if (path != NULL ? vmig_vfu_server_listen(t.srv, path) < 0
                     : vmig_vfu_server_adopt(t.srv, fd) < 0) {
        return 1;
    }
    ret = vmig_vfu_server_run(t.srv);
    vmig_vfu_server_free(t.srv);
    vmig_dev_free(t.dev);
    vmig_ctx_free(ctx);
    td_free(&t);
    return ret < 0 ? 2 : 0;
}

struct spawn_args {
    const char *path;
    uint64_t seed;
    size_t size;
};

static int
spawned(void *arg)
{
    const struct spawn_args *a = arg;
    bool v = getenv("VMIG_TEST_VERBOSE") != NULL;

    return testdev_serve(a->path, -1, a->seed, a->size,
                         v ? vmig_log_stderr : NULL,
                         v ? VMIG_LOG_DEBUG : VMIG_LOG_INFO);
}

pid_t
testdev_spawn(const char *path, uint64_t seed, size_t size)
{
    struct spawn_args a = {path, seed, size};

    /* up to 120 s: seeding a state of a GiB or more on a loaded machine
     * takes a while */
    return vmig_tk_spawn_server(path, spawned, &a, 120000);
}

int
testdev_stop(pid_t pid)
{
    int status;

    if (kill(pid, SIGTERM) < 0) {
        return -1;
    }
    if (waitpid(pid, &status, 0) != pid) {
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
