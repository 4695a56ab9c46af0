/* SPDX-License-Identifier: MIT */
/*
 * vfu_mig.c - migration over vfio-user: the device's state
 * (MIG_DEVICE_STATE), its data session (MIG_DATA_READ/WRITE, or the bulk
 * channel extension), MIG_DATA_SIZE and the precopy-sizing extension.
 *
 * The state machine and the data session are the device's framework
 * object's (<vmig/device.h>); this file puts them on the wire.  As the
 * client sees them:
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
#include "vfu_srv.h"

/* Bulk channel: frames we send (cache-sized; any size up to
 * VMIG_VFU_BULK_FRAME_MAX is accepted). */
#define VFU_BULK_CHUNK (256u << 10)

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
    return s->mig.dev != NULL ? vmig_dev_state(s->mig.dev) : VMIG_STATE_RUNNING;
}

enum vmig_state
vmig_vfu_server_state(struct vmig_vfu_server *s)
{
    return vmig__vfu_mig_state(s);
}

void
vmig_vfu_server_device_reset(struct vmig_vfu_server *s)
{
    if (s->mig.dev != NULL) {
        vmig_dev_reset(s->mig.dev, VMIG_RESET_GUEST);
    }
}

/* 0 while a session of @kind is open, else -ENODEV / -EBUSY. */
static int
sess_usable(struct vmig_vfu_server *s, enum vmig_session_kind kind)
{
    if (s->mig.dev == NULL) {
        return -EBUSY;
    }
    return vmig_dev_session_usable(s->mig.dev, kind);
}

int
vmig__vfu_refuse_save(struct vmig_vfu_server *s)
{
    return sess_usable(s, VMIG_SESSION_SAVE) == -ENODEV ? -ENODEV : -EBUSY;
}

int
vmig__vfu_refuse_resume(struct vmig_vfu_server *s)
{
    return sess_usable(s, VMIG_SESSION_RESUME) == -ENODEV ? -ENODEV : -EBUSY;
}

int
vmig__vfu_h_mig_read(struct vmig_vfu_server *s, struct vfu_req *r,
                     struct vfu_reply *rep)
{
    struct vmig_vfu_mig_data md;
    uint32_t want = vmig__rd32(r->m->payload, 4);
    ssize_t n;
    int ret;

    ret = sess_usable(s, VMIG_SESSION_SAVE);
    if (ret < 0) {
        return ret;
    }
    if (want > s->conn.xfer_in) {
        return -E2BIG;
    }
    n = vmig_dev_read(s->mig.dev, s->scratch, want, NULL);
    if (n == -ENOMSG) {
        n = 0; /* "no more for now": an empty reply */
    }
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
    uint32_t size = vmig__rd32(r->m->payload, 4);

    (void)rep;
    if (s->mig.dev == NULL) {
        return -EBUSY;
    }
    return vmig_dev_write(s->mig.dev, r->m->payload + 8, size);
}

/* ------------------------------------------------------------ features */

bool
vmig__vfu_has_mig(struct vmig_vfu_server *s)
{
    return s->mig.dev != NULL;
}

bool
vmig__vfu_has_data_size(struct vmig_vfu_server *s)
{
    return s->mig.dev != NULL &&
           (vmig_dev_caps(s->mig.dev) & VMIG_DEV_CAP_DATA_SIZE);
}

bool
vmig__vfu_has_precopy_info(struct vmig_vfu_server *s)
{
    return s->mig.dev != NULL && (s->conn.ext & VMIG_VFU_EXT_PRECOPY_INFO);
}

bool
vmig__vfu_has_bulk_channel(struct vmig_vfu_server *s)
{
    return s->mig.dev != NULL && (s->conn.ext & VMIG_VFU_EXT_BULK_DATA) &&
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
    struct vmig_vfu_feat_migration m = {.flags = vmig_dev_flags(s->mig.dev)};

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
        ret = vmig_dev_set_state(s->mig.dev, st.device_state);
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
    ret = vmig_dev_data_size(s->mig.dev, &ds.stop_copy_length);
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
    int ret;

    (void)f;
    (void)rep;
    ret = vmig_dev_precopy_info(s->mig.dev, &pc.initial_bytes, &pc.dirty_bytes);
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
    ret = sess_usable(s, VMIG_SESSION_SAVE);
    while (ret == 0 && *sent < max) {
        size_t want = max - *sent < VFU_BULK_CHUNK ? (size_t)(max - *sent)
                                                   : VFU_BULK_CHUNK;
        ssize_t n = vmig_dev_read(s->mig.dev, s->scratch, want, &st);

        if (n == -ENOMSG) {
            n = 0;
        }
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
    int err = sess_usable(s, VMIG_SESSION_RESUME);

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
            err = vmig_dev_write(s->mig.dev, s->scratch, f.len);
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
