/* SPDX-License-Identifier: MIT */
/*
 * flowtab_server.c - glue between the flowtab model and the vfio-user
 * server framework.
 *
 * Threads: the model runs without a worker thread (no_thread); the loop
 * thread alternates between one vfio-user message and one batch of
 * descriptors, so every model call, every DMA window and every callback
 * happens in that one thread.  The only other thread is the P2P sender
 * (when a peer is configured): forwarded records are posted writes,
 * queued here and written into the peer's window by the sender, over a
 * vfio-user client connection to the peer's P2P port (PATH.p2p, a second
 * server in the peer's loop exposing only that window), so two servers
 * forwarding into each other never wait for each other's loop.  The
 * queue lock guards the queue and the sender's busy flag.
 *
 * Lock order (one, everywhere): the framework's lock, the model lock, the
 * server's DMA read lock (held by the loop's one DMA window from
 * fts_translate() until win_release()), the queue lock (nothing is taken
 * under it).  The model gives the window back (fts_release()) before it
 * drops its lock around a P2P write, so it never re-takes its lock under
 * a window.
 *
 * Migration: the device's one state machine is the model's framework
 * object (ft_model_dev()), created with the envelope's callbacks
 * (flowtab_env.c) and this file's hooks: a flush of the posted P2P writes
 * on every arc into a state that may not initiate P2P, and the release of
 * the loop's DMA window on a reset.  The vfio-user server is given that
 * object.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vmig/vfu_client.h>
#include <vmig/vfu_server.h>
#include <vmig_testkit/spawn.h>
#include "flowtab_env.h"
#include "flowtab_server.h"

#define PEER_QUEUE 65536u
#define FLUSH_TIMEOUT_S 5

struct fts {
    vmig_ctx_t *ctx;
    struct vmig_vfu_server *srv;
    struct vmig_vfu_server *psrv; /* inbound P2P port: region 2 only */
    char ppath[128];
    struct ft_model *m;
    unsigned int batch;

    /* the one outstanding DMA window (loop thread only) */
    bool win;
    bool win_wr;
    uint64_t win_iova;
    size_t win_len;

    /* migration data: the envelope around the model's stream */
    struct ft_env env;

    /* P2P sender */
    const char *peer;
    pthread_t sender;
    bool sender_on;
    pthread_mutex_t qlock;
    pthread_cond_t qcv;
    struct ft_p2p_rec *q;
    unsigned int qhead, qlen;
    bool busy; /* the sender is writing a record */
    bool quit;
    uint64_t p2p_lost;
};

/* ------------------------------------------------------------ DMA */

static void
win_release(struct fts *t)
{
    if (t->win) {
        vmig_vfu_dma_put(t->srv, t->win_iova, t->win_len, t->win_wr);
        t->win = false;
    }
}

/* The model's translate: a pointer valid until the next call (or until
 * the loop thread releases it after the model call returns). */
static void *
fts_translate(void *opaque, uint64_t iova, size_t len, bool write)
{
    struct fts *t = opaque;
    void *p;

    win_release(t);
    if (vmig_vfu_dma_get(t->srv, iova, len,
                         write ? VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE
                               : VMIG_VFU_DMA_READ,
                         &p) < 0) {
        return NULL;
    }
    t->win = true;
    t->win_wr = write;
    t->win_iova = iova;
    t->win_len = len;
    return p;
}

static void
fts_release(void *opaque)
{
    win_release(opaque);
}

static const struct ft_dma_ops fts_dma = {.translate = fts_translate,
                                          .release = fts_release};

/* ------------------------------------------------------------ P2P */

static int
peer_write(void *opaque, uint64_t off, const void *buf, size_t len)
{
    struct fts *t = opaque;
    int ret = 0;

    if (off != 0 || len != sizeof(struct ft_p2p_rec)) {
        return -EINVAL;
    }
    pthread_mutex_lock(&t->qlock);
    if (t->qlen == PEER_QUEUE) {
        t->p2p_lost++;
        ret = -ENOSPC;
    } else {
        memcpy(&t->q[(t->qhead + t->qlen) % PEER_QUEUE], buf, len);
        t->qlen++;
        pthread_cond_broadcast(&t->qcv);
    }
    pthread_mutex_unlock(&t->qlock);
    return ret;
}

static const struct ft_peer_ops fts_peer = {.write = peer_write};

static void *
sender_main(void *arg)
{
    struct fts *t = arg;
    struct vmig_vfu_client *c = NULL;

    pthread_mutex_lock(&t->qlock);
    for (;;) {
        struct ft_p2p_rec rec;
        int ret;

        while (t->qlen == 0 && !t->quit) {
            pthread_cond_wait(&t->qcv, &t->qlock);
        }
        if (t->quit) {
            break;
        }
        rec = t->q[t->qhead];
        t->busy = true;
        pthread_mutex_unlock(&t->qlock);
        ret = c == NULL ? vmig_vfu_client_connect(t->ctx, t->peer, 0, &c) : 0;
        if (ret == 0) {
            ret = vmig_vfu_client_region_write(c, FT_SRV_REGION_P2P, 0, &rec,
                                               sizeof(rec));
        }
        if (ret < 0) {
            /* posted: the sender never learns more than this */
            vmig_log(t->ctx, VMIG_LOG_DEBUG,
                     "flowtab: P2P record seq %" PRIu64 " to %s: %s", rec.seq,
                     t->peer, strerror(-ret));
            if (ret == -ENOTCONN || ret == -EPIPE || ret == -ECONNRESET) {
                vmig_vfu_client_free(c);
                c = NULL;
            }
        }
        pthread_mutex_lock(&t->qlock);
        t->qhead = (t->qhead + 1) % PEER_QUEUE;
        t->qlen--;
        t->busy = false;
        pthread_cond_broadcast(&t->qcv);
    }
    pthread_mutex_unlock(&t->qlock);
    vmig_vfu_client_free(c);
    return NULL;
}

/* Complete every posted write in flight (a quiescing arc). */
static void
peer_flush(struct fts *t)
{
    struct timespec ts;
    bool late = false;

    if (!t->sender_on) {
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += FLUSH_TIMEOUT_S;
    pthread_mutex_lock(&t->qlock);
    while ((t->qlen > 0 || t->busy) && !late) {
        late = pthread_cond_timedwait(&t->qcv, &t->qlock, &ts) == ETIMEDOUT;
    }
    pthread_mutex_unlock(&t->qlock);
    if (late) {
        vmig_log(t->ctx, VMIG_LOG_WARNING,
                 "flowtab: P2P writes to %s still in flight after %d s; "
                 "is the peer's loop blocked on this device?",
                 t->peer, FLUSH_TIMEOUT_S);
    }
}

/* ------------------------------------------------------------ regions */

static int
fts_access(void *opaque, unsigned int region, uint64_t off, void *buf,
           uint32_t len, bool wr)
{
    struct fts *t = opaque;
    uint32_t v;
    int ret;

    if (region == FT_SRV_REGION_P2P) {
        if (!wr) {
            memset(buf, 0, len);
            return 0;
        }
        ret = ft_model_p2p_write(t->m, off, buf, len);
        win_release(t); /* the statistics block it wrote */
        return ret;
    }
    if (region == FT_SRV_REGION_DIGEST) {
        uint64_t d[2];

        if (wr) {
            return -EINVAL;
        }
        ft_model_digest(t->m, &d[0], &d[1]);
        memcpy(buf, (uint8_t *)d + off, len);
        return 0;
    }
    if (region != FT_SRV_REGION_BAR0 || len != 4 || off % 4 != 0) {
        return -EINVAL;
    }
    if (!wr) {
        ret = ft_model_reg_read(t->m, (uint32_t)off, &v);
        if (ret == 0) {
            memcpy(buf, &v, 4);
        }
        return ret;
    }
    memcpy(&v, buf, 4);
    ret = ft_model_reg_write(t->m, (uint32_t)off, v);
    win_release(t);
    return ret;
}

/* ------------------------------------------------------------ migration */

/* The envelope's hooks: flush posted P2P writes when quiescing, drop the
 * loop's DMA window on a reset. */
static void
hook_quiesced(void *opaque)
{
    peer_flush(opaque);
}

static void
hook_reset(void *opaque)
{
    win_release(opaque);
}

static const struct ft_env_hooks fts_env_hooks = {
    .quiesced = hook_quiesced,
    .reset = hook_reset,
};

/* The P2P port serves only the inbound window, to peer devices. */
static int
fts_p2p_access(void *opaque, unsigned int region, uint64_t off, void *buf,
               uint32_t len, bool wr)
{
    if (region != FT_SRV_REGION_P2P) {
        return -EINVAL;
    }
    return fts_access(opaque, region, off, buf, len, wr);
}

static const struct vmig_vfu_dev_ops fts_p2p_ops = {
    .region_access = fts_p2p_access,
};

static const struct vmig_vfu_dev_ops fts_ops = {
    .region_access = fts_access,
};

/* ------------------------------------------------------------ setup */

static struct vmig_vfu_server *child_srv;
static struct vmig_vfu_server *child_psrv;

static void
on_term(int sig)
{
    (void)sig;
    /* async-signal-safe: they only write() to an eventfd */
    vmig_vfu_server_stop(child_srv); /* NOLINT(bugprone-signal-handler) */
    if (child_psrv != NULL) {
        vmig_vfu_server_stop(child_psrv); /* NOLINT(bugprone-signal-handler) */
    }
}

static int
fts_loop(struct fts *t)
{
    for (;;) {
        long n = ft_model_poll(t->m, t->batch);
        int ret;

        win_release(t);
        if (n > 0) {
            /* -EAGAIN (masked, or no eventfd wired) stays pending */
            (void)!vmig_vfu_irq_trigger(t->srv, 0, 0);
        }
        struct pollfd pf[2] = {
            {vmig_vfu_server_fd(t->srv), POLLIN, 0},
            {t->psrv != NULL ? vmig_vfu_server_fd(t->psrv) : -1, POLLIN, 0},
        };

        if (poll(pf, 2, n > 0 ? 0 : 100) < 0 && errno != EINTR) {
            return -errno;
        }
        if (pf[1].revents != 0) {
            ret = vmig_vfu_server_dispatch(t->psrv, 0);
            if (ret < 0 && ret != -ESHUTDOWN) {
                return ret;
            }
        }
        ret = vmig_vfu_server_dispatch(t->srv, 0);
        if (ret == -ESHUTDOWN) {
            return 0;
        }
        if (ret < 0) {
            return ret;
        }
    }
}

static int
fts_setup(struct fts *t, const struct ft_server_cfg *cfg)
{
    struct ft_config mc = cfg->model;
    uint32_t flags;

    mc.no_thread = true;
    flags = mc.mig_flags != 0 ? mc.mig_flags : FT_MIG_FLAGS;
    mc.mig_flags = flags;
    mc.mig_ops = ft_env_dev_ops();
    mc.mig_opaque = &t->env;
    t->batch = mc.batch != 0 ? mc.batch : 32;
    if (ft_model_new(t->ctx, &mc, &fts_dma, t, &t->m) < 0) {
        return -1;
    }
    if (ft_env_init(&t->env, t->ctx, t->m, flags, &fts_env_hooks, t) < 0 ||
        vmig_vfu_server_new(t->ctx, &fts_ops, t, ft_model_dev(t->m), &t->srv) <
            0 ||
        vmig_vfu_server_add_region(t->srv, FT_SRV_REGION_BAR0, FT_REG__SIZE,
                                   VMIG_VFU_REGION_READ | VMIG_VFU_REGION_WRITE,
                                   -1, 0) < 0 ||
        vmig_vfu_server_add_region(
            t->srv, FT_SRV_REGION_P2P, FT_SRV_P2P_REGION_SIZE,
            VMIG_VFU_REGION_READ | VMIG_VFU_REGION_WRITE, -1, 0) < 0 ||
        vmig_vfu_server_add_region(t->srv, FT_SRV_REGION_DIGEST,
                                   FT_SRV_DIGEST_SIZE, VMIG_VFU_REGION_READ, -1,
                                   0) < 0 ||
        vmig_vfu_server_add_irq(t->srv, 0, 1) < 0) {
        return -1;
    }
    if (cfg->peer != NULL) {
        t->peer = cfg->peer;
        t->q = calloc(PEER_QUEUE, sizeof(*t->q));
        if (t->q == NULL ||
            pthread_create(&t->sender, NULL, sender_main, t) != 0) {
            return -1;
        }
        t->sender_on = true;
        ft_model_set_peer(t->m, &fts_peer, t);
    }
    return 0;
}

static void
fts_teardown(struct fts *t)
{
    if (t->sender_on) {
        pthread_mutex_lock(&t->qlock);
        t->quit = true;
        pthread_cond_broadcast(&t->qcv);
        pthread_mutex_unlock(&t->qlock);
        pthread_join(t->sender, NULL);
    }
    ft_env_fini(&t->env);
    vmig_vfu_server_free(t->srv);
    vmig_vfu_server_free(t->psrv);
    if (t->ppath[0] != '\0') {
        (void)unlink(t->ppath);
    }
    ft_model_free(t->m);
    free(t->q);
}

int
ft_server_serve(const char *path, int fd, const struct ft_server_cfg *cfg,
                vmig_log_fn *log, int level)
{
    struct fts t = {0};
    int ret;

    pthread_mutex_init(&t.qlock, NULL);
    pthread_cond_init(&t.qcv, NULL);
    if (vmig_ctx_new("flowtab", log, NULL, &t.ctx) < 0) {
        return 1;
    }
    vmig_ctx_set_level(t.ctx, level);
    if (fts_setup(&t, cfg) < 0) {
        vmig_log(t.ctx, VMIG_LOG_ERR,
                 "flowtab: cannot create the device (state %" PRIu64
                 " bytes, chunk %u): check the sizes",
                 cfg->model.state_bytes, cfg->model.chunk_bytes);
        fts_teardown(&t);
        vmig_ctx_free(t.ctx);
        return 1;
    }
    child_srv = t.srv;
    signal(SIGTERM, on_term);
    signal(SIGPIPE, SIG_IGN);
    ret = path != NULL ? vmig_vfu_server_listen(t.srv, path)
                       : vmig_vfu_server_adopt(t.srv, fd);
    if (ret == 0 && path != NULL) {
        /* the P2P port beside the main socket: PATH.p2p */
        if ((size_t)snprintf(t.ppath, sizeof(t.ppath), "%s.p2p", path) >=
            sizeof(t.ppath)) {
            ret = -ENAMETOOLONG;
        } else if ((ret = vmig_vfu_server_new(t.ctx, &fts_p2p_ops, &t, NULL,
                                              &t.psrv)) == 0 &&
                   (ret = vmig_vfu_server_add_region(
                        t.psrv, FT_SRV_REGION_P2P, FT_SRV_P2P_REGION_SIZE,
                        VMIG_VFU_REGION_WRITE, -1, 0)) == 0) {
            ret = vmig_vfu_server_listen(t.psrv, t.ppath);
            child_psrv = t.psrv;
        }
    }
    if (ret == 0) {
        ret = fts_loop(&t);
        if (ret == -ENOTCONN && path == NULL) {
            ret = 0; /* the adopted client left */
        }
        ret = ret < 0 ? 2 : 0;
    } else {
        vmig_log(t.ctx, VMIG_LOG_ERR, "flowtab: cannot serve %s: %s",
                 path != NULL ? path : "the given fd", strerror(-ret));
        ret = 1;
    }
    if (t.p2p_lost > 0) {
        vmig_log(t.ctx, VMIG_LOG_WARNING,
                 "flowtab: %" PRIu64 " P2P records dropped (queue full)",
                 t.p2p_lost);
    }
    fts_teardown(&t);
    vmig_ctx_free(t.ctx);
    pthread_mutex_destroy(&t.qlock);
    pthread_cond_destroy(&t.qcv);
    return ret;
}

struct spawn_args {
    const char *path;
    const struct ft_server_cfg *cfg;
};

static int
spawned(void *arg)
{
    const struct spawn_args *a = arg;
    bool v = getenv("VMIG_TEST_VERBOSE") != NULL;

    return ft_server_serve(a->path, -1, a->cfg, v ? vmig_log_stderr : NULL,
                           v ? VMIG_LOG_DEBUG : VMIG_LOG_INFO);
}

pid_t
ft_server_spawn(const char *path, const struct ft_server_cfg *cfg)
{
    struct spawn_args a = {path, cfg};

    return vmig_tk_spawn_server(path, spawned, &a, 10000);
}

int
ft_server_stop(pid_t pid)
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
