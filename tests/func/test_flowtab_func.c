/* SPDX-License-Identifier: MIT */
/*
 * test_flowtab_func.c - the flowtab device over vfio-user: server
 * processes (flowtab_server.c in forked children, or the vmig-flowtab
 * program), driven by the vmig client with guest RAM in a memfd and the
 * guest driver (ft_guest.c) talking to the registers by region access.
 *
 * usage: test_flowtab_func <case> [program]
 *   migrate    precopy under traffic, STOP_COPY, restore in a second
 *              server, identical digest, traffic continues there
 *   reset      a reset during PRE_COPY fails the reader (ENODEV); a new
 *              session works
 *   badstream  corrupted, truncated and incompatible streams are refused
 *              with the destination untouched
 *   dmalog     the DMA logging report covers exactly the guest pages the
 *              device wrote; completions raise IRQ 0
 *   p2p        two servers forwarding into each other through their P2P
 *              windows
 *   flags      a device without P2P migrates onto one with P2P (seed
 *              002); the reverse is refused during PRE_COPY
 *   tool       the vmig-flowtab program answers on its socket
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vmig/stream.h>
#include <vmig/vfu_client.h>
#include "flowtab_server.h"
#include "flowtab_testlib.h"
#include "ft_guest.h"
#include "func_check.h"

#define RAM_BYTES (4u << 20)
#define AREA_IOVA 0x10000u
#define RING 256u
#define NFLOWS 16u
#define STATE_BYTES (8u << 20)
#define CHUNK_BYTES (64u << 10)

static char dir[256];
static int failures;
static vmig_ctx_t *ctx;
static pid_t kids[16];
static int nkids;

/* Migration flags of the next spawned servers; 0 = all. */
static uint32_t spawn_flags;

static pid_t
spawn(const char *name, uint64_t state, const char *peer, uint32_t id,
      char *path, size_t plen)
{
    struct ft_server_cfg cfg = {0};
    pid_t p;

    snprintf(path, plen, "%s/%s.sock", dir, name);
    cfg.model.state_bytes = state;
    cfg.model.chunk_bytes = CHUNK_BYTES;
    cfg.model.device_id = id;
    cfg.peer = peer;
    cfg.model.mig_flags = spawn_flags;
    p = ft_server_spawn(path, &cfg);
    if (p > 0 && nkids < 16) {
        kids[nkids++] = p;
    }
    return p;
}

static void
reap_all(void)
{
    for (int i = 0; i < nkids; i++) {
        if (kill(kids[i], SIGKILL) == 0) {
            (void)waitpid(kids[i], NULL, 0);
        }
    }
}

static int
reg_read(void *opaque, uint32_t off, uint32_t *val)
{
    return vmig_vfu_client_region_read(opaque, FT_SRV_REGION_BAR0, off, val, 4);
}

static int
reg_write(void *opaque, uint32_t off, uint32_t val)
{
    return vmig_vfu_client_region_write(opaque, FT_SRV_REGION_BAR0, off, &val,
                                        4);
}

static struct ft_guest_regs
regs_of(struct vmig_vfu_client *c)
{
    struct ft_guest_regs r = {reg_read, reg_write, c};

    return r;
}

static int
digest(struct vmig_vfu_client *c, uint64_t d[2])
{
    return vmig_vfu_client_region_read(c, FT_SRV_REGION_DIGEST, 0, d, 16);
}

static int
map_ram(struct vmig_vfu_client *c, const struct ft_ram *r)
{
    return vmig_vfu_client_dma_map(c, 0, r->len,
                                   VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE,
                                   r->fd, 0, r->base);
}

static void
wait_completed(const struct ft_guest *g, uint64_t target)
{
    for (int i = 0; i < 5000 && ft_guest_completed(g) < target; i++) {
        usleep(1000);
    }
}

/* A growing buffer, as a vmig_vfu_sink_fn. */
struct buf {
    uint8_t *p;
    size_t len, cap;
};

static int
buf_sink(void *opaque, const void *data, size_t len)
{
    struct buf *b = opaque;

    if (b->len + len > b->cap) {
        size_t cap = (b->len + len) * 2;
        uint8_t *p = realloc(b->p, cap);

        if (p == NULL) {
            return -ENOMEM;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

/* Forwards saving data straight into a destination's resuming session. */
static int
fwd_sink(void *opaque, const void *data, size_t len)
{
    return vmig_vfu_client_mig_write(opaque, data, len);
}

/* ------------------------------------------------------------ migrate */

static void
case_migrate(void)
{
    struct vmig_vfu_client *cs = NULL, *cd = NULL;
    char ps[300], pd[300];
    struct ft_ram ram;
    struct ft_guest g, g2;
    struct ft_guest_regs rs, rd;
    struct ft_vcpu v = {0};
    uint64_t ds[2], dd[2], init = 0, dirty = 0, total = 0, n, sc = 0, est;
    uint64_t done0;
    int iter;

    CHECK(spawn("src", STATE_BYTES, NULL, 1, ps, sizeof(ps)) > 0);
    CHECK(spawn("dst", STATE_BYTES, NULL, 1, pd, sizeof(pd)) > 0);
    CHECK_RC(connect_retry(ctx, ps, VMIG_VFU_EXT__ALL, &cs), 0);
    CHECK_RC(connect_retry(ctx, pd, VMIG_VFU_EXT__ALL, &cd), 0);
    CHECK_RC(ft_ram_new(&ram, RAM_BYTES), 0);
    CHECK_RC(map_ram(cs, &ram), 0);
    CHECK_RC(map_ram(cd, &ram), 0);
    rs = regs_of(cs);
    CHECK_RC(
        ft_guest_init(&g, ram.base, ram.len, AREA_IOVA, RING, NFLOWS, 7, &rs),
        0);
    v.g[0] = &g;
    v.ng = 1;
    v.burst = 16;
    CHECK_RC(ft_vcpu_start(&v), 0);
    wait_completed(&g, 2000);
    CHECK(ft_guest_completed(&g) >= 2000);

    /* precopy while the vCPU keeps the device busy */
    CHECK_RC(vmig_vfu_client_set_state(cs, VMIG_STATE_PRE_COPY), 0);
    CHECK_RC(vmig_vfu_client_set_state(cd, VMIG_STATE_RESUMING), 0);
    done0 = ft_guest_completed(&g);
    for (iter = 0; iter < 200; iter++) {
        CHECK_RC(vmig_vfu_client_precopy_info(cs, &init, &dirty), 0);
        /* converged, and the guest's traffic demonstrably went on */
        if (init == 0 && dirty <= 24 * (uint64_t)(CHUNK_BYTES + 64) &&
            ft_guest_completed(&g) >= done0 + 500) {
            break;
        }
        CHECK_RC(vmig_vfu_client_mig_save(cs, fwd_sink, cd, &n), -ENOMSG);
        total += n;
        usleep(2000);
    }
    printf("precopy: %d iterations, %llu bytes, dirty at the end %llu, "
           "completions during precopy %llu\n",
           iter, (unsigned long long)total, (unsigned long long)dirty,
           (unsigned long long)(ft_guest_completed(&g) - done0));
    CHECK(iter < 200);
    CHECK(total >= STATE_BYTES);
    CHECK(ft_guest_completed(&g) >= done0 + 500); /* traffic went on */

    /* switchover */
    CHECK_RC(ft_vcpu_stop(&v), 0);
    CHECK_RC(vmig_vfu_client_set_state(cs, VMIG_STATE_STOP_COPY), 0);
    CHECK_RC(vmig_vfu_client_data_size(cs, &est), 0);
    CHECK_RC(vmig_vfu_client_mig_save(cs, fwd_sink, cd, &sc), 0);
    printf("stop-copy: %llu bytes (estimate %llu), %.1f%% of the total\n",
           (unsigned long long)sc, (unsigned long long)est,
           100.0 * (double)sc / (double)(sc + total));
    CHECK(sc < STATE_BYTES / 2);
    CHECK(sc <= est + CHUNK_BYTES);
    CHECK_RC(vmig_vfu_client_set_state(cs, VMIG_STATE_STOP), 0);
    CHECK_RC(digest(cs, ds), 0);
    CHECK_RC(vmig_vfu_client_set_state(cd, VMIG_STATE_STOP), 0);
    CHECK_RC(digest(cd, dd), 0);
    CHECK(ds[0] == dd[0] && ds[1] == dd[1]);

    /* the destination runs the workload on, every completion checked */
    CHECK_RC(vmig_vfu_client_set_state(cd, VMIG_STATE_RUNNING), 0);
    rd = regs_of(cd);
    CHECK_RC(ft_guest_attach(&g2, ram.base, ram.len, AREA_IOVA, &rd), 0);
    done0 = ft_guest_completed(&g2);
    v.g[0] = &g2;
    CHECK_RC(ft_vcpu_start(&v), 0);
    wait_completed(&g2, done0 + 2000);
    CHECK_RC(ft_vcpu_stop(&v), 0);
    CHECK(ft_guest_completed(&g2) >= done0 + 2000);
    CHECK_RC(ft_drain(&g2, 5000), 0);
    CHECK(g2.a->bad == 0);
    vmig_vfu_client_free(cs);
    vmig_vfu_client_free(cd);
    ft_ram_free(&ram);
}

/* ------------------------------------------------------------ reset */

static int
discard(void *opaque, const void *data, size_t len)
{
    (void)opaque;
    (void)data;
    (void)len;
    return 0;
}

static void
case_reset(void)
{
    struct vmig_vfu_client *c = NULL;
    char p[300];
    struct ft_ram ram;
    struct ft_guest g;
    struct ft_guest_regs r;
    struct ft_vcpu v = {0};
    uint8_t b[4096];
    uint64_t n, init, dirty;
    enum vmig_state st;

    CHECK(spawn("reset", STATE_BYTES, NULL, 1, p, sizeof(p)) > 0);
    CHECK_RC(connect_retry(ctx, p, VMIG_VFU_EXT__ALL, &c), 0);
    CHECK_RC(ft_ram_new(&ram, RAM_BYTES), 0);
    CHECK_RC(map_ram(c, &ram), 0);
    r = regs_of(c);
    CHECK_RC(
        ft_guest_init(&g, ram.base, ram.len, AREA_IOVA, RING, NFLOWS, 3, &r),
        0);
    v.g[0] = &g;
    v.ng = 1;
    CHECK_RC(ft_vcpu_start(&v), 0);
    wait_completed(&g, 500);

    CHECK_RC(vmig_vfu_client_set_state(c, VMIG_STATE_PRE_COPY), 0);
    CHECK_RC(vmig_vfu_client_mig_read(c, b, sizeof(b)), sizeof(b));
    CHECK_RC(ft_vcpu_stop(&v), 0);
    CHECK_RC(vmig_vfu_client_reset(c), 0);
    CHECK_RC(vmig_vfu_client_mig_read(c, b, sizeof(b)), -ENODEV);
    CHECK_RC(vmig_vfu_client_mig_save(c, discard, NULL, &n), -ENODEV);
    CHECK_RC(vmig_vfu_client_get_state(c, &st), 0);
    CHECK(st == VMIG_STATE_RUNNING);

    /* the VMM restarts this device's precopy: a new session, to its end */
    CHECK_RC(vmig_vfu_client_set_state(c, VMIG_STATE_PRE_COPY), 0);
    CHECK_RC(vmig_vfu_client_precopy_info(c, &init, &dirty), 0);
    CHECK(init > STATE_BYTES);
    CHECK_RC(vmig_vfu_client_mig_save(c, discard, NULL, &n), -ENOMSG);
    CHECK(n >= STATE_BYTES);
    CHECK_RC(vmig_vfu_client_set_state(c, VMIG_STATE_STOP_COPY), 0);
    CHECK_RC(vmig_vfu_client_mig_save(c, discard, NULL, &n), 0);
    CHECK(n > 0);
    /* a reset in STOP_COPY: the reader of the ended session errs too */
    CHECK_RC(vmig_vfu_client_set_state(c, VMIG_STATE_RUNNING), 0);
    CHECK_RC(vmig_vfu_client_set_state(c, VMIG_STATE_STOP_COPY), 0);
    CHECK_RC(vmig_vfu_client_mig_read(c, b, sizeof(b)), sizeof(b));
    CHECK_RC(vmig_vfu_client_reset(c), 0);
    CHECK_RC(vmig_vfu_client_mig_read(c, b, sizeof(b)), -ENODEV);
    vmig_vfu_client_free(c);
    ft_ram_free(&ram);
}

/* ------------------------------------------------------------ badstream */

/* Load @len bytes of @s into @c; returns the first error or 0. */
static int
load(struct vmig_vfu_client *c, const uint8_t *s, size_t len)
{
    int ret = vmig_vfu_client_set_state(c, VMIG_STATE_RESUMING);

    if (ret == 0) {
        ret = vmig_vfu_client_mig_write(c, s, len);
    }
    if (ret == 0) {
        ret = vmig_vfu_client_set_state(c, VMIG_STATE_STOP);
    }
    return ret;
}

static void
case_badstream(void)
{
    struct vmig_vfu_client *cs = NULL, *cd = NULL, *cx = NULL;
    char ps[300], pd[300], px[300];
    struct ft_ram ram;
    struct ft_guest g;
    struct ft_guest_regs r;
    struct ft_vcpu v = {0};
    struct buf s = {0};
    uint64_t ds[2], d0[2], d1[2], n;
    enum vmig_state st;

    CHECK(spawn("bsrc", STATE_BYTES, NULL, 1, ps, sizeof(ps)) > 0);
    CHECK(spawn("bdst", STATE_BYTES, NULL, 2, pd, sizeof(pd)) > 0);
    CHECK(spawn("bbig", 2 * STATE_BYTES, NULL, 3, px, sizeof(px)) > 0);
    CHECK_RC(connect_retry(ctx, ps, VMIG_VFU_EXT__ALL, &cs), 0);
    CHECK_RC(connect_retry(ctx, pd, 0, &cd), 0); /* plain */
    CHECK_RC(connect_retry(ctx, px, VMIG_VFU_EXT__ALL, &cx), 0);
    CHECK_RC(ft_ram_new(&ram, RAM_BYTES), 0);
    CHECK_RC(map_ram(cs, &ram), 0);
    r = regs_of(cs);
    CHECK_RC(
        ft_guest_init(&g, ram.base, ram.len, AREA_IOVA, RING, NFLOWS, 5, &r),
        0);
    v.g[0] = &g;
    v.ng = 1;
    CHECK_RC(ft_vcpu_start(&v), 0);
    wait_completed(&g, 1000);
    CHECK_RC(ft_vcpu_stop(&v), 0);
    CHECK_RC(ft_drain(&g, 5000), 0);
    CHECK_RC(vmig_vfu_client_set_state(cs, VMIG_STATE_STOP_COPY), 0);
    CHECK_RC(vmig_vfu_client_mig_save(cs, buf_sink, &s, &n), 0);
    CHECK(n == s.len && s.len > STATE_BYTES);
    CHECK_RC(vmig_vfu_client_set_state(cs, VMIG_STATE_STOP), 0);
    CHECK_RC(digest(cs, ds), 0);

    /* the destination's own state, to compare after each refusal */
    CHECK_RC(digest(cd, d0), 0);

    /* one flipped byte in a chunk's payload */
    s.p[s.len / 2] ^= 0x40;
    CHECK_RC(load(cd, s.p, s.len), -EBADMSG);
    s.p[s.len / 2] ^= 0x40;
    CHECK_RC(vmig_vfu_client_get_state(cd, &st), 0);
    CHECK(st == VMIG_STATE_RESUMING);
    CHECK_RC(vmig_vfu_client_reset(cd), 0);
    CHECK_RC(digest(cd, d1), 0);
    CHECK(d0[0] == d1[0] && d0[1] == d1[1]);

    /* truncated: END missing */
    CHECK_RC(load(cd, s.p, s.len - 100), -ENODATA);
    CHECK_RC(vmig_vfu_client_reset(cd), 0);
    CHECK_RC(digest(cd, d1), 0);
    CHECK(d0[0] == d1[0] && d0[1] == d1[1]);

    /* a byte after END */
    {
        uint8_t *p = malloc(s.len + 1);

        CHECK(p != NULL);
        memcpy(p, s.p, s.len);
        p[s.len] = 0;
        CHECK_RC(load(cd, p, s.len + 1), -EPROTO);
        free(p);
    }
    CHECK_RC(vmig_vfu_client_reset(cd), 0);
    CHECK_RC(digest(cd, d1), 0);
    CHECK(d0[0] == d1[0] && d0[1] == d1[1]);

    /* another geometry: refused by the descriptor, before any state
     * (the compatibility part alone is enough to say no) */
    CHECK_RC(vmig_vfu_client_set_state(cx, VMIG_STATE_RESUMING), 0);
    CHECK_RC(vmig_vfu_client_mig_write(cx, s.p, 512), -EOPNOTSUPP);
    CHECK_RC(vmig_vfu_client_reset(cx), 0);

    /* and the intact stream still loads, byte-identical */
    CHECK_RC(load(cd, s.p, s.len), 0);
    CHECK_RC(digest(cd, d1), 0);
    CHECK(ds[0] == d1[0] && ds[1] == d1[1]);
    CHECK(d0[0] != d1[0] || d0[1] != d1[1]);
    free(s.p);
    vmig_vfu_client_free(cs);
    vmig_vfu_client_free(cd);
    vmig_vfu_client_free(cx);
    ft_ram_free(&ram);
}

/* ------------------------------------------------------------ dmalog */

static void
case_dmalog(void)
{
    struct vmig_vfu_client *c = NULL;
    char p[300];
    struct ft_ram ram;
    struct ft_guest g;
    struct ft_guest_regs r;
    struct ft_vcpu v = {0};
    struct vmig_vfu_log_range lr = {0, RAM_BYTES};
    const size_t pages = RAM_BYTES / 4096;
    uint64_t bm[RAM_BYTES / 4096 / 64], dev_lo, dev_hi;
    uint8_t *snap;
    size_t changed = 0, reported = 0;
    uint64_t irqs = 0;
    int efd;

    CHECK(spawn("dlog", STATE_BYTES, NULL, 1, p, sizeof(p)) > 0);
    CHECK_RC(connect_retry(ctx, p, VMIG_VFU_EXT__ALL, &c), 0);
    CHECK_RC(ft_ram_new(&ram, RAM_BYTES), 0);
    CHECK_RC(map_ram(c, &ram), 0);
    r = regs_of(c);
    CHECK_RC(
        ft_guest_init(&g, ram.base, ram.len, AREA_IOVA, RING, NFLOWS, 9, &r),
        0);
    snap = malloc(RAM_BYTES);
    CHECK(snap != NULL);
    memcpy(snap, ram.base, RAM_BYTES);
    CHECK_RC(vmig_vfu_client_log_start(c, 4096, &lr, 1), 0);
    efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    CHECK(efd >= 0);
    CHECK_RC(vmig_vfu_client_set_irqs(c, 0, 0, 1, &efd), 0);
    v.g[0] = &g;
    v.ng = 1;
    CHECK_RC(ft_vcpu_start(&v), 0);
    wait_completed(&g, 3000);
    CHECK_RC(ft_vcpu_stop(&v), 0);
    CHECK_RC(ft_drain(&g, 5000), 0);
    memset(bm, 0, sizeof(bm));
    CHECK_RC(vmig_vfu_client_log_report(c, 0, RAM_BYTES, 4096, bm), 0);

    /* the device writes completions and the statistics block only */
    dev_lo = g.a->cmpl_iova / 4096;
    dev_hi = (g.a->stats_iova + sizeof(struct ft_stats) - 1) / 4096;
    for (size_t i = 0; i < pages; i++) {
        bool bit = (bm[i / 64] >> (i % 64)) & 1;
        bool dev = i >= dev_lo && i <= dev_hi;
        bool diff =
            memcmp(snap + i * 4096, (uint8_t *)ram.base + i * 4096, 4096) != 0;

        if (dev && diff) {
            changed++;
            if (!bit) {
                fprintf(stderr, "page %zu written by the device, not logged\n",
                        i);
            }
            CHECK(bit);
        }
        if (bit) {
            reported++;
            CHECK(dev); /* nothing outside the device's pages */
        }
    }
    /* completions raised IRQ 0 */
    CHECK(read(efd, &irqs, sizeof(irqs)) == sizeof(irqs) && irqs > 0);
    close(efd);
    printf("dmalog: %zu device pages changed, %zu reported; %llu IRQs\n",
           changed, reported, (unsigned long long)irqs);
    CHECK(changed > 0 && reported == dev_hi - dev_lo + 1);
    /* read-and-clear: nothing new since */
    memset(bm, 0, sizeof(bm));
    CHECK_RC(vmig_vfu_client_log_report(c, 0, RAM_BYTES, 4096, bm), 0);
    for (size_t i = 0; i < pages / 64; i++) {
        CHECK(bm[i] == 0);
    }
    CHECK_RC(vmig_vfu_client_log_stop(c), 0);
    free(snap);
    vmig_vfu_client_free(c);
    ft_ram_free(&ram);
}

/* ------------------------------------------------------------ p2p */

static void
case_p2p(void)
{
    struct vmig_vfu_client *ca = NULL, *cb = NULL;
    char pa[300], pb[300];
    struct ft_ram ram;
    struct ft_guest ga, gb;
    struct ft_guest_regs ra, rb;
    struct ft_vcpu v = {0};
    uint32_t flows_b;

    char qa[310], qb[310];

    /* each forwards to the other's P2P port, PATH.p2p */
    snprintf(qa, sizeof(qa), "%s/pa.sock.p2p", dir);
    snprintf(qb, sizeof(qb), "%s/pb.sock.p2p", dir);
    CHECK(spawn("pa", STATE_BYTES, qb, 1, pa, sizeof(pa)) > 0);
    CHECK(spawn("pb", STATE_BYTES, qa, 2, pb, sizeof(pb)) > 0);
    CHECK_RC(connect_retry(ctx, pa, VMIG_VFU_EXT__ALL, &ca), 0);
    CHECK_RC(connect_retry(ctx, pb, VMIG_VFU_EXT__ALL, &cb), 0);
    CHECK_RC(ft_ram_new(&ram, RAM_BYTES), 0);
    CHECK_RC(map_ram(ca, &ram), 0);
    CHECK_RC(map_ram(cb, &ram), 0);
    ra = regs_of(ca);
    rb = regs_of(cb);
    CHECK_RC(
        ft_guest_init(&ga, ram.base, ram.len, AREA_IOVA, RING, NFLOWS, 11, &ra),
        0);
    CHECK_RC(ft_guest_init(&gb, ram.base, ram.len, RAM_BYTES / 2, RING, NFLOWS,
                           13, &rb),
             0);
    v.g[0] = &ga;
    v.g[1] = &gb;
    v.ng = 2;
    v.fwd_every = 4;
    CHECK_RC(ft_vcpu_start(&v), 0);
    wait_completed(&ga, 2000);
    wait_completed(&gb, 2000);
    CHECK_RC(ft_vcpu_stop(&v), 0);
    CHECK_RC(ft_drain(&ga, 5000), 0);
    CHECK_RC(ft_drain(&gb, 5000), 0);
    /* quiesce both (two-phase): every posted write has landed */
    CHECK_RC(vmig_vfu_client_set_state(ca, VMIG_STATE_RUNNING_P2P), 0);
    CHECK_RC(vmig_vfu_client_set_state(cb, VMIG_STATE_RUNNING_P2P), 0);
    /* one plain packet each (allowed in RUNNING_P2P) refreshes the
     * statistics blocks, which are written per batch */
    CHECK_RC(ft_guest_post(&ga, 1, 0), 1);
    CHECK_RC(ft_guest_post(&gb, 1, 0), 1);
    CHECK_RC(ft_drain(&ga, 5000), 0);
    CHECK_RC(ft_drain(&gb, 5000), 0);
    CHECK_RC(reg_read(cb, FT_REG_FLOWS, &flows_b), 0);
    {
        struct ft_stats sa, sb;

        memcpy(&sa, ga.stats, sizeof(sa));
        memcpy(&sb, gb.stats, sizeof(sb));
        printf("p2p: A sent %llu, B received %llu; B sent %llu, A received "
               "%llu\n",
               (unsigned long long)sa.p2p_tx, (unsigned long long)sb.p2p_rx,
               (unsigned long long)sb.p2p_tx, (unsigned long long)sa.p2p_rx);
        /* every posted write landed before the quiescing arc returned */
        CHECK(sa.p2p_tx > 0 && sa.p2p_tx == sb.p2p_rx);
        CHECK(sb.p2p_tx > 0 && sb.p2p_tx == sa.p2p_rx);
    }
    CHECK(flows_b > NFLOWS); /* peer-space flows arrived */
    CHECK_RC(vmig_vfu_client_set_state(ca, VMIG_STATE_STOP), 0);
    CHECK_RC(vmig_vfu_client_set_state(cb, VMIG_STATE_STOP), 0);
    vmig_vfu_client_free(ca);
    vmig_vfu_client_free(cb);
    ft_ram_free(&ram);
}

/* ------------------------------------------------------------ flags */

/*
 * Feature sets: a device without P2P goes PRE_COPY -> STOP_COPY directly (no
 * PRE_COPY_P2P) and lands on a destination that has P2P; a source with
 * P2P is refused by a destination without it, at the descriptor, while
 * the source is still in PRE_COPY.
 */
static void
case_flags(void)
{
    struct vmig_vfu_client *cs = NULL, *cd = NULL, *cp = NULL, *cn = NULL;
    char ps[300], pd[300], pp[300], pn[300];
    uint64_t flags, ds[2], dd[2], n;
    uint8_t b[4096];
    long got;

    spawn_flags = VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_PRE_COPY;
    CHECK(spawn("nop2p-src", STATE_BYTES, NULL, 1, ps, sizeof(ps)) > 0);
    CHECK(spawn("nop2p-dst", STATE_BYTES, NULL, 2, pn, sizeof(pn)) > 0);
    spawn_flags = 0;
    CHECK(spawn("p2p-dst", STATE_BYTES, NULL, 3, pd, sizeof(pd)) > 0);
    CHECK(spawn("p2p-src", STATE_BYTES, NULL, 4, pp, sizeof(pp)) > 0);
    CHECK_RC(connect_retry(ctx, ps, VMIG_VFU_EXT__ALL, &cs), 0);
    CHECK_RC(connect_retry(ctx, pd, VMIG_VFU_EXT__ALL, &cd), 0);
    CHECK_RC(connect_retry(ctx, pp, VMIG_VFU_EXT__ALL, &cp), 0);
    CHECK_RC(connect_retry(ctx, pn, VMIG_VFU_EXT__ALL, &cn), 0);
    CHECK_RC(vmig_vfu_client_mig_flags(cs, &flags), 0);
    CHECK(flags == (VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_PRE_COPY));
    /* no RUNNING_P2P on this device */
    CHECK(vmig_vfu_client_set_state(cs, VMIG_STATE_RUNNING_P2P) < 0);

    /* without P2P -> with P2P: fine */
    CHECK_RC(vmig_vfu_client_set_state(cs, VMIG_STATE_PRE_COPY), 0);
    CHECK_RC(vmig_vfu_client_set_state(cd, VMIG_STATE_RESUMING), 0);
    CHECK_RC(vmig_vfu_client_mig_save(cs, fwd_sink, cd, &n), -ENOMSG);
    CHECK_RC(vmig_vfu_client_set_state(cs, VMIG_STATE_STOP_COPY), 0);
    CHECK_RC(vmig_vfu_client_mig_save(cs, fwd_sink, cd, &n), 0);
    CHECK_RC(vmig_vfu_client_set_state(cs, VMIG_STATE_STOP), 0);
    CHECK_RC(vmig_vfu_client_set_state(cd, VMIG_STATE_STOP), 0);
    CHECK_RC(digest(cs, ds), 0);
    CHECK_RC(digest(cd, dd), 0);
    CHECK(ds[0] == dd[0] && ds[1] == dd[1]);

    /* with P2P -> without: the first PRE_COPY bytes are refused */
    CHECK_RC(vmig_vfu_client_set_state(cp, VMIG_STATE_PRE_COPY), 0);
    got = vmig_vfu_client_mig_read(cp, b, sizeof(b));
    CHECK(got > 0);
    CHECK_RC(vmig_vfu_client_set_state(cn, VMIG_STATE_RESUMING), 0);
    CHECK_RC(vmig_vfu_client_mig_write(cn, b, (size_t)got), -EOPNOTSUPP);
    /* the source never stopped: back to RUNNING, nothing lost */
    CHECK_RC(vmig_vfu_client_set_state(cp, VMIG_STATE_RUNNING), 0);
    CHECK_RC(vmig_vfu_client_reset(cn), 0);
    vmig_vfu_client_free(cs);
    vmig_vfu_client_free(cd);
    vmig_vfu_client_free(cp);
    vmig_vfu_client_free(cn);
}

/* ------------------------------------------------------------ tool */

static void
case_tool(const char *prog)
{
    struct vmig_vfu_client *c = NULL;
    char p[300], arg[320];
    uint32_t id = 0, cap = 0;
    uint64_t flags = 0;
    pid_t pid;
    int status;

    CHECK(prog != NULL);
    snprintf(p, sizeof(p), "%s/tool.sock", dir);
    snprintf(arg, sizeof(arg), "--socket-path=%s", p);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        execl(prog, prog, arg, "--state=2", "--chunk=16", (char *)NULL);
        _exit(127);
    }
    kids[nkids++] = pid;
    for (int i = 0; i < 500; i++) {
        if (connect_retry(ctx, p, VMIG_VFU_EXT__ALL, &c) == 0) {
            break;
        }
        usleep(10000);
    }
    CHECK(c != NULL);
    CHECK_RC(reg_read(c, FT_REG_ID, &id), 0);
    CHECK(id == FT_ID_VALUE);
    CHECK_RC(reg_read(c, FT_REG_CAP, &cap), 0);
    CHECK(cap == ((2u << 20) - FT_CTRL_BYTES) / FT_FLOW_BYTES);
    CHECK_RC(vmig_vfu_client_mig_flags(c, &flags), 0);
    CHECK(flags == FT_MIG_FLAGS);
    vmig_vfu_client_free(c);
    CHECK(kill(pid, SIGTERM) == 0);
    CHECK(waitpid(pid, &status, 0) == pid);
    nkids--;
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void
log_sink(void *opaque, int level, const char *msg)
{
    (void)opaque;
    if (level <= VMIG_LOG_WARNING || getenv("VMIG_TEST_VERBOSE") != NULL) {
        fprintf(stderr, "client: %s\n", msg);
    }
}

int
main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "all";
    bool all = strcmp(which, "all") == 0;

    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, sizeof(dir), "/tmp/vmig-ftfunc.XXXXXX");
    if (mkdtemp(dir) == NULL || vmig_ctx_new("client", log_sink, NULL, &ctx)) {
        return 1;
    }
    if (all || strcmp(which, "migrate") == 0) {
        case_migrate();
    }
    if (all || strcmp(which, "reset") == 0) {
        case_reset();
    }
    if (all || strcmp(which, "badstream") == 0) {
        case_badstream();
    }
    if (all || strcmp(which, "dmalog") == 0) {
        case_dmalog();
    }
    if (all || strcmp(which, "p2p") == 0) {
        case_p2p();
    }
    if (all || strcmp(which, "flags") == 0) {
        case_flags();
    }
    if (strcmp(which, "tool") == 0) {
        case_tool(argc > 2 ? argv[2] : NULL);
    }
    reap_all();
    vmig_ctx_free(ctx);
    {
        char cmd[300];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        (void)!system(cmd);
    }
    printf("%s: %s\n", which, failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
