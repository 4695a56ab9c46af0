/* SPDX-License-Identifier: MIT */
/*
 * vfu_dma.c - guest memory as the device sees it: the DMA map table
 * (DMA_MAP/DMA_UNMAP), device access to it from any thread, and, for
 * maps the client gave without an fd, server-to-client DMA_READ and
 * DMA_WRITE requests.
 *
 * dma.lock (rwlock): DMA_MAP/UNMAP and disconnect write; every access
 * reads, and a vmig_vfu_dma_get() window keeps the read lock until its
 * vmig_vfu_dma_put(), so an unmap waits for DMA in flight as the spec
 * requires.  The lock is dropped while a message-based transfer waits for
 * its reply (no mapping is referenced then), so the loop thread can take
 * it for a DMA_MAP while it also routes that reply.
 *
 * A request from the loop thread (inside a device callback) reads its
 * reply inline: the client is blocked in its own command and answers ours
 * first.  A device thread's request takes the single pend slot (one at a
 * time; pend.lock, pend.cv) and the loop routes the reply to it.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include "vfu_srv.h"

void
vmig__vfu_dma_init(struct vmig_vfu_server *s)
{
    pthread_rwlock_init(&s->dma.lock, NULL);
    pthread_mutex_init(&s->pend.lock, NULL);
    pthread_cond_init(&s->pend.cv, NULL);
}

void
vmig__vfu_dma_fini(struct vmig_vfu_server *s)
{
    pthread_rwlock_destroy(&s->dma.lock);
    pthread_mutex_destroy(&s->pend.lock);
    pthread_cond_destroy(&s->pend.cv);
}

void
vmig__vfu_dma_free_locked(struct vfu_dma *d)
{
    for (unsigned int i = 0; i < d->n; i++) {
        if (d->ents[i].map_base != NULL) {
            munmap(d->ents[i].map_base, d->ents[i].map_len);
        }
    }
    free(d->ents);
    d->ents = NULL;
    d->n = 0;
}

/* Index of the map containing @iova, or -1. */
static int
dma_find_locked(const struct vfu_dma *d, uint64_t iova)
{
    unsigned int lo = 0, hi = d->n;

    while (lo < hi) {
        unsigned int mid = (lo + hi) / 2;
        const struct vfu_dma_ent *e = &d->ents[mid];

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

/* ---------------------------------------------- server-to-client DMA */

void
vmig__vfu_route_reply(struct vmig_vfu_server *s, struct vmig__tran_msg *raw,
                      uint16_t id)
{
    struct vfu_pend *p = &s->pend;

    pthread_mutex_lock(&p->lock);
    if (p->active && !p->done && p->id == id) {
        p->msg = *raw;
        memset(raw, 0, sizeof(*raw));
        p->ret = 0;
        p->done = true;
        pthread_cond_broadcast(&p->cv);
    } else {
        vmig_dbg(s->ctx, "vfu: msg %#x: unexpected reply dropped", id);
    }
    pthread_mutex_unlock(&p->lock);
}

void
vmig__vfu_pend_disconnect(struct vfu_pend *p)
{
    pthread_mutex_lock(&p->lock);
    if (p->active && !p->done) {
        p->done = true;
        p->ret = -ENOTCONN;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->lock);
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

        ret = s->conn.io->recv(s, (size_t)s->conn.xfer_out + 4096, rm);
        if (ret < 0) {
            return ret;
        }
        memcpy(&h, rm->buf, sizeof(h));
        if ((h.flags & VMIG_VFU_F_TYPE_MASK) == VMIG_VFU_F_TYPE_REPLY) {
            if (h.id == id) {
                return 0;
            }
            vmig__vfu_route_reply(s, rm, h.id);
        } else if (!(h.flags & VMIG_VFU_F_NO_REPLY)) {
            struct vmig_vfu_hdr o = {.id = h.id,
                                     .cmd = h.cmd,
                                     .flags = VMIG_VFU_F_TYPE_REPLY |
                                              VMIG_VFU_F_ERROR,
                                     .error = EBUSY};

            vmig_dbg(s->ctx, "vfu: msg %#x: %s while waiting for DMA: EBUSY",
                     h.id, vmig_vfu_cmd_name(h.cmd));
            (void)vmig__vfu_send(s, &o, NULL, 0, NULL, 0, NULL, 0);
        }
        vmig__tran_msg_release(rm);
    }
}

/* Device thread: take the pend slot and a message id. */
static uint16_t
pend_take(struct vfu_pend *p)
{
    uint16_t id;

    pthread_mutex_lock(&p->lock);
    while (p->active) {
        pthread_cond_wait(&p->cv, &p->lock);
    }
    id = ++p->next_id;
    p->id = id;
    p->active = true;
    p->done = false;
    pthread_mutex_unlock(&p->lock);
    return id;
}

/* Device thread: wait for the reply (or -ETIMEDOUT, -ENOTCONN), free
 * the slot. */
static int
pend_wait(struct vfu_pend *p, int sent, struct vmig__tran_msg *rm)
{
    struct timespec dl;
    int ret = sent;

    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += VFU_TIMEOUT_MS / 1000;
    pthread_mutex_lock(&p->lock);
    while (ret == 0 && !p->done) {
        if (pthread_cond_timedwait(&p->cv, &p->lock, &dl) == ETIMEDOUT) {
            p->done = true;
            p->ret = -ETIMEDOUT;
        }
    }
    if (ret == 0) {
        ret = p->ret;
        *rm = p->msg;
    }
    memset(&p->msg, 0, sizeof(p->msg));
    p->active = false;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->lock);
    return ret;
}

/* Check a DMA reply and take a DMA_READ's data. */
static int
dma_reply(struct vmig_vfu_server *s, const struct vmig__tran_msg *rm,
          const struct vmig_vfu_hdr *h, void *buf, size_t len)
{
    const struct vmig_vfu_limits lim = {s->conn.xfer_out, VMIG_VFU_MAX_FDS};
    struct vmig_vfu_msg m;
    int ret;

    ret = vmig_vfu_decode(rm->buf, rm->len, rm->nfds, &lim, &m, NULL);
    if (ret == 0 && (m.hdr.id != h->id || m.hdr.cmd != h->cmd)) {
        ret = -EPROTO;
    }
    if (ret == 0 && (m.hdr.flags & VMIG_VFU_F_ERROR)) {
        ret = m.hdr.error != 0 && m.hdr.error < 4096 ? -(int)m.hdr.error : -EIO;
    }
    if (ret == 0 && h->cmd == VMIG_VFU_CMD_DMA_READ) {
        if (vmig__rd64(m.payload, 8) != len) {
            ret = -EPROTO;
        } else {
            memcpy(buf, m.payload + sizeof(struct vmig_vfu_dma_rw), len);
        }
    }
    return ret;
}

/* Send a server-to-client DMA request and wait for its reply. */
static int
dma_msg(struct vmig_vfu_server *s, uint16_t cmd, uint64_t iova, void *buf,
        size_t len)
{
    struct vmig_vfu_dma_rw d = {.addr = iova, .count = len};
    struct vmig_vfu_hdr h = {.cmd = cmd, .flags = VMIG_VFU_F_TYPE_COMMAND};
    struct vmig__tran_msg rm;
    bool inline_read = vmig__vfu_in_loop(s);
    int ret;

    if (inline_read) {
        pthread_mutex_lock(&s->pend.lock);
        h.id = ++s->pend.next_id;
        pthread_mutex_unlock(&s->pend.lock);
    } else {
        h.id = pend_take(&s->pend);
    }
    ret = vmig__vfu_send(s, &h, &d, sizeof(d),
                         cmd == VMIG_VFU_CMD_DMA_WRITE ? buf : NULL,
                         cmd == VMIG_VFU_CMD_DMA_WRITE ? len : 0, NULL, 0);
    if (inline_read) {
        if (ret == 0) {
            ret = inline_wait(s, h.id, &rm);
        }
    } else {
        ret = pend_wait(&s->pend, ret, &rm);
    }
    if (ret == 0) {
        ret = dma_reply(s, &rm, &h, buf, len);
        vmig__tran_msg_release(&rm);
    }
    if (ret < 0) {
        vmig_dbg(s->ctx, "vfu: %s %#llx+%zu failed: %s", vmig_vfu_cmd_name(cmd),
                 (unsigned long long)iova, len, strerror(-ret));
    }
    return ret;
}

/* ------------------------------------------------------- device access */

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
    pthread_rwlock_rdlock(&s->dma.lock);
    while (len > 0) {
        int i = dma_find_locked(&s->dma, iova);
        struct vfu_dma_ent e;
        size_t n;

        if (i < 0) {
            ret = -EFAULT;
            break;
        }
        e = s->dma.ents[i];
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
            /* Message-based: chunks of the client's max transfer, with
             * the lock dropped (see the top of this file). */
            pthread_rwlock_unlock(&s->dma.lock);
            for (size_t done = 0; done < n && ret == 0;) {
                size_t c =
                    n - done < s->conn.xfer_out ? n - done : s->conn.xfer_out;

                ret = dma_msg(
                    s, write ? VMIG_VFU_CMD_DMA_WRITE : VMIG_VFU_CMD_DMA_READ,
                    iova + done, p + done, c);
                done += c;
            }
            pthread_rwlock_rdlock(&s->dma.lock);
            if (ret < 0) {
                break;
            }
        }
        if (write) {
            vmig__vfu_dirty_mark_locked(&s->dma, iova, n);
        }
        iova += n;
        p += n;
        len -= n;
    }
    pthread_rwlock_unlock(&s->dma.lock);
    return ret;
}

int
vmig_vfu_dma_get(struct vmig_vfu_server *s, uint64_t iova, size_t len,
                 uint32_t prot, void **ptr)
{
    const struct vfu_dma_ent *e;
    int i;

    if (len == 0 || iova + len < iova ||
        (prot & ~(VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE)) || ptr == NULL) {
        return -EINVAL;
    }
    pthread_rwlock_rdlock(&s->dma.lock);
    i = dma_find_locked(&s->dma, iova);
    if (i < 0) {
        pthread_rwlock_unlock(&s->dma.lock);
        return -EFAULT;
    }
    e = &s->dma.ents[i];
    if (len > e->size - (iova - e->iova) || (e->prot & prot) != prot) {
        pthread_rwlock_unlock(&s->dma.lock);
        return -EFAULT;
    }
    if (e->va == NULL) {
        pthread_rwlock_unlock(&s->dma.lock);
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
        vmig__vfu_dirty_mark_locked(&s->dma, iova, len);
    }
    pthread_rwlock_unlock(&s->dma.lock);
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

/* ------------------------------------------------------------ handlers */

/* mmap the part of the client's file a DMA_MAP names. */
static int
map_fd(struct vmig_vfu_server *s, const struct vmig_vfu_dma_map *d, int fd,
       struct vfu_dma_ent *e)
{
    struct stat st;
    uint64_t skew = d->offset % 4096;
    int prot = ((d->flags & VMIG_VFU_DMA_READ) ? PROT_READ : 0) |
               ((d->flags & VMIG_VFU_DMA_WRITE) ? PROT_WRITE : 0);
    int ret;

    /* Map only what the file has: touching past EOF is SIGBUS. */
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        d->offset + d->size < d->offset ||
        d->offset + d->size > (uint64_t)st.st_size ||
        d->size + skew > SIZE_MAX / 2) {
        vmig_dbg(s->ctx,
                 "vfu: DMA_MAP %#llx+%#llx: fd is not a file that covers "
                 "offset %#llx",
                 (unsigned long long)d->addr, (unsigned long long)d->size,
                 (unsigned long long)d->offset);
        return -EINVAL;
    }
    e->map_len = (size_t)(d->size + skew);
    e->map_base =
        mmap(NULL, e->map_len, prot, MAP_SHARED, fd, (off_t)(d->offset - skew));
    if (e->map_base == MAP_FAILED) {
        ret = -errno;
        e->map_base = NULL;
        vmig_dbg(s->ctx, "vfu: DMA_MAP: mmap: %s", strerror(-ret));
        return ret;
    }
    e->va = (uint8_t *)e->map_base + skew;
    return 0;
}

/* Insert @e, keeping the table sorted and without overlaps. */
static int
dma_insert_locked(struct vfu_dma *t, const struct vfu_dma_ent *e)
{
    struct vfu_dma_ent *nd;
    unsigned int pos;

    if (t->n >= VMIG_VFU_MAX_DMA_MAPS) {
        return -ENOSPC;
    }
    /* Find the insertion point, check both neighbours ("a command to map
     * over an existing region must be failed with EEXIST"). */
    for (pos = 0; pos < t->n && t->ents[pos].iova < e->iova; pos++) {
    }
    if ((pos > 0 && t->ents[pos - 1].iova + t->ents[pos - 1].size > e->iova) ||
        (pos < t->n && e->iova + e->size > t->ents[pos].iova)) {
        return -EEXIST;
    }
    nd = realloc(t->ents, sizeof(*nd) * (t->n + 1));
    if (nd == NULL) {
        return -ENOMEM;
    }
    t->ents = nd;
    memmove(&nd[pos + 1], &nd[pos], sizeof(*nd) * (t->n - pos));
    nd[pos] = *e;
    t->n++;
    return 0;
}

int
vmig__vfu_h_dma_map(struct vmig_vfu_server *s, struct vfu_req *r,
                    struct vfu_reply *rep)
{
    struct vmig_vfu_dma_map d;
    struct vfu_dma_ent e = {0};
    int fd = r->m->nfds > 0 ? r->raw->fds[0] : -1;
    int ret;

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
        ret = map_fd(s, &d, fd, &e);
        if (ret < 0) {
            return ret;
        }
    }
    pthread_rwlock_wrlock(&s->dma.lock);
    ret = dma_insert_locked(&s->dma, &e);
    pthread_rwlock_unlock(&s->dma.lock);
    if (ret < 0 && e.map_base != NULL) {
        munmap(e.map_base, e.map_len);
    }
    return ret;
}

int
vmig__vfu_h_dma_unmap(struct vmig_vfu_server *s, struct vfu_req *r,
                      struct vfu_reply *rep)
{
    struct vmig_vfu_dma_unmap d;
    struct vfu_dma *t = &s->dma;
    int ret = 0;

    memcpy(&d, r->m->payload, sizeof(d));
    pthread_rwlock_wrlock(&t->lock);
    if (d.flags & VMIG_VFU_DMA_UNMAP_ALL) {
        if (d.addr != 0 || d.size != 0) {
            ret = -EINVAL;
        } else {
            vmig__vfu_dma_free_locked(t);
        }
    } else {
        int i = dma_find_locked(t, d.addr);

        if (i < 0 || t->ents[i].iova != d.addr || t->ents[i].size != d.size) {
            ret = -ENOENT;
        } else {
            if (t->ents[i].map_base != NULL) {
                munmap(t->ents[i].map_base, t->ents[i].map_len);
            }
            memmove(&t->ents[i], &t->ents[i + 1],
                    sizeof(*t->ents) * (t->n - (unsigned int)i - 1));
            t->n--;
        }
    }
    pthread_rwlock_unlock(&t->lock);
    if (ret == 0) {
        d.argsz = sizeof(d);
        vmig__vfu_rep_inline(rep, &d, sizeof(d), NULL, 0);
    }
    return ret;
}
