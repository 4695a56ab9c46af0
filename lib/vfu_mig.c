/* SPDX-License-Identifier: MIT */
/*
 * vfu_mig.c - migration over vfio-user: the device's state
 * (MIG_DEVICE_STATE), its data session (MIG_DATA_READ/WRITE, or the bulk
 * channel extension), MIG_DATA_SIZE and the precopy-sizing extension.
 *
 * Data session rules, as the client sees them:
 *   - in STOP_COPY the end of data is permanent (reads return 0 forever);
 *   - in PRE_COPY "no more for now" is a short (possibly empty) read;
 *   - after a device reset the session's reader or writer gets ENODEV,
 *     never a silent end of data; outside the session's states, EBUSY.
 *
 * The bulk channel is a socketpair the client receives with
 * X_BULK_CHANNEL; X_BULK_READ streams saving data into it as frames
 * {len, status} + data ending with a zero-length terminator carrying the
 * status (0 end, ENOMSG no more for now, EAGAIN the byte limit was
 * reached, or an errno), and X_BULK_WRITE reads resuming data from it up
 * to the client's terminator.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vmig/mig.h>
#include "vfu_srv.h"

/* Bulk channel: frames we send (cache-sized; any size up to
 * VMIG_VFU_BULK_FRAME_MAX is accepted). */
#define VFU_BULK_CHUNK (256u << 10)

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

int
vmig__vfu_mig_init(struct vmig_vfu_server *s, uint64_t flags)
{
    s->mig.flags = flags;
    if (flags == 0) {
        return 0;
    }
    return vmig_mig_new(s->ctx, flags, &server_mig_ops, s, &s->mig.mig);
}

void
vmig__vfu_mig_fini(struct vmig_vfu_server *s)
{
    vmig_mig_free(s->mig.mig);
}

void
vmig__vfu_mig_disconnect(struct vmig_vfu_server *s)
{
    if (s->mig.bulk_fd >= 0) {
        close(s->mig.bulk_fd);
        s->mig.bulk_fd = -1;
    }
}

enum vmig_state
vmig__vfu_mig_state(struct vmig_vfu_server *s)
{
    return s->mig.mig != NULL ? vmig_mig_state(s->mig.mig) : VMIG_STATE_RUNNING;
}

enum vmig_state
vmig_vfu_server_state(struct vmig_vfu_server *s)
{
    return vmig__vfu_mig_state(s);
}

void
vmig_vfu_server_device_reset(struct vmig_vfu_server *s)
{
    if (s->mig.mig != NULL) {
        vmig_mig_reset(s->mig.mig);
    } else if (s->ops->reset != NULL) {
        s->ops->reset(s->opaque);
    }
}

/* Note a session opened since we last looked. */
static void
sess_refresh(struct vmig_vfu_server *s)
{
    struct vmig_session_info info;

    if (s->mig.mig == NULL) {
        return;
    }
    vmig_mig_session(s->mig.mig, &info);
    if (info.kind != VMIG_SESSION_NONE && info.generation != s->mig.sess_gen) {
        s->mig.sess_gen = info.generation;
        s->mig.sess_eof = false;
    }
}

/* 0 while the session of @kind we know is open, else -ENODEV / -EBUSY. */
static int
sess_check(struct vmig_vfu_server *s, enum vmig_session_kind kind)
{
    int ret;

    if (s->mig.mig == NULL) {
        return -EOPNOTSUPP;
    }
    sess_refresh(s);
    ret = vmig_mig_session_check(s->mig.mig, s->mig.sess_gen, kind);
    if (ret == -EBADF) {
        return -EBUSY;
    }
    return ret;
}

int
vmig__vfu_refuse_save(struct vmig_vfu_server *s)
{
    return sess_check(s, VMIG_SESSION_SAVE) == -ENODEV ? -ENODEV : -EBUSY;
}

int
vmig__vfu_refuse_resume(struct vmig_vfu_server *s)
{
    return sess_check(s, VMIG_SESSION_RESUME) == -ENODEV ? -ENODEV : -EBUSY;
}

/* Fill up to @len bytes of saving data; *status: -EAGAIN more may
 * follow, 0 the permanent end, -ENOMSG no more for now. */
static long
mig_fill(struct vmig_vfu_server *s, uint8_t *buf, size_t len, int *status)
{
    enum vmig_state st = vmig__vfu_mig_state(s);
    bool stopcopy = st == VMIG_STATE_STOP_COPY;
    size_t got = 0;

    *status = -EAGAIN;
    if (stopcopy && s->mig.sess_eof) {
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
                s->mig.sess_eof = true;
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
    if (vmig_mig_session_check(s->mig.mig, s->mig.sess_gen, VMIG_SESSION_SAVE) <
        0) {
        return -ENODEV;
    }
    return (long)got;
}

int
vmig__vfu_h_mig_read(struct vmig_vfu_server *s, struct vfu_req *r,
                     struct vfu_reply *rep)
{
    struct vmig_vfu_mig_data md;
    uint32_t want = vfu_rd32(r->m->payload, 4);
    int status, ret;
    long n;

    ret = sess_check(s, VMIG_SESSION_SAVE);
    if (ret < 0) {
        return ret;
    }
    if (want > s->conn.xfer_in) {
        return -E2BIG;
    }
    n = mig_fill(s, s->scratch, want, &status);
    if (n < 0) {
        return (int)n;
    }
    md.argsz = (uint32_t)(sizeof(md) + (size_t)n);
    md.size = (uint32_t)n;
    vmig__vfu_rep_inline(rep, &md, sizeof(md), NULL, 0);
    rep->p2 = s->scratch;
    rep->l2 = (size_t)n;
    return 0;
}

int
vmig__vfu_h_mig_write(struct vmig_vfu_server *s, struct vfu_req *r,
                      struct vfu_reply *rep)
{
    uint32_t size = vfu_rd32(r->m->payload, 4);
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
    return vmig_mig_session_check(s->mig.mig, s->mig.sess_gen,
                                  VMIG_SESSION_RESUME) < 0
               ? -ENODEV
               : 0;
}

/* ------------------------------------------------------------ features */

bool
vmig__vfu_has_mig(struct vmig_vfu_server *s)
{
    return s->mig.mig != NULL;
}

bool
vmig__vfu_has_data_size(struct vmig_vfu_server *s)
{
    return s->mig.mig != NULL && s->ops->mig_data_size != NULL;
}

bool
vmig__vfu_has_precopy_info(struct vmig_vfu_server *s)
{
    return s->mig.mig != NULL && (s->conn.ext & VMIG_VFU_EXT_PRECOPY_INFO);
}

bool
vmig__vfu_has_bulk_channel(struct vmig_vfu_server *s)
{
    return s->mig.mig != NULL && (s->conn.ext & VMIG_VFU_EXT_BULK_DATA) &&
           s->conn.peer.max_msg_fds > 0;
}

bool
vmig__vfu_has_bulk(struct vmig_vfu_server *s)
{
    return s->mig.bulk_fd >= 0;
}

_Static_assert(sizeof(struct vmig_vfu_feat_precopy) <= VFU_FEAT_OUT_MAX &&
                   sizeof(struct vmig_vfu_feat_bulk_read) <= VFU_FEAT_OUT_MAX,
               "feature answers fit");

int
vmig__vfu_f_migration(struct vmig_vfu_server *s, const struct vfu_feat_req *f,
                      struct vfu_reply *rep, void *out, size_t *olen)
{
    struct vmig_vfu_feat_migration m = {.flags = s->mig.flags};

    (void)f;
    (void)rep;
    memcpy(out, &m, sizeof(m));
    *olen = sizeof(m);
    return 0;
}

int
vmig__vfu_f_device_state(struct vmig_vfu_server *s,
                         const struct vfu_feat_req *f, struct vfu_reply *rep,
                         void *out, size_t *olen)
{
    struct vmig_vfu_feat_mig_state st;
    int ret;

    (void)rep;
    if (f->set) {
        if (f->dlen < sizeof(st)) {
            return -EINVAL;
        }
        memcpy(&st, f->d, sizeof(st));
        ret = vmig_mig_set_state(s->mig.mig, st.device_state);
        sess_refresh(s);
        if (ret < 0) {
            vmig_dbg(s->ctx, "vfu: SET state %s failed; now %s",
                     vmig_state_name(st.device_state),
                     vmig_state_name(vmig__vfu_mig_state(s)));
            return ret;
        }
    }
    st.device_state = vmig__vfu_mig_state(s);
    st.data_fd = UINT32_MAX;
    memcpy(out, &st, sizeof(st));
    *olen = sizeof(st);
    return 0;
}

int
vmig__vfu_f_data_size(struct vmig_vfu_server *s, const struct vfu_feat_req *f,
                      struct vfu_reply *rep, void *out, size_t *olen)
{
    struct vmig_vfu_feat_data_size ds;
    int ret;

    (void)f;
    (void)rep;
    ret = s->ops->mig_data_size(s->opaque, &ds.stop_copy_length);
    if (ret < 0) {
        return ret;
    }
    memcpy(out, &ds, sizeof(ds));
    *olen = sizeof(ds);
    return 0;
}

int
vmig__vfu_f_precopy_info(struct vmig_vfu_server *s,
                         const struct vfu_feat_req *f, struct vfu_reply *rep,
                         void *out, size_t *olen)
{
    struct vmig_vfu_feat_precopy pc;
    enum vmig_state st = vmig__vfu_mig_state(s);
    int ret;

    (void)f;
    (void)rep;
    if (st != VMIG_STATE_PRE_COPY && st != VMIG_STATE_PRE_COPY_P2P) {
        return -EINVAL;
    }
    ret = s->ops->precopy_info(s->opaque, &pc.initial_bytes, &pc.dirty_bytes);
    if (ret < 0) {
        return ret;
    }
    memcpy(out, &pc, sizeof(pc));
    *olen = sizeof(pc);
    return 0;
}

int
vmig__vfu_f_bulk_channel(struct vmig_vfu_server *s,
                         const struct vfu_feat_req *f, struct vfu_reply *rep,
                         void *out, size_t *olen)
{
    int sv[2];
    /* 1 MiB in flight keeps producer and consumer in cache; 4 MiB
     * measured no faster (bench_vfu). */
    int sz = 1 << 20;

    (void)f;
    (void)out;
    vmig__vfu_mig_disconnect(s);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        return -errno;
    }
    (void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    (void)setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    s->mig.bulk_fd = sv[0];
    /* The client's end goes out with the reply and is closed here then. */
    rep->fds[0] = sv[1];
    rep->nfds = 1;
    rep->fds_owned = true;
    *olen = 0;
    return 0;
}

/* Stream saving data over the bulk channel. */
static int
bulk_read(struct vmig_vfu_server *s, uint64_t max, uint64_t *sent,
          int32_t *status)
{
    struct vmig_vfu_bulk_frame f;
    struct iovec iov[2];
    int st = -EAGAIN, ret;

    *sent = 0;
    ret = sess_check(s, VMIG_SESSION_SAVE);
    while (ret == 0 && *sent < max) {
        size_t want = max - *sent < VFU_BULK_CHUNK ? (size_t)(max - *sent)
                                                   : VFU_BULK_CHUNK;
        long n = mig_fill(s, s->scratch, want, &st);

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
            ret = vmig__tran_write_all(s->mig.bulk_fd, VFU_TIMEOUT_MS, iov, 2);
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
    iov[0].iov_base = &f;
    iov[0].iov_len = sizeof(f);
    return vmig__tran_write_all(s->mig.bulk_fd, VFU_TIMEOUT_MS, iov, 1);
}

/*
 * Receive resuming data from the bulk channel: frames until the
 * terminator.  After an error the rest of the burst is still read and
 * dropped, so the channel stays in step.  Returns 0, the first error
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

        ret =
            vmig__tran_read_all(s->mig.bulk_fd, VFU_TIMEOUT_MS, &f, sizeof(f));
        if (ret < 0) {
            return -ECONNRESET;
        }
        if (f.len == 0) {
            return err;
        }
        if (f.len > VMIG_VFU_BULK_FRAME_MAX) {
            return -ECONNRESET;
        }
        ret = vmig__tran_read_all(s->mig.bulk_fd, VFU_TIMEOUT_MS, s->scratch,
                                  f.len);
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

int
vmig__vfu_f_bulk_read(struct vmig_vfu_server *s, const struct vfu_feat_req *f,
                      struct vfu_reply *rep, void *out, size_t *olen)
{
    struct vmig_vfu_feat_bulk_read br;
    uint64_t sent;
    int32_t status;
    int ret;

    if (f->dlen < sizeof(br)) {
        return -EINVAL;
    }
    memcpy(&br, f->d, sizeof(br));
    ret = bulk_read(s, br.max_bytes, &sent, &status);
    if (ret < 0) {
        rep->disconnect = true;
        return ret;
    }
    br.max_bytes = sent;
    br.status = status;
    br.reserved = 0;
    memcpy(out, &br, sizeof(br));
    *olen = sizeof(br);
    return 0;
}

int
vmig__vfu_f_bulk_write(struct vmig_vfu_server *s, const struct vfu_feat_req *f,
                       struct vfu_reply *rep, void *out, size_t *olen)
{
    struct vmig_vfu_feat_bulk_read br;
    uint64_t got;
    int ret;

    (void)f;
    ret = bulk_write(s, &got);
    if (ret == -ECONNRESET) {
        rep->disconnect = true;
    }
    if (ret < 0) {
        return ret;
    }
    br.max_bytes = got;
    br.status = 0;
    br.reserved = 0;
    memcpy(out, &br, sizeof(br));
    *olen = sizeof(br);
    return 0;
}
