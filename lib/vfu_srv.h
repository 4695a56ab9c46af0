/* SPDX-License-Identifier: MIT */
/*
 * vfu_srv.h - internals shared by the files of the vfio-user server
 * (never installed).  One file per concern:
 *
 *   vfu_server.c    lifecycle, the socket (listen, accept, adopt,
 *                   disconnect) and the event loop
 *   vfu_dispatch.c  the command descriptor table and handle(): decode,
 *                   size and state checks, one reply per command
 *   vfu_feature.c   DEVICE_FEATURE: the feature descriptor table
 *   vfu_region.c    regions: info, sparse mmap, reads and writes
 *   vfu_irq.c       IRQs: info, SET_IRQS, triggering from any thread
 *   vfu_dma.c       the DMA map table, DMA from any thread, and the
 *                   server-to-client DMA_READ/DMA_WRITE requests
 *   vfu_dirty.c     DMA dirty logging (built-in tracker or the device's,
 *                   through its framework object)
 *   vfu_mig.c       migration: the device's state, data reads and
 *                   writes, data size, precopy sizing, the bulk channel
 *   vfu_fuzz.c      the fuzzing entry point (vfu_priv.h)
 *
 * Locks (each owned by one file; none is held while another is taken,
 * except that a DMA access under dma.lock may send a request, which
 * takes conn.send_lock and pend.lock).  The device's framework lock
 * (<vmig/device.h>) comes before all of them: migration callbacks may do
 * DMA and raise IRQs, so the server never calls into the framework while
 * it holds one of its own locks.
 *   dma.lock (rwlock)   vfu_dma.c, vfu_dirty.c: the map table and the
 *                       built-in dirty log; writers are DMA_MAP/UNMAP,
 *                       logging start/stop and disconnect; readers are
 *                       DMA accesses, which keeps an unmap waiting for
 *                       in-flight DMA as the spec requires.
 *   irqs.lock           vfu_irq.c: eventfds, mask and pending bits.
 *   conn.send_lock      vfu_server.c: writes to the connection (replies
 *                       from the loop, DMA requests from any thread).
 *   pend.lock/pend.cv   vfu_dma.c: the one outstanding request of a
 *                       device thread, and its reply.
 * Everything else belongs to the loop thread.
 */
#ifndef VMIG_VFU_SRV_H
#define VMIG_VFU_SRV_H

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <vmig/vfu_server.h>
#include "internal.h"
#include "proto_priv.h"
#include "tran.h"

/* A stalled peer costs at most this long per wait. */
#define VFU_TIMEOUT_MS 10000

struct vfu_region {
    bool present;
    uint64_t size;
    uint32_t flags;
    int fd;
    uint64_t fd_off;
    uint8_t *cap; /* prebuilt sparse-mmap capability, or NULL */
    size_t caplen;
};

/* Regions: fixed before the server listens, so no lock. */
struct vfu_regions {
    struct vfu_region r[VMIG_VFU_MAX_REGIONS];
    unsigned int n;
};

struct vfu_irq {
    uint32_t count;
    int *efd;
    uint8_t *masked;
    uint8_t *pending;
};

struct vfu_irqs {
    pthread_mutex_t lock; /* efd, masked and pending of every vector */
    struct vfu_irq q[VMIG_VFU_MAX_IRQS];
    unsigned int n; /* fixed before the server listens */
};

struct vfu_dma_ent {
    uint64_t iova;
    uint64_t size;
    uint32_t prot;
    uint8_t *va;    /* NULL: message-based */
    void *map_base; /* what to munmap */
    size_t map_len;
};

struct vfu_dirty_range {
    uint64_t iova;
    uint64_t len;
    uint64_t *bits; /* one bit per page_size */
};

struct vfu_dma {
    pthread_rwlock_t lock;
    /* guarded by lock: */
    struct vfu_dma_ent *ents; /* sorted by iova, non-overlapping */
    unsigned int n;
    bool log_on;
    bool log_dev; /* the device's callbacks do the logging */
    uint64_t log_pgsize;
    struct vfu_dirty_range *log_r;
    unsigned int log_n;
};

/* The one outstanding server-to-client request of a device thread. */
struct vfu_pend {
    pthread_mutex_t lock;
    pthread_cond_t cv; /* done changed, or the slot became free */
    /* guarded by lock: */
    bool active; /* a device thread owns the slot */
    bool done;
    uint16_t id;
    int ret;
    struct vmig__tran_msg msg;
    uint16_t next_id;
};

struct vmig_vfu_server;

/*
 * struct vfu_io - how messages reach the client: the socket, or nothing
 * (vfu_fuzz.c drops replies and fails every wait for one).
 */
struct vfu_io {
    int (*send)(struct vmig_vfu_server *s, struct vmig_vfu_hdr *h,
                const void *p1, size_t l1, const void *p2, size_t l2,
                const int *fds, unsigned int nfds);
    int (*recv)(struct vmig_vfu_server *s, size_t max,
                struct vmig__tran_msg *m);
};

/* The client connection and what was negotiated with it. */
struct vfu_conn {
    int fd;
    bool adopted;
    const struct vfu_io *io;
    pthread_mutex_t send_lock; /* writes to fd */
    bool negotiated;
    struct vmig_vfu_caps peer;
    uint32_t ext;
    uint32_t xfer_in;  /* largest transfer we accept (we advertise it) */
    uint32_t xfer_out; /* largest transfer the client accepts */
    unsigned int errs_in_row;
};

/* Migration: the device's framework object and the bulk channel. */
struct vfu_mig {
    struct vmig_dev *dev; /* NULL for a device without migration */
    int bulk_fd;          /* our end of the bulk channel, or -1 */
};

struct vmig_vfu_server {
    vmig_ctx_t *ctx;
    const struct vmig_vfu_dev_ops *ops;
    void *opaque;

    int listen_fd;
    char *path;
    int stop_efd;
    int epfd;         /* stop_efd + (the client, or the listening socket) */
    uint8_t *scratch; /* region data, migration data, bitmaps */

    struct vfu_conn conn;
    struct vfu_regions regions;
    struct vfu_irqs irqs;
    struct vfu_dma dma;
    struct vfu_pend pend;
    struct vfu_mig mig;
};

/* What a handler answers: up to two payload parts and fds. */
struct vfu_reply {
    uint8_t inl[64] __attribute__((aligned(8))); /* small fixed parts */
    char json[512];
    const void *p1;
    size_t l1;
    const void *p2;
    size_t l2;
    int fds[1];
    unsigned int nfds;
    bool fds_owned;  /* close fds once the reply is sent (or dropped) */
    bool disconnect; /* the connection cannot go on after this */
};

/* A decoded command and the raw message it came in (for its fds). */
struct vfu_req {
    const struct vmig_vfu_msg *m;
    struct vmig__tran_msg *raw;
};

typedef int (*vfu_handler_fn)(struct vmig_vfu_server *s, struct vfu_req *r,
                              struct vfu_reply *rep);

/* Copy a small fixed reply part (or two) into the reply itself. */
static inline void
vmig__vfu_rep_inline(struct vfu_reply *rep, const void *a, size_t la,
                     const void *b, size_t lb)
{
    assert(la + lb <= sizeof(rep->inl));
    memcpy(rep->inl, a, la);
    if (lb > 0) {
        memcpy(rep->inl + la, b, lb);
    }
    rep->p1 = rep->inl;
    rep->l1 = la + lb;
}

/* vfu_conn.c: send to the client (through conn.io); the socket's I/O */
int vmig__vfu_send(struct vmig_vfu_server *s, struct vmig_vfu_hdr *h,
                   const void *p1, size_t l1, const void *p2, size_t l2,
                   const int *fds, unsigned int nfds);
extern const struct vfu_io vmig__vfu_sock_io;
/* Set on the thread running the server's loop (callbacks see it). */
void vmig__vfu_loop_enter(struct vmig_vfu_server *s);
void vmig__vfu_loop_leave(void);
bool vmig__vfu_in_loop(const struct vmig_vfu_server *s);

/* vfu_server.c */
int vmig__vfu_ensure_scratch(struct vmig_vfu_server *s);
void vmig__vfu_conn_close(struct vmig_vfu_server *s, const char *why);

/* vfu_dispatch.c: handle one received message; 0, or -ECONNRESET when
 * the client must be disconnected. */
int vmig__vfu_handle(struct vmig_vfu_server *s, struct vmig__tran_msg *raw);

/* vfu_region.c */
void vmig__vfu_regions_free(struct vfu_regions *g);
int vmig__vfu_h_region_info(struct vmig_vfu_server *s, struct vfu_req *r,
                            struct vfu_reply *rep);
int vmig__vfu_h_region_io_fds(struct vmig_vfu_server *s, struct vfu_req *r,
                              struct vfu_reply *rep);
int vmig__vfu_h_region_read(struct vmig_vfu_server *s, struct vfu_req *r,
                            struct vfu_reply *rep);
int vmig__vfu_h_region_write(struct vmig_vfu_server *s, struct vfu_req *r,
                             struct vfu_reply *rep);
int vmig__vfu_h_write_multi(struct vmig_vfu_server *s, struct vfu_req *r,
                            struct vfu_reply *rep);

/* vfu_irq.c */
void vmig__vfu_irqs_init(struct vfu_irqs *q);
void vmig__vfu_irqs_disconnect(struct vfu_irqs *q);
void vmig__vfu_irqs_free(struct vfu_irqs *q);
int vmig__vfu_h_irq_info(struct vmig_vfu_server *s, struct vfu_req *r,
                         struct vfu_reply *rep);
int vmig__vfu_h_set_irqs(struct vmig_vfu_server *s, struct vfu_req *r,
                         struct vfu_reply *rep);

/* vfu_dma.c */
void vmig__vfu_dma_init(struct vmig_vfu_server *s);
void vmig__vfu_dma_fini(struct vmig_vfu_server *s);
void vmig__vfu_dma_free_locked(struct vfu_dma *d);
/* A reply arrived: hand it to the device thread waiting for it. */
void vmig__vfu_route_reply(struct vmig_vfu_server *s,
                           struct vmig__tran_msg *raw, uint16_t id);
/* The client left: fail the request a device thread waits for. */
void vmig__vfu_pend_disconnect(struct vfu_pend *p);
int vmig__vfu_h_dma_map(struct vmig_vfu_server *s, struct vfu_req *r,
                        struct vfu_reply *rep);
int vmig__vfu_h_dma_unmap(struct vmig_vfu_server *s, struct vfu_req *r,
                          struct vfu_reply *rep);

/* vfu_dirty.c */
void vmig__vfu_dirty_mark_locked(struct vfu_dma *d, uint64_t iova,
                                 uint64_t len);
/* Disconnect: stop the device's logging, free the built-in log. */
void vmig__vfu_dirty_disconnect(struct vmig_vfu_server *s);

/*
 * struct vfu_feat_req - one DEVICE_FEATURE request, as feature handlers
 * see it.
 * @m:     the message (payload: struct vmig_vfu_feature + data).
 * @argsz: the client's argsz.
 * @flags: the request's flags word (feature number and GET/SET/PROBE).
 * @get:   a GET.
 * @set:   a SET.
 * @d:     data after the feature header.
 * @dlen:  its length.
 */
struct vfu_feat_req {
    const struct vmig_vfu_msg *m;
    uint32_t argsz;
    uint32_t flags;
    bool get;
    bool set;
    const uint8_t *d;
    size_t dlen;
};

/* Largest fixed GET answer of a feature (after the feature header). */
#define VFU_FEAT_OUT_MAX 32
/* A feature handler's return value: it filled the reply itself. */
#define VFU_FEAT_REPLIED 1

/* A feature handler: 0 with *olen bytes in @out (answered after the
 * feature header), VFU_FEAT_REPLIED, or -errno. */
typedef int (*vfu_feat_fn)(struct vmig_vfu_server *s,
                           const struct vfu_feat_req *f, struct vfu_reply *rep,
                           void *out, size_t *olen);
/* Whether a feature offers GET (or SET) on this server now. */
typedef bool (*vfu_feat_can_fn)(struct vmig_vfu_server *s);

int vmig__vfu_h_feature(struct vmig_vfu_server *s, struct vfu_req *r,
                        struct vfu_reply *rep);

/* Feature handlers of vfu_dirty.c */
int vmig__vfu_f_log_start(struct vmig_vfu_server *s,
                          const struct vfu_feat_req *f, struct vfu_reply *rep,
                          void *out, size_t *olen);
int vmig__vfu_f_log_stop(struct vmig_vfu_server *s,
                         const struct vfu_feat_req *f, struct vfu_reply *rep,
                         void *out, size_t *olen);
int vmig__vfu_f_log_report(struct vmig_vfu_server *s,
                           const struct vfu_feat_req *f, struct vfu_reply *rep,
                           void *out, size_t *olen);

/* vfu_mig.c */
void vmig__vfu_mig_disconnect(struct vmig_vfu_server *s);
enum vmig_state vmig__vfu_mig_state(struct vmig_vfu_server *s);
int vmig__vfu_refuse_save(struct vmig_vfu_server *s);
int vmig__vfu_refuse_resume(struct vmig_vfu_server *s);
int vmig__vfu_h_mig_read(struct vmig_vfu_server *s, struct vfu_req *r,
                         struct vfu_reply *rep);
int vmig__vfu_h_mig_write(struct vmig_vfu_server *s, struct vfu_req *r,
                          struct vfu_reply *rep);
/* Feature availability and handlers of vfu_mig.c */
bool vmig__vfu_has_mig(struct vmig_vfu_server *s);
bool vmig__vfu_has_data_size(struct vmig_vfu_server *s);
bool vmig__vfu_has_precopy_info(struct vmig_vfu_server *s);
bool vmig__vfu_has_bulk_channel(struct vmig_vfu_server *s);
bool vmig__vfu_has_bulk(struct vmig_vfu_server *s);
int vmig__vfu_f_migration(struct vmig_vfu_server *s,
                          const struct vfu_feat_req *f, struct vfu_reply *rep,
                          void *out, size_t *olen);
int vmig__vfu_f_device_state(struct vmig_vfu_server *s,
                             const struct vfu_feat_req *f,
                             struct vfu_reply *rep, void *out, size_t *olen);
int vmig__vfu_f_data_size(struct vmig_vfu_server *s,
                          const struct vfu_feat_req *f, struct vfu_reply *rep,
                          void *out, size_t *olen);
int vmig__vfu_f_precopy_info(struct vmig_vfu_server *s,
                             const struct vfu_feat_req *f,
                             struct vfu_reply *rep, void *out, size_t *olen);
int vmig__vfu_f_bulk_channel(struct vmig_vfu_server *s,
                             const struct vfu_feat_req *f,
                             struct vfu_reply *rep, void *out, size_t *olen);
int vmig__vfu_f_bulk_read(struct vmig_vfu_server *s,
                          const struct vfu_feat_req *f, struct vfu_reply *rep,
                          void *out, size_t *olen);
int vmig__vfu_f_bulk_write(struct vmig_vfu_server *s,
                           const struct vfu_feat_req *f, struct vfu_reply *rep,
                           void *out, size_t *olen);

#endif /* VMIG_VFU_SRV_H */
