/* SPDX-License-Identifier: MIT */
/*
 * vfu_server.c - the vfio-user device-server framework.
 *
 * One client at a time (the spec's model).  Each received message is
 * decoded by proto.c (sizes, counts, flags), then dispatched through
 * cmd_table: the descriptor says in which migration states the command is
 * legal, and the handler fills a reply.  Handlers validate everything that
 * depends on device configuration (indexes, bounds) before touching
 * anything, so a refused message changes nothing.
 *
 * Locks:
 *   dma_lock (rwlock)  - the DMA map table and the built-in dirty log;
 *                        writers: DMA_MAP/UNMAP, logging start/stop and
 *                        disconnect; readers: every DMA access, which
 *                        keeps unmap waiting for in-flight DMA as the
 *                        spec requires.
 *   irq_lock           - IRQ eventfds, mask and pending bits.
 *   send_lock          - writes to the connection (loop replies and
 *                        server-to-client DMA messages from any thread).
 *   pend_lock/pend_cv  - the one outstanding server-to-client request.
 *   dmamsg_lock        - serialises message-based DMA requests.
 * Everything else belongs to the loop thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <vmig/mig.h>
#include <vmig/vfu_server.h>
#include "internal.h"
#include "tran.h"
#include "vfu_priv.h"

/* A stalled peer costs at most this long per wait. */
#define VFU_TIMEOUT_MS 10000
/* Consecutive refused messages before a client is disconnected. */
#define VFU_MAX_ERRS_IN_ROW 64
/* Largest message accepted before VERSION is negotiated. */
#define VFU_PRE_VERSION_MAX (VMIG_VFU_MAX_VERSION_JSON + 64)
/* Built-in dirty log: bitmap bits across all ranges. */
#define VFU_MAX_DIRTY_BITS (1ull << 28)
/* Bulk channel: frames we send (cache-sized; any size up to
 * VMIG_VFU_BULK_FRAME_MAX is accepted). */
#define VFU_BULK_CHUNK (256u << 10)

struct region {
    bool present;
    uint64_t size;
    uint32_t flags;
    int fd;
    uint64_t fd_off;
    uint8_t *cap; /* prebuilt sparse-mmap capability, or NULL */
    size_t caplen;
};

struct irq {
    uint32_t count;
    int *efd;
    uint8_t *masked;
    uint8_t *pending;
};

struct dma_ent {
    uint64_t iova;
    uint64_t size;
    uint32_t prot;
    uint8_t *va;    /* NULL: message-based */
    void *map_base; /* what to munmap */
    size_t map_len;
};

struct dirty_range {
    uint64_t iova;
    uint64_t len;
    uint64_t *bits; /* one bit per page_size */
};

struct vmig_vfu_server {
    vmig_ctx_t *ctx;
    const struct vmig_vfu_dev_ops *ops;
    void *opaque;
    struct vmig_mig *mig; /* NULL for a device without migration */
    uint64_t mig_flags;

    struct region regions[VMIG_VFU_MAX_REGIONS];
    unsigned int nregions;
    struct irq irqs[VMIG_VFU_MAX_IRQS];
    unsigned int nirqs;
    pthread_mutex_t irq_lock;

    int listen_fd;
    char *path;
    int conn;
    bool adopted;
    int stop_efd;
    int epfd;  /* stop_efd + (the client, or the listening socket) */
    bool fuzz; /* replies dropped; see vmig__vfu_server_feed() */

    /* negotiated with the current client */
    bool negotiated;
    struct vmig_vfu_caps peer;
    uint32_t ext;
    uint32_t xfer_in;  /* largest transfer we accept (we advertise it) */
    uint32_t xfer_out; /* largest transfer the client accepts */
    unsigned int errs_in_row;

    pthread_rwlock_t dma_lock;
    struct dma_ent *dma;
    unsigned int ndma;
    bool log_on;
    bool log_dev; /* device callbacks do the logging */
    uint64_t log_pgsize;
    struct dirty_range *log_r;
    unsigned int log_n;

    pthread_mutex_t send_lock;
    pthread_mutex_t dmamsg_lock;
    pthread_mutex_t pend_lock;
    pthread_cond_t pend_cv;
    bool pend_active;
    bool pend_done;
    uint16_t pend_id;
    int pend_ret;
    struct vmig__tran_msg pend_msg;
    uint16_t next_id;

    /* data session as seen by this client */
    uint64_t sess_gen;
    bool sess_eof;
    int bulk_fd;
    uint8_t *scratch;
};

/* The server whose loop runs on this thread (callbacks see it). */
static __thread struct vmig_vfu_server *loop_server;

/* What a handler answers: up to two payload parts and fds. */
struct reply {
    uint8_t inl[64] __attribute__((aligned(8))); /* small fixed parts */
    char json[512];
    const void *p1;
    size_t l1;
    const void *p2;
    size_t l2;
    int fds[1];
    unsigned int nfds;
    bool disconnect;
};

struct req {
    const struct vmig_vfu_msg *m;
    struct vmig__tran_msg *raw;
};

/* Copy a small fixed reply part into the reply itself. */
static void
rep_inline(struct reply *rep, const void *a, size_t la, const void *b,
           size_t lb)
{
    assert(la + lb <= sizeof(rep->inl));
    memcpy(rep->inl, a, la);
    if (lb > 0) {
        memcpy(rep->inl + la, b, lb);
    }
    rep->p1 = rep->inl;
    rep->l1 = la + lb;
}

typedef int (*handler_fn)(struct vmig_vfu_server *s, struct req *r,
                          struct reply *rep);

#define IN(st) (1u << VMIG_STATE_##st)
#define ALL_STATES 0xffu
#define ACCESS_STATES                                                          \
    (IN(STOP) | IN(RUNNING) | IN(RUNNING_P2P) | IN(PRE_COPY) | IN(PRE_COPY_P2P))
#define SAVING_STATES (IN(PRE_COPY) | IN(PRE_COPY_P2P) | IN(STOP_COPY))

struct cmd_desc {
    const char *name;
    size_t min_len;  /* payload bytes the handler reads unconditionally */
    uint32_t states; /* bit per enum vmig_state it is legal in */
    handler_fn handle;
    /* optional: the errno for a state refusal (default -EBUSY) */
    int (*refuse)(struct vmig_vfu_server *s);
};

static uint32_t
rd32(const uint8_t *p, size_t off)
{
    uint32_t v;

    memcpy(&v, p + off, sizeof(v));
    return v;
}

static uint64_t
rd64(const uint8_t *p, size_t off)
{
    uint64_t v;

    memcpy(&v, p + off, sizeof(v));
    return v;
}

static enum vmig_state
cur_state(struct vmig_vfu_server *s)
{
    return s->mig != NULL ? vmig_mig_state(s->mig) : VMIG_STATE_RUNNING;
}

/* ------------------------------------------------------------------ mig */

static int
mig_step_cb(void *opaque, enum vmig_state from, enum vmig_state to,
            bool *broken)
{
    struct vmig_vfu_server *s = opaque;

    return s->ops->mig_step(s->opaque, from, to, broken);
}

static void
mig_reset_cb(void *opaque)
{
    struct vmig_vfu_server *s = opaque;

    if (s->ops->reset != NULL) {
        s->ops->reset(s->opaque);
    }
}

static const struct vmig_mig_ops server_mig_ops = {
    .step = mig_step_cb,
    .reset = mig_reset_cb,
};

/* Note a session opened since we last looked. */
static void
sess_refresh(struct vmig_vfu_server *s)
{
    struct vmig_session_info info;

    if (s->mig == NULL) {
        return;
    }
    vmig_mig_session(s->mig, &info);
    if (info.kind != VMIG_SESSION_NONE && info.generation != s->sess_gen) {
        s->sess_gen = info.generation;
        s->sess_eof = false;
    }
}

/* 0 while the session of @kind we know is open, else -ENODEV / -EBUSY. */
static int
sess_check(struct vmig_vfu_server *s, enum vmig_session_kind kind)
{
    int ret;

    if (s->mig == NULL) {
        return -EOPNOTSUPP;
    }
    sess_refresh(s);
    ret = vmig_mig_session_check(s->mig, s->sess_gen, kind);
    if (ret == -EBADF) {
        return -EBUSY;
    }
    return ret;
}

static int
refuse_save(struct vmig_vfu_server *s)
{
    return sess_check(s, VMIG_SESSION_SAVE) == -ENODEV ? -ENODEV : -EBUSY;
}

static int
refuse_resume(struct vmig_vfu_server *s)
{
    return sess_check(s, VMIG_SESSION_RESUME) == -ENODEV ? -ENODEV : -EBUSY;
}

/* ---------------------------------------------------------------- setup */

static int
ep_add(struct vmig_vfu_server *s, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};

    return epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void
ep_del(struct vmig_vfu_server *s, int fd)
{
    (void)epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
}

int
vmig_vfu_server_new(vmig_ctx_t *ctx, const struct vmig_vfu_dev_ops *ops,
                    void *opaque, uint64_t mig_flags,
                    struct vmig_vfu_server **out)
{
    struct vmig_vfu_server *s;
    int ret;

    if (ops == NULL || out == NULL) {
        return -EINVAL;
    }
    if (mig_flags != 0 &&
        (vmig_flags_validate(mig_flags) < 0 || ops->mig_step == NULL ||
         ops->mig_read == NULL || ops->mig_write == NULL)) {
        return -EINVAL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    s->ctx = ctx;
    s->ops = ops;
    s->opaque = opaque;
    s->mig_flags = mig_flags;
    s->listen_fd = -1;
    s->conn = -1;
    s->bulk_fd = -1;
    s->xfer_in = VMIG_VFU_DEF_MAX_DATA_XFER;
    s->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->stop_efd < 0) {
        ret = -errno;
        goto err_free;
    }
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0 || ep_add(s, s->stop_efd) < 0) {
        ret = -errno;
        if (s->epfd >= 0) {
            close(s->epfd);
        }
        goto err_efd;
    }
    if (mig_flags != 0) {
        ret = vmig_mig_new(ctx, mig_flags, &server_mig_ops, s, &s->mig);
        if (ret < 0) {
            goto err_ep;
        }
    }
    pthread_mutex_init(&s->irq_lock, NULL);
    pthread_mutex_init(&s->send_lock, NULL);
    pthread_mutex_init(&s->dmamsg_lock, NULL);
    pthread_mutex_init(&s->pend_lock, NULL);
    pthread_cond_init(&s->pend_cv, NULL);
    pthread_rwlock_init(&s->dma_lock, NULL);
    for (unsigned int i = 0; i < VMIG_VFU_MAX_REGIONS; i++) {
        s->regions[i].fd = -1;
    }
    *out = s;
    return 0;

err_ep:
    close(s->epfd);
err_efd:
    close(s->stop_efd);
err_free:
    free(s);
    return ret;
}

int
vmig_vfu_server_add_region(struct vmig_vfu_server *s, unsigned int index,
                           uint64_t size, uint32_t flags, int fd,
                           uint64_t fd_offset)
{
    struct region *r;

    if (index >= VMIG_VFU_MAX_REGIONS || size == 0 ||
        (flags & ~(VMIG_VFU_REGION_READ | VMIG_VFU_REGION_WRITE)) ||
        (fd >= 0 && (fd_offset % 4096) != 0) ||
        (fd < 0 && s->ops->region_access == NULL)) {
        return -EINVAL;
    }
    r = &s->regions[index];
    if (r->present) {
        return -EEXIST;
    }
    if (fd >= 0) {
        r->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (r->fd < 0) {
            return -EBADF;
        }
    }
    r->present = true;
    r->size = size;
    r->flags = flags;
    r->fd_off = fd_offset;
    if (index + 1 > s->nregions) {
        s->nregions = index + 1;
    }
    return 0;
}

int
vmig_vfu_server_set_sparse(struct vmig_vfu_server *s, unsigned int index,
                           const struct vmig_vfu_sparse_area *areas,
                           unsigned int n)
{
    struct vmig_vfu_sparse_mmap h = {{VMIG_VFU_CAP_SPARSE_MMAP, 1, 0}, n, 0};
    struct region *g;
    uint8_t *cap;

    if (index >= VMIG_VFU_MAX_REGIONS || n == 0 || n > 64 || areas == NULL) {
        return -EINVAL;
    }
    g = &s->regions[index];
    if (!g->present || g->fd < 0) {
        return -EINVAL;
    }
    for (unsigned int i = 0; i < n; i++) {
        if (areas[i].offset > g->size ||
            areas[i].size > g->size - areas[i].offset) {
            return -EINVAL;
        }
    }
    cap = malloc(sizeof(h) + sizeof(*areas) * n);
    if (cap == NULL) {
        return -ENOMEM;
    }
    memcpy(cap, &h, sizeof(h));
    memcpy(cap + sizeof(h), areas, sizeof(*areas) * n);
    free(g->cap);
    g->cap = cap;
    g->caplen = sizeof(h) + sizeof(*areas) * n;
    return 0;
}

int
vmig_vfu_server_add_irq(struct vmig_vfu_server *s, unsigned int index,
                        unsigned int count)
{
    struct irq *q;

    if (index >= VMIG_VFU_MAX_IRQS || count == 0 ||
        count > VMIG_VFU_MAX_IRQ_COUNT) {
        return -EINVAL;
    }
    q = &s->irqs[index];
    if (q->count != 0) {
        return -EEXIST;
    }
    q->efd = malloc(sizeof(int) * count);
    q->masked = calloc(count, 1);
    q->pending = calloc(count, 1);
    if (q->efd == NULL || q->masked == NULL || q->pending == NULL) {
        free(q->efd);
        free(q->masked);
        free(q->pending);
        memset(q, 0, sizeof(*q));
        return -ENOMEM;
    }
    for (unsigned int i = 0; i < count; i++) {
        q->efd[i] = -1;
    }
    q->count = count;
    if (index + 1 > s->nirqs) {
        s->nirqs = index + 1;
    }
    return 0;
}

int
vmig_vfu_server_listen(struct vmig_vfu_server *s, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    mode_t old;
    int fd, ret;

    if (s->listen_fd >= 0) {
        return -EBUSY;
    }
    if (path == NULL || strlen(path) >= sizeof(sa.sun_path)) {
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    {
        struct stat st;

        /* Replace a stale socket, never anything else. */
        if (lstat(path, &st) == 0) {
            if (!S_ISSOCK(st.st_mode)) {
                vmig_err(s->ctx,
                         "vfu: %s exists and is not a socket; not "
                         "replacing it",
                         path);
                close(fd);
                return -EEXIST;
            }
            (void)unlink(path);
        }
    }
    /* The umask makes the socket 0600 from birth, so no other user can
     * connect in between (umask is per process: a thread creating files
     * at this very moment would get 0600 too, which errs on the safe
     * side); the chmod repeats it for filesystems that ignore it. */
    old = umask(0177);
    ret = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (ret == 0) {
        ret = chmod(path, 0600);
    }
    if (ret < 0 || listen(fd, 4) < 0) {
        ret = -errno;
        vmig_err(s->ctx, "vfu: cannot listen on %s: %s", path, strerror(-ret));
        close(fd);
        return ret;
    }
    s->path = strdup(path);
    if (s->path == NULL) {
        close(fd);
        (void)unlink(path);
        return -ENOMEM;
    }
    if (s->conn < 0 && ep_add(s, fd) < 0) {
        ret = -errno;
        close(fd);
        (void)unlink(path);
        free(s->path);
        s->path = NULL;
        return ret;
    }
    s->listen_fd = fd;
    vmig_info(s->ctx, "vfu: listening on %s", path);
    return 0;
}

/* ----------------------------------------------------------- connection */

static void
log_free_locked(struct vmig_vfu_server *s)
{
    for (unsigned int i = 0; i < s->log_n; i++) {
        free(s->log_r[i].bits);
    }
    free(s->log_r);
    s->log_r = NULL;
    s->log_n = 0;
    s->log_on = false;
    s->log_dev = false;
}

static void
dma_free_locked(struct vmig_vfu_server *s)
{
    for (unsigned int i = 0; i < s->ndma; i++) {
        if (s->dma[i].map_base != NULL) {
            munmap(s->dma[i].map_base, s->dma[i].map_len);
        }
    }
    free(s->dma);
    s->dma = NULL;
    s->ndma = 0;
}

/* Forget everything about the current client. */
static void
conn_close(struct vmig_vfu_server *s, const char *why)
{
    pthread_mutex_lock(&s->send_lock);
    if (s->conn >= 0) {
        vmig_info(s->ctx, "vfu: client disconnected: %s", why);
        ep_del(s, s->conn);
        close(s->conn);
        s->conn = -1;
        /* listen again for the next client */
        if (s->listen_fd >= 0) {
            (void)ep_add(s, s->listen_fd);
        }
    }
    pthread_mutex_unlock(&s->send_lock);
    if (s->bulk_fd >= 0) {
        close(s->bulk_fd);
        s->bulk_fd = -1;
    }
    pthread_rwlock_wrlock(&s->dma_lock);
    if (s->log_on && s->log_dev && s->ops->log_stop != NULL) {
        (void)s->ops->log_stop(s->opaque);
    }
    log_free_locked(s);
    dma_free_locked(s);
    pthread_rwlock_unlock(&s->dma_lock);
    pthread_mutex_lock(&s->irq_lock);
    for (unsigned int i = 0; i < s->nirqs; i++) {
        struct irq *q = &s->irqs[i];

        for (unsigned int j = 0; j < q->count; j++) {
            if (q->efd[j] >= 0) {
                close(q->efd[j]);
                q->efd[j] = -1;
            }
            q->masked[j] = 0;
            q->pending[j] = 0;
        }
    }
    pthread_mutex_unlock(&s->irq_lock);
    pthread_mutex_lock(&s->pend_lock);
    if (s->pend_active && !s->pend_done) {
        s->pend_done = true;
        s->pend_ret = -ENOTCONN;
        pthread_cond_broadcast(&s->pend_cv);
    }
    pthread_mutex_unlock(&s->pend_lock);
    s->negotiated = false;
    s->ext = 0;
    s->xfer_in = VMIG_VFU_DEF_MAX_DATA_XFER;
    s->xfer_out = VMIG_VFU_DEF_MAX_DATA_XFER;
    s->errs_in_row = 0;
}

void
vmig_vfu_server_free(struct vmig_vfu_server *s)
{
    if (s == NULL) {
        return;
    }
    conn_close(s, "server shut down");
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
        (void)unlink(s->path);
    }
    free(s->path);
    for (unsigned int i = 0; i < VMIG_VFU_MAX_REGIONS; i++) {
        if (s->regions[i].fd >= 0) {
            close(s->regions[i].fd);
        }
        free(s->regions[i].cap);
    }
    for (unsigned int i = 0; i < VMIG_VFU_MAX_IRQS; i++) {
        free(s->irqs[i].efd);
        free(s->irqs[i].masked);
        free(s->irqs[i].pending);
    }
    vmig_mig_free(s->mig);
    close(s->stop_efd);
    close(s->epfd);
    free(s->scratch);
    pthread_mutex_destroy(&s->irq_lock);
    pthread_mutex_destroy(&s->send_lock);
    pthread_mutex_destroy(&s->dmamsg_lock);
    pthread_mutex_destroy(&s->pend_lock);
    pthread_cond_destroy(&s->pend_cv);
    pthread_rwlock_destroy(&s->dma_lock);
    free(s);
}

int
vmig_vfu_server_adopt(struct vmig_vfu_server *s, int fd)
{
    if (s->conn >= 0) {
        return -EBUSY;
    }
    if (fd < 0) {
        return -EBADF;
    }
    if (ep_add(s, fd) < 0) {
        return -errno;
    }
    if (s->listen_fd >= 0) {
        ep_del(s, s->listen_fd);
    }
    s->conn = fd;
    s->adopted = true;
    return 0;
}

void
vmig_vfu_server_stop(struct vmig_vfu_server *s)
{
    uint64_t one = 1;

    (void)!write(s->stop_efd, &one, sizeof(one));
}

enum vmig_state
vmig_vfu_server_state(struct vmig_vfu_server *s)
{
    return cur_state(s);
}

void
vmig_vfu_server_device_reset(struct vmig_vfu_server *s)
{
    if (s->mig != NULL) {
        vmig_mig_reset(s->mig);
    } else if (s->ops->reset != NULL) {
        s->ops->reset(s->opaque);
    }
}

static int
send_msg(struct vmig_vfu_server *s, struct vmig_vfu_hdr *h, const void *p1,
         size_t l1, const void *p2, size_t l2, const int *fds,
         unsigned int nfds)
{
    int ret;

    if (s->fuzz) {
        return 0;
    }
    pthread_mutex_lock(&s->send_lock);
    ret = s->conn < 0 ? -ENOTCONN
                      : vmig__tran_send(s->conn, VFU_TIMEOUT_MS, h, p1, l1, p2,
                                        l2, fds, nfds);
    pthread_mutex_unlock(&s->send_lock);
    return ret;
}

/* ------------------------------------------------------------------ IRQ */

int
vmig_vfu_irq_trigger(struct vmig_vfu_server *s, unsigned int index,
                     unsigned int sub)
{
    uint64_t one = 1;
    int ret = 0;
    struct irq *q;

    if (index >= s->nirqs || sub >= s->irqs[index].count) {
        return -EINVAL;
    }
    q = &s->irqs[index];
    pthread_mutex_lock(&s->irq_lock);
    if (q->masked[sub] || q->efd[sub] < 0) {
        q->pending[sub] = 1;
        ret = -EAGAIN;
    } else if (write(q->efd[sub], &one, sizeof(one)) != sizeof(one)) {
        ret = -errno;
    }
    pthread_mutex_unlock(&s->irq_lock);
    return ret;
}

/* ------------------------------------------------------------------ DMA */

static void
dirty_mark_locked(struct vmig_vfu_server *s, uint64_t iova, uint64_t len)
{
    if (!s->log_on || s->log_dev || len == 0) {
        return;
    }
    for (unsigned int i = 0; i < s->log_n; i++) {
        struct dirty_range *r = &s->log_r[i];
        uint64_t a = iova > r->iova ? iova : r->iova;
        uint64_t e1 = iova + len, e2 = r->iova + r->len;
        uint64_t b = e1 < e2 ? e1 : e2;

        if (a >= b) {
            continue;
        }
        for (uint64_t p = (a - r->iova) / s->log_pgsize;
             p <= (b - 1 - r->iova) / s->log_pgsize; p++) {
            __atomic_fetch_or(&r->bits[p / 64], 1ull << (p % 64),
                              __ATOMIC_RELAXED);
        }
    }
}

/* Index of the map containing @iova, or -1. */
static int
dma_find_locked(struct vmig_vfu_server *s, uint64_t iova)
{
    unsigned int lo = 0, hi = s->ndma;

    while (lo < hi) {
        unsigned int mid = (lo + hi) / 2;
        struct dma_ent *e = &s->dma[mid];

        if (iova < e->iova) {
            hi = mid;
        } else if (iova - e->iova >= e->size) {
            lo = mid + 1;
        } else {
            return (int)mid;
        }
    }
    return -1;
}

/* Route a reply message to a waiting device thread. */
static void
route_reply(struct vmig_vfu_server *s, struct vmig__tran_msg *raw, uint16_t id)
{
    pthread_mutex_lock(&s->pend_lock);
    if (s->pend_active && !s->pend_done && s->pend_id == id) {
        s->pend_msg = *raw;
        memset(raw, 0, sizeof(*raw));
        s->pend_ret = 0;
        s->pend_done = true;
        pthread_cond_broadcast(&s->pend_cv);
    } else {
        vmig_dbg(s->ctx, "vfu: msg %#x: unexpected reply dropped", id);
    }
    pthread_mutex_unlock(&s->pend_lock);
}

/*
 * Loop thread, inside a callback: read until the reply @id arrives.
 * Replies for a device thread's request are routed to it; a client
 * command cannot be handled here (we are inside another one), so it is
 * refused with EBUSY.
 */
static int
inline_wait(struct vmig_vfu_server *s, uint16_t id, struct vmig__tran_msg *rm)
{
    for (;;) {
        struct vmig_vfu_hdr h;
        int ret;

        ret = vmig__tran_recv(s->conn, VFU_TIMEOUT_MS,
                              (size_t)s->xfer_out + 4096, rm);
        if (ret < 0) {
            return ret;
        }
        memcpy(&h, rm->buf, sizeof(h));
        if ((h.flags & VMIG_VFU_F_TYPE_MASK) == VMIG_VFU_F_TYPE_REPLY) {
            if (h.id == id) {
                return 0;
            }
            route_reply(s, rm, h.id);
        } else if (!(h.flags & VMIG_VFU_F_NO_REPLY)) {
            struct vmig_vfu_hdr o = {.id = h.id,
                                     .cmd = h.cmd,
                                     .flags = VMIG_VFU_F_TYPE_REPLY |
                                              VMIG_VFU_F_ERROR,
                                     .error = EBUSY};

            vmig_dbg(s->ctx, "vfu: msg %#x: %s while waiting for DMA: EBUSY",
                     h.id, vmig_vfu_cmd_name(h.cmd));
            (void)send_msg(s, &o, NULL, 0, NULL, 0, NULL, 0);
        }
        vmig__tran_msg_release(rm);
    }
}

/*
 * Send a server-to-client request and wait for its reply.  From the loop
 * thread the reply is read inline (the client is blocked in its own
 * request and answers ours first); other threads are served one at a
 * time (dmamsg_lock) and the loop hands their reply over through pend_*.
 */
static int
dma_msg(struct vmig_vfu_server *s, uint16_t cmd, uint64_t iova, void *buf,
        size_t len)
{
    const struct vmig_vfu_limits lim = {s->xfer_out, VMIG_VFU_MAX_FDS};
    struct vmig_vfu_dma_rw d = {.addr = iova, .count = len};
    struct vmig_vfu_hdr h = {.cmd = cmd, .flags = VMIG_VFU_F_TYPE_COMMAND};
    struct vmig__tran_msg rm;
    struct vmig_vfu_msg m;
    bool inline_read;
    int ret;

    if (s->fuzz) {
        return -ENOTCONN;
    }
    inline_read = loop_server == s;
    if (!inline_read) {
        pthread_mutex_lock(&s->dmamsg_lock);
    }
    pthread_mutex_lock(&s->pend_lock);
    h.id = ++s->next_id;
    if (!inline_read) {
        s->pend_id = h.id;
        s->pend_active = true;
        s->pend_done = false;
    }
    pthread_mutex_unlock(&s->pend_lock);

    ret = send_msg(s, &h, &d, sizeof(d),
                   cmd == VMIG_VFU_CMD_DMA_WRITE ? buf : NULL,
                   cmd == VMIG_VFU_CMD_DMA_WRITE ? len : 0, NULL, 0);
    if (ret == 0 && inline_read) {
        ret = inline_wait(s, h.id, &rm);
    } else if (!inline_read) {
        struct timespec dl;

        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += VFU_TIMEOUT_MS / 1000;
        pthread_mutex_lock(&s->pend_lock);
        while (ret == 0 && !s->pend_done) {
            if (pthread_cond_timedwait(&s->pend_cv, &s->pend_lock, &dl) ==
                ETIMEDOUT) {
                s->pend_done = true;
                s->pend_ret = -ETIMEDOUT;
            }
        }
        if (ret == 0) {
            ret = s->pend_ret;
            rm = s->pend_msg;
        }
        memset(&s->pend_msg, 0, sizeof(s->pend_msg));
        s->pend_active = false;
        pthread_mutex_unlock(&s->pend_lock);
    }
    if (ret < 0) {
        goto out;
    }
    ret = vmig_vfu_decode(rm.buf, rm.len, rm.nfds, &lim, &m, NULL);
    if (ret == 0 && (m.hdr.id != h.id || m.hdr.cmd != cmd)) {
        ret = -EPROTO;
    }
    if (ret == 0 && (m.hdr.flags & VMIG_VFU_F_ERROR)) {
        ret = m.hdr.error != 0 && m.hdr.error < 4096 ? -(int)m.hdr.error : -EIO;
    }
    if (ret == 0 && cmd == VMIG_VFU_CMD_DMA_READ) {
        if (rd64(m.payload, 8) != len) {
            ret = -EPROTO;
        } else {
            memcpy(buf, m.payload + sizeof(d), len);
        }
    }
    vmig__tran_msg_release(&rm);
out:
    if (!inline_read) {
        pthread_mutex_unlock(&s->dmamsg_lock);
    }
    if (ret < 0) {
        vmig_dbg(s->ctx, "vfu: %s %#llx+%zu failed: %s", vmig_vfu_cmd_name(cmd),
                 (unsigned long long)iova, len, strerror(-ret));
    }
    return ret;
}

static int
dma_rw(struct vmig_vfu_server *s, uint64_t iova, void *buf, size_t len,
       bool write)
{
    uint8_t *p = buf;
    int ret = 0;

    if (len == 0) {
        return 0;
    }
    if (iova + len < iova) {
        return -EFAULT;
    }
    pthread_rwlock_rdlock(&s->dma_lock);
    while (len > 0) {
        int i = dma_find_locked(s, iova);
        struct dma_ent e;
        size_t n;

        if (i < 0) {
            ret = -EFAULT;
            break;
        }
        e = s->dma[i];
        if (!(e.prot & (write ? VMIG_VFU_DMA_WRITE : VMIG_VFU_DMA_READ))) {
            ret = -EFAULT;
            break;
        }
        n = e.size - (iova - e.iova) < len ? e.size - (iova - e.iova) : len;
        if (e.va != NULL) {
            if (write) {
                memcpy(e.va + (iova - e.iova), p, n);
            } else {
                memcpy(p, e.va + (iova - e.iova), n);
            }
        } else {
            /* Message-based: chunks of the client's max transfer.  The
             * lock is dropped meanwhile (no mapping is referenced) so
             * the loop thread can take it for DMA_MAP while it also has
             * to route our reply. */
            pthread_rwlock_unlock(&s->dma_lock);
            for (size_t done = 0; done < n && ret == 0;) {
                size_t c = n - done < s->xfer_out ? n - done : s->xfer_out;

                ret = dma_msg(
                    s, write ? VMIG_VFU_CMD_DMA_WRITE : VMIG_VFU_CMD_DMA_READ,
                    iova + done, p + done, c);
                done += c;
            }
            pthread_rwlock_rdlock(&s->dma_lock);
            if (ret < 0) {
                break;
            }
        }
        if (write) {
            dirty_mark_locked(s, iova, n);
        }
        iova += n;
        p += n;
        len -= n;
    }
    pthread_rwlock_unlock(&s->dma_lock);
    return ret;
}

int
vmig_vfu_dma_get(struct vmig_vfu_server *s, uint64_t iova, size_t len,
                 uint32_t prot, void **ptr)
{
    const struct dma_ent *e;
    int i;

    if (len == 0 || iova + len < iova ||
        (prot & ~(VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE)) || ptr == NULL) {
        return -EINVAL;
    }
    pthread_rwlock_rdlock(&s->dma_lock);
    i = dma_find_locked(s, iova);
    if (i < 0) {
        pthread_rwlock_unlock(&s->dma_lock);
        return -EFAULT;
    }
    e = &s->dma[i];
    if (len > e->size - (iova - e->iova) || (e->prot & prot) != prot) {
        pthread_rwlock_unlock(&s->dma_lock);
        return -EFAULT;
    }
    if (e->va == NULL) {
        pthread_rwlock_unlock(&s->dma_lock);
        return -EOPNOTSUPP;
    }
    *ptr = e->va + (iova - e->iova);
    /* The read lock stays held until vmig_vfu_dma_put(). */
    return 0;
}

void
vmig_vfu_dma_put(struct vmig_vfu_server *s, uint64_t iova, size_t len,
                 bool written)
{
    if (written) {
        dirty_mark_locked(s, iova, len);
    }
    pthread_rwlock_unlock(&s->dma_lock);
}

int
vmig_vfu_dma_read(struct vmig_vfu_server *s, uint64_t iova, void *buf,
                  size_t len)
{
    return dma_rw(s, iova, buf, len, false);
}

int
vmig_vfu_dma_write(struct vmig_vfu_server *s, uint64_t iova, const void *buf,
                   size_t len)
{
    return dma_rw(s, iova, (void *)buf, len, true);
}

/* ------------------------------------------------------------- handlers */

static int
h_version(struct vmig_vfu_server *s, struct req *r, struct reply *rep)
{
    struct vmig_vfu_version v;
    struct vmig_vfu_caps peer, mine;
    const struct vmig_vfu_msg *m = r->m;
    size_t jlen = m->len - sizeof(v);
    int ret, n;

    if (s->negotiated) {
        vmig_dbg(s->ctx, "vfu: msg %#x: VERSION sent twice", m->hdr.id);
        return -EBUSY;
    }
    memcpy(&v, m->payload, sizeof(v));
    if (v.major != VMIG_VFU_MAJOR) {
        vmig_err(s->ctx,
                 "vfu: client speaks protocol %u.%u, this server %u.%u; "
                 "use a client of the same major version",
                 v.major, v.minor, VMIG_VFU_MAJOR, VMIG_VFU_MINOR);
        return -EOPNOTSUPP;
    }
    /* The JSON is NUL-terminated (checked by the decoder). */
    ret = vmig_vfu_caps_parse(jlen > 0 ? (const char *)m->payload + sizeof(v)
                                       : NULL,
                              jlen > 0 ? jlen - 1 : 0, &peer);
    if (ret < 0) {
        vmig_dbg(s->ctx, "vfu: msg %#x: bad VERSION capabilities", m->hdr.id);
        return ret;
    }
    if (v.minor > VMIG_VFU_MINOR) {
        v.minor = VMIG_VFU_MINOR;
    }
    vmig_vfu_caps_default(&mine);
    mine.max_msg_fds = VMIG_VFU_MAX_FDS;
    mine.max_data_xfer_size = s->xfer_in;
    mine.max_dma_maps = VMIG_VFU_MAX_DMA_MAPS;
    mine.pgsizes = 4096;
    mine.write_multiple = true;
    mine.ext = peer.ext & VMIG_VFU_EXT_BULK_DATA;
    if (s->ops->precopy_info != NULL) {
        mine.ext |= peer.ext & VMIG_VFU_EXT_PRECOPY_INFO;
    }
    n = vmig_vfu_caps_format(&mine, rep->json, sizeof(rep->json));
    if (n < 0) {
        return n;
    }
    s->peer = peer;
    s->ext = mine.ext;
    s->xfer_out = peer.max_data_xfer_size < VMIG_VFU_MAX_DATA_XFER
                      ? peer.max_data_xfer_size
                      : VMIG_VFU_MAX_DATA_XFER;
    s->negotiated = true;
    vmig_info(s->ctx,
              "vfu: client speaks %u.%u, max transfer %u, extensions %#x%s",
              v.major, v.minor, peer.max_data_xfer_size, s->ext,
              peer.legacy_migration ? " (legacy migration cap ignored)" : "");
    rep_inline(rep, &v, sizeof(v), NULL, 0);
    rep->p2 = rep->json;
    rep->l2 = (size_t)n + 1;
    return 0;
}

static int
h_dma_map(struct vmig_vfu_server *s, struct req *r, struct reply *rep)
{
    struct vmig_vfu_dma_map d;
    struct dma_ent e = {0};
    struct dma_ent *nd;
    unsigned int pos;
    int fd = r->m->nfds > 0 ? r->raw->fds[0] : -1;
    int ret = 0;

    (void)rep;
    memcpy(&d, r->m->payload, sizeof(d));
    if (d.size == 0 || d.addr + d.size < d.addr ||
        !(d.flags & (VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE))) {
        vmig_dbg(s->ctx, "vfu: DMA_MAP %#llx+%#llx flags %#x: bad range",
                 (unsigned long long)d.addr, (unsigned long long)d.size,
                 d.flags);
        return -EINVAL;
    }
    e.iova = d.addr;
    e.size = d.size;
    e.prot = d.flags;
    if (fd >= 0) {
        struct stat st;
        uint64_t skew = d.offset % 4096;
        int prot = ((d.flags & VMIG_VFU_DMA_READ) ? PROT_READ : 0) |
                   ((d.flags & VMIG_VFU_DMA_WRITE) ? PROT_WRITE : 0);

        /* Map only what the file has: touching past EOF is SIGBUS. */
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
            d.offset + d.size < d.offset ||
            d.offset + d.size > (uint64_t)st.st_size ||
            d.size + skew > SIZE_MAX / 2) {
            vmig_dbg(s->ctx,
                     "vfu: DMA_MAP %#llx+%#llx: fd is not a file that "
                     "covers offset %#llx",
                     (unsigned long long)d.addr, (unsigned long long)d.size,
                     (unsigned long long)d.offset);
            return -EINVAL;
        }
        e.map_len = (size_t)(d.size + skew);
        e.map_base = mmap(NULL, e.map_len, prot, MAP_SHARED, fd,
                          (off_t)(d.offset - skew));
        if (e.map_base == MAP_FAILED) {
            ret = -errno;
            vmig_dbg(s->ctx, "vfu: DMA_MAP: mmap: %s", strerror(-ret));
            return ret;
        }
        e.va = (uint8_t *)e.map_base + skew;
    }
    pthread_rwlock_wrlock(&s->dma_lock);
    if (s->ndma >= VMIG_VFU_MAX_DMA_MAPS) {
        ret = -ENOSPC;
        goto out;
    }
    /* Sorted, non-overlapping: find the insertion point, check both
     * neighbours ("a command to map over an existing region must be
     * failed with EEXIST"). */
    for (pos = 0; pos < s->ndma && s->dma[pos].iova < e.iova; pos++) {
    }
    if ((pos > 0 && s->dma[pos - 1].iova + s->dma[pos - 1].size > e.iova) ||
        (pos < s->ndma && e.iova + e.size > s->dma[pos].iova)) {
        ret = -EEXIST;
        goto out;
    }
    nd = realloc(s->dma, sizeof(*nd) * (s->ndma + 1));
    if (nd == NULL) {
        ret = -ENOMEM;
        goto out;
    }
    s->dma = nd;
    memmove(&nd[pos + 1], &nd[pos], sizeof(*nd) * (s->ndma - pos));
    nd[pos] = e;
    s->ndma++;
out:
    pthread_rwlock_unlock(&s->dma_lock);
    if (ret < 0 && e.map_base != NULL) {
        munmap(e.map_base, e.map_len);
    }
    return ret;
}

static int
h_dma_unmap(struct vmig_vfu_server *s, struct req *r, struct reply *rep)
{
    struct vmig_vfu_dma_unmap d;
    int ret = 0;

    memcpy(&d, r->m->payload, sizeof(d));
    pthread_rwlock_wrlock(&s->dma_lock);
    if (d.flags & VMIG_VFU_DMA_UNMAP_ALL) {
        if (d.addr != 0 || d.size != 0) {
            ret = -EINVAL;
        } else {
            dma_free_locked(s);
        }
    } else {
        int i = dma_find_locked(s, d.addr);

        if (i < 0 || s->dma[i].iova != d.addr || s->dma[i].size != d.size) {
            ret = -ENOENT;
        } else {
            if (s->dma[i].map_base != NULL) {
                munmap(s->dma[i].map_base, s->dma[i].map_len);
            }
            memmove(&s->dma[i], &s->dma[i + 1],
                    sizeof(*s->dma) * (s->ndma - (unsigned int)i - 1));
            s->ndma--;
        }
    }
    pthread_rwlock_unlock(&s->dma_lock);
    if (ret == 0) {
        d.argsz = sizeof(d);
        rep_inline(rep, &d, sizeof(d), NULL, 0);
    }
    return ret;
}

static int
h_get_info(struct vmig_vfu_server *s, struct req *r, struct reply *rep)
{
    struct vmig_vfu_device_info di;

    (void)r;
    di.argsz = sizeof(di);
    di.flags = VMIG_VFU_DEV_PCI | VMIG_VFU_DEV_RESET;
    di.num_regions = s->nregions;
    di.num_irqs = s->nirqs;
    rep_inline(rep, &di, sizeof(di), NULL, 0);
    return 0;
}

static int
h_region_info(struct vmig_vfu_server *s, struct req *r, struct reply *rep)
{
    struct vmig_vfu_region_info ri;
    uint32_t index = rd32(r->m->payload, 8);
    struct region *g;

    if (index >= s->nregions) {
        return -EINVAL;
    }
    g = &s->regions[index];
    memset(&ri, 0, sizeof(ri));
    ri.argsz = sizeof(ri);
    ri.index = index;
    if (g->present) {
        ri.flags = g->flags;
        ri.size = g->size;
        /* A client that takes no fds (max_msg_fds 0) gets no mmap. */
        if (g->fd >= 0 && s->peer.max_msg_fds > 0) {
            ri.flags |= VMIG_VFU_REGION_MMAP;
            ri.offset = g->fd_off;
            rep->fds[0] = g->fd;
            rep->nfds = 1;
        }
        if (g->cap != NULL) {
            /* VFIO rule: argsz says what the full reply needs; the
             * capability is only sent when the client made room. */
            ri.flags |= VMIG_VFU_REGION_CAPS;
            ri.argsz = (uint32_t)(sizeof(ri) + g->caplen);
            if (rd32(r->m->payload, 0) >= ri.argsz) {
                ri.cap_offset = sizeof(ri);
                rep->p2 = g->cap;
                rep->l2 = g->caplen;
            }
        }
    }
    rep_inline(rep, &ri, sizeof(ri), NULL, 0);
    return 0;
}

static int
h_region_io_fds(struct vmig_vfu_server *s, struct req *r, struct reply *rep)
{
    (void)s;
    (void)r;
    (void)rep;
    return -EOPNOTSUPP;
}

static int
h_irq_info(struct vmig_vfu_server *s, struct req *r, struct reply *rep)
{
    struct vmig_vfu_irq_info ii;
    uint32_t index = rd32(r->m->payload, 8);

    if (index >= s->nirqs) {
        return -EINVAL;
    }
    memset(&ii, 0, sizeof(ii));
    ii.argsz = sizeof(ii);
    ii.index = index;
    ii.count = s->irqs[index].count;
    if (ii.count > 0) {
        ii.flags = VMIG_VFU_IRQ_INFO_EVENTFD | VMIG_VFU_IRQ_INFO_MASKABLE |
                   VMIG_VFU_IRQ_INFO_NORESIZE;
    }
    rep_inline(rep, &ii, sizeof(ii), NULL, 0);
    return 0;
}

static void
irq_fire_locked(struct irq *q, unsigned int i)
{
    uint64_t one = 1;

    if (q->efd[i] >= 0 && !q->masked[i]) {
        (void)!write(q->efd[i], &one, sizeof(one));
        q->pending[i] = 0;
    } else {
        q->pending[i] = 1;
    }
}

static int
h_set_irqs(struct vmig_vfu_server *s, struct req *r, struct reply *rep)
{
    struct vmig_vfu_irq_set is;
    const uint8_t *bools;
    struct irq *q;

    (void)rep;
    memcpy(&is, r->m->payload, sizeof(is));
    bools = r->m->payload + sizeof(is);
    if (is.index >= s->nirqs || s->irqs[is.index].count == 0) {
        return -EINVAL;
    }
    q = &s->irqs[is.index];
    /* start + count cannot overflow: both are bounded by the decoder. */
    if (is.start + is.count > q->count) {
        return -EINVAL;
    }
    pthread_mutex_lock(&s->irq_lock);
    if ((is.flags & VMIG_VFU_IRQ_DATA_NONE) && is.count == 0 &&
        (is.flags & VMIG_VFU_IRQ_ACTION_TRIGGER)) {
        /* "count (and start) of 0 with DATA_NONE disables all" */
        for (unsigned int i = 0; i < q->count; i++) {
            if (q->efd[i] >= 0) {
                close(q->efd[i]);
                q->efd[i] = -1;
            }
        }
    } else if (is.flags & VMIG_VFU_IRQ_DATA_EVENTFD) {
        if (!(is.flags & VMIG_VFU_IRQ_ACTION_TRIGGER)) {
            pthread_mutex_unlock(&s->irq_lock);
            return -EINVAL;
        }
        for (unsigned int i = 0; i < is.count; i++) {
            unsigned int v = is.start + i;

            if (q->efd[v] >= 0) {
                close(q->efd[v]);
                q->efd[v] = -1;
            }
            if (r->m->nfds > 0) {
                q->efd[v] = r->raw->fds[i];
                r->raw->fds[i] = -1; /* kept */
            }
        }
    } else {
        for (unsigned int i = 0; i < is.count; i++) {
            unsigned int v = is.start + i;

            if ((is.flags & VMIG_VFU_IRQ_DATA_BOOL) && !bools[i]) {
                continue;
            }
            if (is.flags & VMIG_VFU_IRQ_ACTION_MASK) {
                q->masked[v] = 1;
            } else if (is.flags & VMIG_VFU_IRQ_ACTION_UNMASK) {
                q->masked[v] = 0;
                if (q->pending[v]) {
                    irq_fire_locked(q, v);
                }
            } else {
                irq_fire_locked(q, v);
            }
        }
    }
    pthread_mutex_unlock(&s->irq_lock);
    return 0;
}

/* Bounds and permission for a region access; 0 or -errno. */
static int
region_check(struct vmig_vfu_server *s, uint32_t index, uint64_t off,
             uint32_t count, bool write)
{
    struct region *g;

    if (index >= s->nregions || !s->regions[index].present) {
        return -EINVAL;
    }
    g = &s->regions[index];
    if (!(g->flags & (write ? VMIG_VFU_REGION_WRITE : VMIG_VFU_REGION_READ))) {
        return -EPERM;
    }
    if (off > g->size || count > g->size - off) {
        return -EINVAL;
    }
    return 0;
}

static int
region_do(struct vmig_vfu_server *s, uint32_t index, uint64_t off, void *buf,
          uint32_t count, bool write)
{
    struct region *g = &s->regions[index];
    ssize_t n;

    if (count == 0) {
        return 0;
    }
    /* fd-backed regions are served from the fd the client can mmap, so
     * both views agree. */
    if (g->fd < 0) {
        return s->ops->region_access(s->opaque, index, off, buf, count, write);
    }
    n = write ? pwrite(g->fd, buf, count, (off_t)(g->fd_off + off))
              : pread(g->fd, buf, count, (off_t)(g->fd_off + off));
    if (n < 0) {
        return -errno;
    }
    return n == (ssize_t)count ? 0 : -EIO;
}

static int
h_region_read(struct vmig_vfu_server *s, struct req *r, struct reply *rep)
{
    struct vmig_vfu_region_rw rw;
    int ret;

    memcpy(&rw, r->m->payload, sizeof(rw));
    ret = region_check(s, rw.region, rw.offset, rw.count, false);
    if (ret < 0) {
        return ret;
    }
    ret = region_do(s, rw.region, rw.offset, s->scratch, rw.count, false);
    if (ret < 0) {
        return ret;
    }
    rep_inline(rep, &rw, sizeof(rw), NULL, 0);
    rep->p2 = s->scratch;
    rep->l2 = rw.count;
    return 0;
}

static int
h_region_write(struct vmig_vfu_server *s, struct req *r, struct reply *rep)
{
    struct vmig_vfu_region_rw rw;
    int ret;

    memcpy(&rw, r->m->payload, sizeof(rw));
    ret = region_check(s, rw.region, rw.offset, rw.count, true);
    if (ret < 0) {
        return ret;
    }
    memcpy(s->scratch, r->m->payload + sizeof(rw), rw.count);
    ret = region_do(s, rw.region, rw.offset, s->scratch, rw.count, true);
    if (ret < 0) {
        return ret;
    }
    rep_inline(rep, &rw, sizeof(rw), NULL, 0);
    return 0;
}

static int
h_write_multi(struct vmig_vfu_server *s, struct req *r, struct reply *rep)
{
    struct vmig_vfu_write_multi wm;
    struct vmig_vfu_write_one w;
    int ret;

    memcpy(&wm, r->m->payload, sizeof(wm));
    /* Validate every write before doing any: no partial application. */
    for (uint64_t i = 0; i < wm.wr_cnt; i++) {
        memcpy(&w, r->m->payload + sizeof(wm) + i * sizeof(w), sizeof(w));
        ret = region_check(s, w.region, w.offset, w.count, true);
        if (ret < 0) {
            return ret;
        }
    }
    for (uint64_t i = 0; i < wm.wr_cnt; i++) {
        memcpy(&w, r->m->payload + sizeof(wm) + i * sizeof(w), sizeof(w));
        ret = region_do(s, w.region, w.offset, w.data, w.count, true);
        if (ret < 0) {
            return ret;
        }
    }
    rep_inline(rep, &wm, sizeof(wm), NULL, 0);
    return 0;
}

static int
h_reset(struct vmig_vfu_server *s, struct req *r, struct reply *rep)
{
    (void)r;
    (void)rep;
    vmig_vfu_server_device_reset(s);
    return 0;
}

/* ---------------------------------------------------------- migration */

/* Fill up to @len bytes of saving data; sets *end on permanent end. */
static long
mig_fill(struct vmig_vfu_server *s, uint8_t *buf, size_t len, int *status)
{
    enum vmig_state st = cur_state(s);
    bool stopcopy = st == VMIG_STATE_STOP_COPY;
    size_t got = 0;

    *status = -EAGAIN; /* more may follow */
    if (stopcopy && s->sess_eof) {
        *status = 0;
        return 0;
    }
    while (got < len) {
        long n = s->ops->mig_read(s->opaque, buf + got, len - got);

        if (n > (long)(len - got)) {
            vmig_err(s->ctx, "vfu: mig_read returned %ld > %zu asked", n,
                     len - got);
            return -EIO;
        }
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0 || n == -ENOMSG) {
            if (stopcopy && n == 0) {
                s->sess_eof = true;
                *status = 0;
            } else if (stopcopy) {
                vmig_err(s->ctx, "vfu: device said 'no more for now' in "
                                 "STOP_COPY; its data would be truncated");
                return -EIO;
            } else {
                *status = -ENOMSG;
            }
            break;
        }
        return n;
    }
    /* A reset while the device produced this data voids it. */
    if (vmig_mig_session_check(s->mig, s->sess_gen, VMIG_SESSION_SAVE) < 0) {
        return -ENODEV;
    }
    return (long)got;
}

static int
h_mig_read(struct vmig_vfu_server *s, struct req *r, struct reply *rep)
{
    struct vmig_vfu_mig_data md;
    uint32_t want = rd32(r->m->payload, 4);
    int status, ret;
    long n;

    ret = sess_check(s, VMIG_SESSION_SAVE);
    if (ret < 0) {
        return ret;
    }
    if (want > s->xfer_in) {
        return -E2BIG;
    }
    n = mig_fill(s, s->scratch, want, &status);
    if (n < 0) {
        return (int)n;
    }
    md.argsz = (uint32_t)(sizeof(md) + (size_t)n);
    md.size = (uint32_t)n;
    rep_inline(rep, &md, sizeof(md), NULL, 0);
    rep->p2 = s->scratch;
    rep->l2 = (size_t)n;
    return 0;
}

static int
h_mig_write(struct vmig_vfu_server *s, struct req *r, struct reply *rep)
{
    uint32_t size = rd32(r->m->payload, 4);
    int ret;

    (void)rep;
    ret = sess_check(s, VMIG_SESSION_RESUME);
    if (ret < 0) {
        return ret;
    }
    if (size == 0) {
        return 0;
    }
    ret = s->ops->mig_write(s->opaque, r->m->payload + 8, size);
    if (ret < 0) {
        return ret;
    }
    return vmig_mig_session_check(s->mig, s->sess_gen, VMIG_SESSION_RESUME) < 0
               ? -ENODEV
               : 0;
}

/* Stream saving data over the bulk channel (extension). */
static int
bulk_read(struct vmig_vfu_server *s, uint64_t max, uint64_t *sent,
          int32_t *status)
{
    struct vmig_vfu_bulk_frame f;
    int st = -EAGAIN, ret;

    *sent = 0;
    ret = sess_check(s, VMIG_SESSION_SAVE);
    while (ret == 0 && *sent < max) {
        size_t want = max - *sent < VFU_BULK_CHUNK ? (size_t)(max - *sent)
                                                   : VFU_BULK_CHUNK;
        long n = mig_fill(s, s->scratch, want, &st);
        struct iovec iov[2];

        if (n < 0) {
            ret = (int)n;
            break;
        }
        if (n > 0) {
            f.len = (uint32_t)n;
            f.status = 0;
            iov[0].iov_base = &f;
            iov[0].iov_len = sizeof(f);
            iov[1].iov_base = s->scratch;
            iov[1].iov_len = (size_t)n;
            ret = vmig__tran_write_all(s->bulk_fd, VFU_TIMEOUT_MS, iov, 2);
            if (ret < 0) {
                return ret; /* channel broken: caller disconnects */
            }
            *sent += (uint64_t)n;
        }
        if (st != -EAGAIN) {
            break;
        }
    }
    if (ret < 0) {
        st = ret;
    } else if (st == -EAGAIN && *sent < max) {
        st = 0;
    }
    /* Terminator: the reader never mistakes an error for the end. */
    f.len = 0;
    f.status = st < 0 ? -st : st;
    *status = f.status;
    {
        struct iovec iov = {.iov_base = &f, .iov_len = sizeof(f)};

        ret = vmig__tran_write_all(s->bulk_fd, VFU_TIMEOUT_MS, &iov, 1);
    }
    return ret;
}

/*
 * Receive resuming data from the bulk channel (extension): frames until
 * the terminator.  After an error the rest of the burst is still read
 * and dropped, so the channel stays in step.  Returns 0, the first error
 * (-ENODEV after a reset, -EBUSY outside RESUMING, the device's errno),
 * or -ECONNRESET when the channel itself broke.
 */
static int
bulk_write(struct vmig_vfu_server *s, uint64_t *got)
{
    int err = sess_check(s, VMIG_SESSION_RESUME);

    *got = 0;
    for (;;) {
        struct vmig_vfu_bulk_frame f;
        int ret;

        ret = vmig__tran_read_all(s->bulk_fd, VFU_TIMEOUT_MS, &f, sizeof(f));
        if (ret < 0) {
            return -ECONNRESET;
        }
        if (f.len == 0) {
            return err;
        }
        if (f.len > VMIG_VFU_BULK_FRAME_MAX) {
            return -ECONNRESET;
        }
        ret =
            vmig__tran_read_all(s->bulk_fd, VFU_TIMEOUT_MS, s->scratch, f.len);
        if (ret < 0) {
            return -ECONNRESET;
        }
        if (err == 0) {
            err = s->ops->mig_write(s->opaque, s->scratch, f.len);
        }
        if (err == 0) {
            err = sess_check(s, VMIG_SESSION_RESUME);
        }
        if (err == 0) {
            *got += f.len;
        }
    }
}

static int
log_start_builtin(struct vmig_vfu_server *s, uint64_t pgsize,
                  const struct vmig_vfu_log_range *rg, unsigned int n)
{
    uint64_t bits_total = 0;

    s->log_r = calloc(n, sizeof(*s->log_r));
    if (s->log_r == NULL) {
        return -ENOMEM;
    }
    for (unsigned int i = 0; i < n; i++) {
        uint64_t pages = rg[i].length / pgsize + 2;

        bits_total += pages;
        if (bits_total > VFU_MAX_DIRTY_BITS) {
            log_free_locked(s);
            return -E2BIG;
        }
        s->log_r[i].iova = rg[i].iova;
        s->log_r[i].len = rg[i].length;
        s->log_r[i].bits = calloc((size_t)(pages + 63) / 64, 8);
        s->log_n = i + 1;
        if (s->log_r[i].bits == NULL) {
            log_free_locked(s);
            return -ENOMEM;
        }
    }
    s->log_pgsize = pgsize;
    return 0;
}

static int
f_log_start(struct vmig_vfu_server *s, const uint8_t *d, size_t dlen)
{
    struct vmig_vfu_feat_log_ctl c;
    struct vmig_vfu_log_range *rg;
    int ret = 0;

    if (dlen < sizeof(c)) {
        return -EINVAL;
    }
    memcpy(&c, d, sizeof(c));
    if (c.num_ranges == 0 || c.num_ranges > VMIG_VFU_MAX_LOG_RANGES) {
        /* 0 ("log everything") needs no ranges; vmig requires them so
         * the bitmap size is known up front. */
        return c.num_ranges == 0 ? -EINVAL : -E2BIG;
    }
    if (dlen != sizeof(c) + (size_t)c.num_ranges * sizeof(*rg) ||
        c.page_size < 4096 || (c.page_size & (c.page_size - 1))) {
        return -EINVAL;
    }
    rg = malloc(sizeof(*rg) * c.num_ranges);
    if (rg == NULL) {
        return -ENOMEM;
    }
    memcpy(rg, d + sizeof(c), sizeof(*rg) * c.num_ranges);
    for (unsigned int i = 0; i < c.num_ranges; i++) {
        if (rg[i].length == 0 || rg[i].iova + rg[i].length < rg[i].iova) {
            ret = -EINVAL;
        }
        for (unsigned int j = 0; j < i && ret == 0; j++) {
            if (rg[i].iova < rg[j].iova + rg[j].length &&
                rg[j].iova < rg[i].iova + rg[i].length) {
                ret = -EINVAL;
            }
        }
    }
    pthread_rwlock_wrlock(&s->dma_lock);
    if (ret == 0 && s->log_on) {
        ret = -EBUSY;
    }
    if (ret == 0) {
        if (s->ops->log_start != NULL) {
            ret = s->ops->log_start(s->opaque, c.page_size, rg, c.num_ranges);
            s->log_dev = ret == 0;
        } else {
            ret = log_start_builtin(s, c.page_size, rg, c.num_ranges);
        }
        s->log_on = ret == 0;
    }
    pthread_rwlock_unlock(&s->dma_lock);
    free(rg);
    return ret;
}

static int
f_log_stop(struct vmig_vfu_server *s)
{
    int ret = 0;

    pthread_rwlock_wrlock(&s->dma_lock);
    if (!s->log_on) {
        ret = -EINVAL;
    } else if (s->log_dev && s->ops->log_stop != NULL) {
        ret = s->ops->log_stop(s->opaque);
    }
    if (ret == 0) {
        log_free_locked(s);
    }
    pthread_rwlock_unlock(&s->dma_lock);
    return ret;
}

/* Report and clear: bit i covers [iova + i*pg, iova + (i+1)*pg). */
static void
log_report_builtin(struct vmig_vfu_server *s, uint64_t iova, uint64_t len,
                   uint64_t pg, uint64_t *bm)
{
    for (unsigned int k = 0; k < s->log_n; k++) {
        struct dirty_range *r = &s->log_r[k];
        uint64_t a = iova > r->iova ? iova : r->iova;
        uint64_t e =
            iova + len < r->iova + r->len ? iova + len : r->iova + r->len;

        if (a >= e) {
            continue;
        }
        for (uint64_t p = (a - r->iova) / s->log_pgsize;
             p <= (e - 1 - r->iova) / s->log_pgsize; p++) {
            uint64_t bit = 1ull << (p % 64);
            uint64_t lo, hi;

            if (!(__atomic_fetch_and(&r->bits[p / 64], ~bit, __ATOMIC_RELAXED) &
                  bit)) {
                continue;
            }
            /* The tracked page's span, clipped to the report. */
            lo = r->iova + p * s->log_pgsize;
            hi = lo + s->log_pgsize;
            lo = lo < iova ? iova : lo;
            hi = hi > iova + len ? iova + len : hi;
            for (uint64_t q = (lo - iova) / pg; q <= (hi - 1 - iova) / pg;
                 q++) {
                bm[q / 64] |= 1ull << (q % 64);
            }
        }
    }
}

/* Fills scratch with the report struct and the bitmap; returns bytes. */
static long
f_log_report(struct vmig_vfu_server *s, const uint8_t *d, size_t dlen,
             uint32_t argsz)
{
    struct vmig_vfu_feat_log_report lr;
    uint64_t *bm = (uint64_t *)(void *)(s->scratch + sizeof(lr));
    uint64_t pages, bytes;
    int ret = 0;

    if (dlen < sizeof(lr)) {
        return -EINVAL;
    }
    memcpy(&lr, d, sizeof(lr));
    if (lr.length == 0 || lr.iova + lr.length < lr.iova ||
        lr.page_size < 4096 || (lr.page_size & (lr.page_size - 1))) {
        return -EINVAL;
    }
    pages = lr.length / lr.page_size + (lr.length % lr.page_size != 0);
    bytes = (pages + 63) / 64 * 8;
    if (bytes > s->xfer_out || bytes > VMIG_VFU_MAX_DATA_XFER) {
        return -E2BIG;
    }
    if (argsz < sizeof(struct vmig_vfu_feature) + sizeof(lr) + bytes) {
        return -EINVAL;
    }
    memset(bm, 0, (size_t)bytes);
    pthread_rwlock_rdlock(&s->dma_lock);
    if (!s->log_on) {
        ret = -EINVAL;
    } else if (s->log_dev) {
        ret =
            s->ops->log_report(s->opaque, lr.iova, lr.length, lr.page_size, bm);
    } else {
        log_report_builtin(s, lr.iova, lr.length, lr.page_size, bm);
    }
    pthread_rwlock_unlock(&s->dma_lock);
    if (ret < 0) {
        return ret;
    }
    memcpy(s->scratch, &lr, sizeof(lr));
    return (long)(sizeof(lr) + bytes);
}

static int
h_feature(struct vmig_vfu_server *s, struct req *r, struct reply *rep)
{
    union {
        struct vmig_vfu_feat_migration mig;
        struct vmig_vfu_feat_mig_state st;
        struct vmig_vfu_feat_data_size ds;
        struct vmig_vfu_feat_precopy pc;
        struct vmig_vfu_feat_bulk_read br;
        struct vmig_vfu_feat_log_ctl lc;
    } out;
    uint32_t argsz = rd32(r->m->payload, 0);
    uint32_t flags = rd32(r->m->payload, 4);
    uint32_t feat = flags & VMIG_VFU_FEATURE_MASK;
    bool get = flags & VMIG_VFU_FEATURE_GET;
    bool set = flags & VMIG_VFU_FEATURE_SET;
    bool probe = flags & VMIG_VFU_FEATURE_PROBE;
    const uint8_t *d = r->m->payload + sizeof(struct vmig_vfu_feature);
    size_t dlen = r->m->len - sizeof(struct vmig_vfu_feature);
    bool can_get = false, can_set = false;
    size_t olen = 0;
    int ret = 0;

    /* Which operations each feature has (the kernel's
     * vfio_check_feature() idea). */
    switch (feat) {
    case VMIG_VFU_FEAT_MIGRATION:
        can_get = s->mig != NULL;
        break;
    case VMIG_VFU_FEAT_MIG_DEVICE_STATE:
        can_get = can_set = s->mig != NULL;
        break;
    case VMIG_VFU_FEAT_DMA_LOGGING_START:
    case VMIG_VFU_FEAT_DMA_LOGGING_STOP:
        can_set = true;
        break;
    case VMIG_VFU_FEAT_DMA_LOGGING_REPORT:
        can_get = true;
        break;
    case VMIG_VFU_FEAT_MIG_DATA_SIZE:
        can_get = s->mig != NULL && s->ops->mig_data_size != NULL;
        break;
    case VMIG_VFU_FEAT_X_PRECOPY_INFO:
        can_get = s->mig != NULL && (s->ext & VMIG_VFU_EXT_PRECOPY_INFO);
        break;
    case VMIG_VFU_FEAT_X_BULK_CHANNEL:
        can_get = s->mig != NULL && (s->ext & VMIG_VFU_EXT_BULK_DATA) &&
                  s->peer.max_msg_fds > 0 && !s->fuzz;
        break;
    case VMIG_VFU_FEAT_X_BULK_READ:
    case VMIG_VFU_FEAT_X_BULK_WRITE:
        can_set = s->bulk_fd >= 0;
        break;
    default:
        break;
    }
    if ((get && !can_get) || (set && !can_set) || (!can_get && !can_set)) {
        vmig_dbg(s->ctx, "vfu: msg %#x: feature %u %s%s not supported",
                 r->m->hdr.id, feat, get ? "GET" : "", set ? "SET" : "");
        return -EOPNOTSUPP;
    }
    if (probe) {
        rep->p1 = r->m->payload;
        rep->l1 = sizeof(struct vmig_vfu_feature);
        return 0;
    }
    switch (feat) {
    case VMIG_VFU_FEAT_MIGRATION:
        out.mig.flags = s->mig_flags;
        olen = sizeof(out.mig);
        break;
    case VMIG_VFU_FEAT_MIG_DEVICE_STATE:
        if (set) {
            if (dlen < sizeof(out.st)) {
                return -EINVAL;
            }
            memcpy(&out.st, d, sizeof(out.st));
            ret = vmig_mig_set_state(s->mig, out.st.device_state);
            sess_refresh(s);
            if (ret < 0) {
                vmig_dbg(s->ctx, "vfu: SET state %s failed; now %s",
                         vmig_state_name(out.st.device_state),
                         vmig_state_name(cur_state(s)));
                return ret;
            }
        }
        out.st.device_state = cur_state(s);
        out.st.data_fd = UINT32_MAX;
        olen = sizeof(out.st);
        break;
    case VMIG_VFU_FEAT_DMA_LOGGING_START:
        ret = f_log_start(s, d, dlen);
        if (ret < 0) {
            return ret;
        }
        rep->p1 = r->m->payload;
        rep->l1 = r->m->len;
        return 0;
    case VMIG_VFU_FEAT_DMA_LOGGING_STOP:
        ret = f_log_stop(s);
        if (ret < 0) {
            return ret;
        }
        break;
    case VMIG_VFU_FEAT_DMA_LOGGING_REPORT: {
        struct vmig_vfu_feature fh;
        long n = f_log_report(s, d, dlen, argsz);

        if (n < 0) {
            return (int)n;
        }
        fh.argsz = (uint32_t)(sizeof(fh) + (size_t)n);
        fh.flags = flags;
        rep_inline(rep, &fh, sizeof(fh), NULL, 0);
        rep->p2 = s->scratch;
        rep->l2 = (size_t)n;
        return 0;
    }
    case VMIG_VFU_FEAT_MIG_DATA_SIZE:
        ret = s->ops->mig_data_size(s->opaque, &out.ds.stop_copy_length);
        if (ret < 0) {
            return ret;
        }
        olen = sizeof(out.ds);
        break;
    case VMIG_VFU_FEAT_X_PRECOPY_INFO: {
        enum vmig_state st = cur_state(s);

        if (st != VMIG_STATE_PRE_COPY && st != VMIG_STATE_PRE_COPY_P2P) {
            return -EINVAL;
        }
        ret = s->ops->precopy_info(s->opaque, &out.pc.initial_bytes,
                                   &out.pc.dirty_bytes);
        if (ret < 0) {
            return ret;
        }
        olen = sizeof(out.pc);
        break;
    }
    case VMIG_VFU_FEAT_X_BULK_CHANNEL: {
        int sv[2];
        /* 1 MiB in flight keeps producer and consumer in cache; 4 MiB
         * measured no faster (bench_vfu). */
        int sz = 1 << 20;

        if (s->bulk_fd >= 0) {
            close(s->bulk_fd);
            s->bulk_fd = -1;
        }
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
            return -errno;
        }
        (void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
        (void)setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
        s->bulk_fd = sv[0];
        /* The client's end goes out with the reply; handle() closes our
         * copy once it is sent. */
        rep->fds[0] = sv[1];
        rep->nfds = 1;
        olen = 0;
        break;
    }
    case VMIG_VFU_FEAT_X_BULK_READ: {
        struct vmig_vfu_feat_bulk_read br;
        uint64_t sent;
        int32_t status;

        if (dlen < sizeof(br)) {
            return -EINVAL;
        }
        memcpy(&br, d, sizeof(br));
        ret = bulk_read(s, br.max_bytes, &sent, &status);
        if (ret < 0) {
            rep->disconnect = true;
            return ret;
        }
        out.br.max_bytes = sent;
        out.br.status = status;
        out.br.reserved = 0;
        olen = sizeof(out.br);
        break;
    }
    case VMIG_VFU_FEAT_X_BULK_WRITE: {
        uint64_t got;

        ret = bulk_write(s, &got);
        if (ret == -ECONNRESET) {
            rep->disconnect = true;
        }
        if (ret < 0) {
            return ret;
        }
        out.br.max_bytes = got;
        out.br.status = 0;
        out.br.reserved = 0;
        olen = sizeof(out.br);
        break;
    }
    default:
        return -EOPNOTSUPP;
    }
    /* GET: argsz is the room the client has for the reply (the
     * kernel's vfio_check_feature() minsz test). */
    if (get && argsz < sizeof(struct vmig_vfu_feature) + olen) {
        return -EINVAL;
    }
    {
        struct vmig_vfu_feature fh;

        fh.argsz = (uint32_t)(sizeof(fh) + olen);
        fh.flags = flags;
        rep_inline(rep, &fh, sizeof(fh), &out, olen);
    }
    return 0;
}

/* clang-format off */
static const struct cmd_desc cmd_table[VMIG_VFU_CMD__COUNT] = {
#define C(cmd, len, states, fn, refuse)                                        \
    [VMIG_VFU_CMD_##cmd] = {#cmd, len, states, fn, refuse}
    C(VERSION,                  4, ALL_STATES, h_version, NULL),
    C(DMA_MAP,                  32, ALL_STATES, h_dma_map, NULL),
    C(DMA_UNMAP,                24, ALL_STATES, h_dma_unmap, NULL),
    C(DEVICE_GET_INFO,          16, ALL_STATES, h_get_info, NULL),
    C(DEVICE_GET_REGION_INFO,   32, ALL_STATES, h_region_info, NULL),
    C(DEVICE_GET_REGION_IO_FDS, 16, ALL_STATES, h_region_io_fds, NULL),
    C(DEVICE_GET_IRQ_INFO,      16, ALL_STATES, h_irq_info, NULL),
    C(DEVICE_SET_IRQS,          20, ALL_STATES, h_set_irqs, NULL),
    C(REGION_READ,              16, ACCESS_STATES, h_region_read, NULL),
    C(REGION_WRITE,             16, ACCESS_STATES, h_region_write, NULL),
    C(DEVICE_RESET,             0, ALL_STATES, h_reset, NULL),
    C(REGION_WRITE_MULTI,       8, ACCESS_STATES, h_write_multi, NULL),
    C(DEVICE_FEATURE,           8, ALL_STATES, h_feature, NULL),
    C(MIG_DATA_READ,            8, SAVING_STATES, h_mig_read, refuse_save),
    C(MIG_DATA_WRITE,           8, IN(RESUMING), h_mig_write, refuse_resume),
#undef C
};
/* clang-format on */

/*
 * Handle one received message.  Returns 0, or -ECONNRESET when the client
 * must be disconnected.
 */
static int
handle(struct vmig_vfu_server *s, struct vmig__tran_msg *raw)
{
    const struct vmig_vfu_limits lim = {s->xfer_in, VMIG_VFU_MAX_FDS};
    struct reply rep = {0};
    struct vmig_vfu_hdr h;
    struct vmig_vfu_msg m;
    enum vmig_vfu_perr why;
    const struct cmd_desc *d;
    struct req r = {.m = &m, .raw = raw};
    enum vmig_state st = VMIG_STATE_RUNNING;
    bool state_refused = false;
    int ret;

    memcpy(&h, raw->buf, sizeof(h));
    ret = vmig_vfu_decode(raw->buf, raw->len, raw->nfds, &lim, &m, &why);
    if (ret == 0 &&
        (m.hdr.flags & VMIG_VFU_F_TYPE_MASK) == VMIG_VFU_F_TYPE_REPLY) {
        route_reply(s, raw, m.hdr.id);
        return 0;
    }
    if (ret < 0) {
        vmig_dbg(s->ctx, "vfu: msg %#x: %s: %s", h.id, vmig_vfu_cmd_name(h.cmd),
                 vmig_vfu_perr_name(why));
        goto reply;
    }
    d = &cmd_table[m.hdr.cmd];
    if (d->handle == NULL) {
        /* DMA_READ/WRITE go server to client only. */
        ret = -EINVAL;
        goto reply;
    }
    /* The decoder checked the layout already; this guards the handler's
     * own assumption (VMIG_NEVER: a mismatch is our bug). */
    if (VMIG_NEVER(m.len < d->min_len)) {
        ret = -EPROTO;
        goto reply;
    }
    if (!s->negotiated && m.hdr.cmd != VMIG_VFU_CMD_VERSION) {
        vmig_dbg(s->ctx, "vfu: msg %#x: %s before VERSION", h.id,
                 vmig_vfu_cmd_name(h.cmd));
        ret = -EPROTO;
        goto reply;
    }
    st = cur_state(s);
    if (!(d->states & (1u << st))) {
        ret = d->refuse != NULL ? d->refuse(s) : -EBUSY;
        state_refused = true;
        vmig_dbg(s->ctx, "vfu: msg %#x: %s not allowed in %s", h.id, d->name,
                 vmig_state_name(st));
        goto reply;
    }
    ret = d->handle(s, &r, &rep);

reply:
    if (ret < 0) {
        s->errs_in_row++;
        if (s->errs_in_row == 1 || s->errs_in_row % 16 == 0) {
            vmig_err(s->ctx, "vfu: msg %#x: %s refused: %s%s%s (%u in a row)",
                     h.id, vmig_vfu_cmd_name(h.cmd), strerror(-ret),
                     state_refused ? "; not allowed in " : "",
                     state_refused ? vmig_state_name(st) : "", s->errs_in_row);
        }
    } else {
        s->errs_in_row = 0;
    }
    if (!(h.flags & VMIG_VFU_F_NO_REPLY) &&
        (h.flags & VMIG_VFU_F_TYPE_MASK) == VMIG_VFU_F_TYPE_COMMAND) {
        struct vmig_vfu_hdr o = {
            .id = h.id, .cmd = h.cmd, .flags = VMIG_VFU_F_TYPE_REPLY};
        int sret;

        if (ret < 0) {
            o.flags |= VMIG_VFU_F_ERROR;
            o.error = (uint32_t)-ret;
            sret = send_msg(s, &o, NULL, 0, NULL, 0, NULL, 0);
        } else {
            sret = send_msg(s, &o, rep.p1, rep.l1, rep.p2, rep.l2, rep.fds,
                            rep.nfds);
        }
        if (sret < 0) {
            rep.disconnect = true;
        }
    }
    /* A bulk channel end we created is the client's now. */
    if (ret == 0 && h.cmd == VMIG_VFU_CMD_DEVICE_FEATURE && rep.nfds > 0 &&
        (rd32(m.payload, 4) & VMIG_VFU_FEATURE_MASK) ==
            VMIG_VFU_FEAT_X_BULK_CHANNEL) {
        close(rep.fds[0]);
    }
    if (rep.disconnect || s->errs_in_row >= VFU_MAX_ERRS_IN_ROW) {
        return -ECONNRESET;
    }
    return 0;
}

static int
ensure_scratch(struct vmig_vfu_server *s)
{
    if (s->scratch == NULL) {
        /* Region reads, migration data and bitmaps share one buffer;
         * the LOG_REPORT reply needs room for its struct too. */
        s->scratch = malloc(VMIG_VFU_MAX_DATA_XFER + 64);
        if (s->scratch == NULL) {
            return -ENOMEM;
        }
    }
    return 0;
}

int
vmig__vfu_server_feed(struct vmig_vfu_server *s, const void *buf, size_t len,
                      const int *fds, unsigned int nfds)
{
    struct vmig__tran_msg raw = {0};
    int ret;

    s->fuzz = true;
    ret = ensure_scratch(s);
    for (unsigned int i = 0; i < nfds && i < VMIG_VFU_MAX_FDS; i++) {
        raw.fds[raw.nfds++] = fds[i];
    }
    if (ret < 0 || len < sizeof(struct vmig_vfu_hdr) ||
        len > VMIG_VFU_MAX_MSG_SIZE) {
        vmig__tran_msg_release(&raw);
        return ret < 0 ? ret : -ECONNRESET;
    }
    raw.buf = malloc(len);
    if (raw.buf == NULL) {
        vmig__tran_msg_release(&raw);
        return -ENOMEM;
    }
    memcpy(raw.buf, buf, len);
    raw.len = len;
    {
        /* The transport would have refused a lying msg_size. */
        uint32_t sz = rd32(raw.buf, 4);

        if (sz != len) {
            vmig__tran_msg_release(&raw);
            return -ECONNRESET;
        }
    }
    ret = handle(s, &raw);
    vmig__tran_msg_release(&raw);
    if (ret < 0) {
        conn_close(s, "fuzz");
    }
    return ret;
}

static int
accept_client(struct vmig_vfu_server *s)
{
    int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);

    if (fd < 0) {
        return errno == EAGAIN || errno == EINTR || errno == ECONNABORTED
                   ? 0
                   : -errno;
    }
    if (ep_add(s, fd) < 0) {
        int ret = -errno;

        close(fd);
        return ret;
    }
    /* One client at a time (the spec's model): others wait in the
     * backlog until this one leaves. */
    ep_del(s, s->listen_fd);
    s->conn = fd;
    s->adopted = false;
    vmig_info(s->ctx, "vfu: client connected");
    return 0;
}

int
vmig_vfu_server_dispatch(struct vmig_vfu_server *s, int timeout_ms)
{
    struct epoll_event ev[3];
    struct vmig__tran_msg raw;
    bool stop = false, ready = false;
    size_t max;
    int n, ret;

    ret = ensure_scratch(s);
    if (ret < 0) {
        return ret;
    }
    if (s->conn < 0 && s->listen_fd < 0) {
        return -ENOTCONN;
    }
    do {
        n = epoll_wait(s->epfd, ev, 3, timeout_ms);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return -errno;
    }
    for (int i = 0; i < n; i++) {
        stop |= ev[i].data.fd == s->stop_efd;
        ready |= ev[i].data.fd != s->stop_efd;
    }
    if (stop) {
        return -ESHUTDOWN;
    }
    if (!ready) {
        return 0;
    }
    if (s->conn < 0) {
        return accept_client(s);
    }
    max = s->negotiated ? (size_t)s->xfer_in + 4096 : VFU_PRE_VERSION_MAX;
    ret = vmig__tran_recv(s->conn, VFU_TIMEOUT_MS, max, &raw);
    if (ret < 0) {
        conn_close(s, ret == -ENOTCONN ? "closed" : strerror(-ret));
        return 0;
    }
    loop_server = s;
    ret = handle(s, &raw);
    loop_server = NULL;
    vmig__tran_msg_release(&raw);
    if (ret < 0) {
        conn_close(s, "protocol errors");
    }
    return 0;
}

int
vmig_vfu_server_fd(struct vmig_vfu_server *s)
{
    return s->epfd;
}

int
vmig_vfu_server_run(struct vmig_vfu_server *s)
{
    for (;;) {
        int ret = vmig_vfu_server_dispatch(s, -1);

        if (ret == -ESHUTDOWN) {
            return 0;
        }
        if (ret < 0) {
            return ret == -ENOTCONN && s->adopted ? 0 : ret;
        }
    }
}
