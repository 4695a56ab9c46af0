/* SPDX-License-Identifier: MIT */
/*
 * vfu_server.c - the vfio-user device server: lifecycle, the socket and
 * the event loop.
 *
 * One client at a time (the spec's model): while a client is connected
 * the listening socket is out of the epoll set, so the next client waits
 * in the backlog.  Each message read from the client goes to
 * vmig__vfu_handle() (vfu_dispatch.c); a client that breaks the protocol
 * badly enough is disconnected and everything it set up (DMA maps, IRQ
 * eventfds, dirty logging, the bulk channel) is dropped.  vfu_srv.h lists
 * the other files and the locks.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "vfu_srv.h"

/* Largest message accepted before VERSION is negotiated. */
#define VFU_PRE_VERSION_MAX (VMIG_VFU_MAX_VERSION_JSON + 64)

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
                    void *opaque, struct vmig_dev *dev,
                    struct vmig_vfu_server **out)
{
    struct vmig_vfu_server *s;
    int ret;

    if (ops == NULL || out == NULL) {
        return -EINVAL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    s->ctx = ctx;
    s->ops = ops;
    s->opaque = opaque;
    s->listen_fd = -1;
    s->conn.fd = -1;
    s->conn.io = &vmig__vfu_sock_io;
    s->conn.xfer_in = VMIG_VFU_DEF_MAX_DATA_XFER;
    s->mig.dev = dev;
    s->mig.bulk_fd = -1;
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
    pthread_mutex_init(&s->conn.send_lock, NULL);
    vmig__vfu_irqs_init(&s->irqs);
    vmig__vfu_dma_init(s);
    for (unsigned int i = 0; i < VMIG_VFU_MAX_REGIONS; i++) {
        s->regions.r[i].fd = -1;
    }
    *out = s;
    return 0;

err_efd:
    close(s->stop_efd);
err_free:
    free(s);
    return ret;
}

/*
 * Bind and listen on @fd at @path.  The socket is bound under a temporary
 * name beside @path and renamed onto it only once it listens: a client
 * that waits for @path to appear (a VMM, a test spawning the server) and
 * connects at once must never find a socket that refuses it.  A path too
 * long for the temporary name is bound directly.
 */
static int
listen_at(struct vmig_vfu_server *s, int fd, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s.%ld.tmp", path,
                     (long)getpid());
    bool tmp = n > 0 && (size_t)n < sizeof(sa.sun_path);
    struct stat st;
    bool bound;
    mode_t old;
    int ret;

    if (!tmp) {
        memcpy(sa.sun_path, path, strlen(path) + 1);
    }
    if (lstat(sa.sun_path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        /* a stale socket at @path, or a temporary name left by a crash */
        (void)unlink(sa.sun_path);
    }
    /* The umask makes the socket 0600 from birth, so no other user can
     * connect in between (umask is per process: a thread creating files
     * at this very moment would get 0600 too, which errs on the safe
     * side); the chmod repeats it for filesystems that ignore it. */
    old = umask(0177);
    ret = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    bound = ret == 0;
    if (ret == 0) {
        ret = chmod(sa.sun_path, 0600);
    }
    if (ret == 0) {
        ret = listen(fd, 4);
    }
    if (ret == 0 && tmp) {
        /* replaces a stale socket at @path in the same step */
        ret = rename(sa.sun_path, path);
    }
    if (ret < 0) {
        ret = -errno;
        vmig_err(s->ctx, "vfu: cannot listen on %s: %s", path, strerror(-ret));
        if (bound) {
            (void)unlink(sa.sun_path);
        }
    }
    return ret;
}

int
vmig_vfu_server_listen(struct vmig_vfu_server *s, const char *path)
{
    struct stat st;
    int fd, ret;

    if (s->listen_fd >= 0) {
        return -EBUSY;
    }
    if (path == NULL ||
        strlen(path) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
        return -ENAMETOOLONG;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    /* Replace a stale socket, never anything else. */
    if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
        vmig_err(s->ctx, "vfu: %s exists and is not a socket; not replacing it",
                 path);
        close(fd);
        return -EEXIST;
    }
    ret = listen_at(s, fd, path);
    if (ret < 0) {
        close(fd);
        return ret;
    }
    s->path = strdup(path);
    if (s->path == NULL) {
        close(fd);
        (void)unlink(path);
        return -ENOMEM;
    }
    if (s->conn.fd < 0 && ep_add(s, fd) < 0) {
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

/* Forget everything about the current client. */
void
vmig__vfu_conn_close(struct vmig_vfu_server *s, const char *why)
{
    pthread_mutex_lock(&s->conn.send_lock);
    if (s->conn.fd >= 0) {
        vmig_info(s->ctx, "vfu: client disconnected: %s", why);
        ep_del(s, s->conn.fd);
        close(s->conn.fd);
        s->conn.fd = -1;
        /* listen again for the next client */
        if (s->listen_fd >= 0) {
            (void)ep_add(s, s->listen_fd);
        }
    }
    pthread_mutex_unlock(&s->conn.send_lock);
    vmig__vfu_mig_disconnect(s);
    vmig__vfu_dirty_disconnect(s);
    pthread_rwlock_wrlock(&s->dma.lock);
    vmig__vfu_dma_free_locked(&s->dma);
    pthread_rwlock_unlock(&s->dma.lock);
    vmig__vfu_irqs_disconnect(&s->irqs);
    vmig__vfu_pend_disconnect(&s->pend);
    s->conn.negotiated = false;
    s->conn.ext = 0;
    s->conn.xfer_in = VMIG_VFU_DEF_MAX_DATA_XFER;
    s->conn.xfer_out = VMIG_VFU_DEF_MAX_DATA_XFER;
    s->conn.errs_in_row = 0;
}

void
vmig_vfu_server_free(struct vmig_vfu_server *s)
{
    if (s == NULL) {
        return;
    }
    vmig__vfu_conn_close(s, "server shut down");
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
        (void)unlink(s->path);
    }
    free(s->path);
    vmig__vfu_regions_free(&s->regions);
    vmig__vfu_irqs_free(&s->irqs);
    close(s->stop_efd);
    close(s->epfd);
    free(s->scratch);
    pthread_mutex_destroy(&s->conn.send_lock);
    vmig__vfu_dma_fini(s);
    free(s);
}

int
vmig_vfu_server_adopt(struct vmig_vfu_server *s, int fd)
{
    if (s->conn.fd >= 0) {
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
    s->conn.fd = fd;
    s->conn.adopted = true;
    return 0;
}

void
vmig_vfu_server_stop(struct vmig_vfu_server *s)
{
    uint64_t one = 1;

    (void)!write(s->stop_efd, &one, sizeof(one));
}

int
vmig__vfu_ensure_scratch(struct vmig_vfu_server *s)
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
    s->conn.fd = fd;
    s->conn.adopted = false;
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

    ret = vmig__vfu_ensure_scratch(s);
    if (ret < 0) {
        return ret;
    }
    if (s->conn.fd < 0 && s->listen_fd < 0) {
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
    if (s->conn.fd < 0) {
        return accept_client(s);
    }
    max = s->conn.negotiated ? (size_t)s->conn.xfer_in + 4096
                             : VFU_PRE_VERSION_MAX;
    ret = s->conn.io->recv(s, max, &raw);
    if (ret < 0) {
        vmig__vfu_conn_close(s, ret == -ENOTCONN ? "closed" : strerror(-ret));
        return 0;
    }
    vmig__vfu_loop_enter(s);
    ret = vmig__vfu_handle(s, &raw);
    vmig__vfu_loop_leave();
    vmig__tran_msg_release(&raw);
    if (ret < 0) {
        vmig__vfu_conn_close(s, "protocol errors");
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
            return ret == -ENOTCONN && s->conn.adopted ? 0 : ret;
        }
    }
}
