/* SPDX-License-Identifier: MIT */
/*
 * vfu_region.c - the device's regions (BARs, config space): their
 * description (with the sparse-mmap capability), and reads and writes.
 *
 * Regions are described before the server listens and never change, so
 * no lock guards them.  A region backed by an fd is served from that fd,
 * the same memory a client that mmap'ed it sees; the others go to the
 * device's region_access callback on the loop thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include "vfu_srv.h"

int
vmig_vfu_server_add_region(struct vmig_vfu_server *s, unsigned int index,
                           uint64_t size, uint32_t flags, int fd,
                           uint64_t fd_offset)
{
    struct vfu_region *r;

    if (index >= VMIG_VFU_MAX_REGIONS || size == 0 ||
        (flags & ~(VMIG_VFU_REGION_READ | VMIG_VFU_REGION_WRITE)) ||
        (fd >= 0 && (fd_offset % 4096) != 0) ||
        (fd < 0 && s->ops->region_access == NULL)) {
        return -EINVAL;
    }
    r = &s->regions.r[index];
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
    if (index + 1 > s->regions.n) {
        s->regions.n = index + 1;
    }
    return 0;
}

int
vmig_vfu_server_set_sparse(struct vmig_vfu_server *s, unsigned int index,
                           const struct vmig_vfu_sparse_area *areas,
                           unsigned int n)
{
    struct vmig_vfu_sparse_mmap h = {{VMIG_VFU_CAP_SPARSE_MMAP, 1, 0}, n, 0};
    struct vfu_region *g;
    uint8_t *cap;

    if (index >= VMIG_VFU_MAX_REGIONS || n == 0 || n > 64 || areas == NULL) {
        return -EINVAL;
    }
    g = &s->regions.r[index];
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

void
vmig__vfu_regions_free(struct vfu_regions *g)
{
    for (unsigned int i = 0; i < VMIG_VFU_MAX_REGIONS; i++) {
        if (g->r[i].fd >= 0) {
            close(g->r[i].fd);
        }
        free(g->r[i].cap);
    }
}

int
vmig__vfu_h_region_info(struct vmig_vfu_server *s, struct vfu_req *r,
                        struct vfu_reply *rep)
{
    struct vmig_vfu_region_info ri;
    uint32_t index = vmig__rd32(r->m->payload, 8);
    struct vfu_region *g;

    if (index >= s->regions.n) {
        return -EINVAL;
    }
    g = &s->regions.r[index];
    memset(&ri, 0, sizeof(ri));
    ri.argsz = sizeof(ri);
    ri.index = index;
    if (g->present) {
        ri.flags = g->flags;
        ri.size = g->size;
        /* A client that takes no fds (max_msg_fds 0) gets no mmap. */
        if (g->fd >= 0 && s->conn.peer.max_msg_fds > 0) {
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
            if (vmig__rd32(r->m->payload, 0) >= ri.argsz) {
                ri.cap_offset = sizeof(ri);
                rep->p2 = g->cap;
                rep->l2 = g->caplen;
            }
        }
    }
    vmig__vfu_rep_inline(rep, &ri, sizeof(ri), NULL, 0);
    return 0;
}

int
vmig__vfu_h_region_io_fds(struct vmig_vfu_server *s, struct vfu_req *r,
                          struct vfu_reply *rep)
{
    (void)s;
    (void)r;
    (void)rep;
    return -EOPNOTSUPP;
}

/* Bounds and permission for a region access; 0 or -errno. */
static int
region_check(struct vmig_vfu_server *s, uint32_t index, uint64_t off,
             uint32_t count, bool write)
{
    struct vfu_region *g;

    if (index >= s->regions.n || !s->regions.r[index].present) {
        return -EINVAL;
    }
    g = &s->regions.r[index];
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
    struct vfu_region *g = &s->regions.r[index];
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

int
vmig__vfu_h_region_read(struct vmig_vfu_server *s, struct vfu_req *r,
                        struct vfu_reply *rep)
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
    vmig__vfu_rep_inline(rep, &rw, sizeof(rw), NULL, 0);
    rep->p2 = s->scratch;
    rep->l2 = rw.count;
    return 0;
}

int
vmig__vfu_h_region_write(struct vmig_vfu_server *s, struct vfu_req *r,
                         struct vfu_reply *rep)
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
    vmig__vfu_rep_inline(rep, &rw, sizeof(rw), NULL, 0);
    return 0;
}

int
vmig__vfu_h_write_multi(struct vmig_vfu_server *s, struct vfu_req *r,
                        struct vfu_reply *rep)
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
    vmig__vfu_rep_inline(rep, &wm, sizeof(wm), NULL, 0);
    return 0;
}
