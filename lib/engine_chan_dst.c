/* SPDX-License-Identifier: MIT */
/*
 * engine_chan_dst.c - parallel channels on the destination: granting
 * them (CHANNELS / CHANNELS_ACK with a fresh random migration id),
 * joining the connections the VMM accepts (vmig_engine_accept_chan():
 * every CHANNEL_HELLO is checked against the migration waiting for its
 * channels and refused with a reason otherwise), one receiving thread per
 * extra channel, and the state shared by both roles.
 *
 * A channel's thread waits until the main connection's CHANNEL_SYNC was
 * handled (all precopy data and the devices' config are in, in order),
 * then takes RAM pieces, device data and DEV_END until CHANNEL_END.  A
 * device's data must all come on one channel (the first to carry it owns
 * it).  A failing channel fails the migration through vmig_engine_fail(),
 * which interrupts the main thread; on any failure every channel is shut
 * down and its thread joined before a device is reset.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <vmig/engine.h>
#include "chan_priv.h"
#include "engine_chan.h"
#include "engine_priv.h"
#include "internal.h"

/* ------------------------------------------------------------ shared */

int
vmig_engine_set_chan_ops(struct vmig_engine *e,
                         const struct vmig_engine_chan_ops *ops, void *opaque)
{
    int ret = 0;

    if (e == NULL || (ops != NULL && ops->release == NULL)) {
        return -EINVAL;
    }
    pthread_mutex_lock(&e->lock);
    if (e->running) {
        ret = -EBUSY;
    } else {
        e->chan_ops = ops;
        e->chan_opaque = opaque;
    }
    pthread_mutex_unlock(&e->lock);
    return ret;
}

struct eng_mc *
vmig__mc_new(struct vmig_engine *e, unsigned int count)
{
    struct eng_mc *mc = calloc(1, sizeof(*mc));

    if (mc == NULL) {
        return NULL;
    }
    if (pthread_cond_init(&mc->cond, NULL) != 0) {
        free(mc);
        return NULL;
    }
    if (pthread_mutex_init(&mc->ram_lock, NULL) != 0) {
        pthread_cond_destroy(&mc->cond);
        free(mc);
        return NULL;
    }
    mc->e = e;
    mc->count = count;
    for (unsigned int k = 0; k < VMIG_MP_MAX_CHANNELS; k++) {
        mc->ch[k].mc = mc;
        mc->ch[k].index = k;
    }
    return mc;
}

void
vmig__mc_free(struct eng_mc *mc)
{
    if (mc == NULL) {
        return;
    }
    for (unsigned int k = 0; k < VMIG_MP_MAX_CHANNELS; k++) {
        free(mc->ch[k].buf);
    }
    pthread_mutex_destroy(&mc->ram_lock);
    pthread_cond_destroy(&mc->cond);
    free(mc);
}

void
vmig__mc_wait(struct eng_mc *mc, unsigned int ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    ts.tv_sec += ms / 1000 + ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    (void)pthread_cond_timedwait(&mc->cond, &mc->e->lock, &ts);
}

void
vmig__mc_fail(struct eng_mc *mc, int err)
{
    pthread_mutex_lock(&mc->e->lock);
    if (mc->err == 0) {
        mc->err = err;
    }
    __atomic_store_n(&mc->abort, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&mc->cond);
    pthread_mutex_unlock(&mc->e->lock);
}

/* ------------------------------------------------------------ granting */

bool
vmig__mc_grantable(struct vmig_engine *e, const struct eng_dst *d)
{
    return e->chan_ops != NULL && d->p.channels > 1;
}

/* Until every extra channel joined; the source may only abort meanwhile. */
static int
dst_await_joins(struct eng_dst *d)
{
    struct vmig_engine *e = d->e;
    struct eng_mc *mc = d->mc;
    uint64_t end = vmig__mono_ms() + d->p.timeout_ms;
    struct vmig_mp_frame f;
    unsigned int joined;
    int ret;

    for (;;) {
        pthread_mutex_lock(&e->lock);
        joined = mc->joined;
        if (joined + 1 < mc->count) {
            vmig__mc_wait(mc, 50);
            joined = mc->joined;
        }
        pthread_mutex_unlock(&e->lock);
        if (joined + 1 >= mc->count) {
            return 0;
        }
        if (vmig_mp_pending(d->c)) {
            ret = vmig_mp_recv(d->c, &f);
            if (ret < 0) {
                return ret;
            }
            if (f.hdr.type == VMIG_MP_ABORT) {
                return vmig__dst_frame(d, &f);
            }
            vmig__dst_fail(d, -1, "%s before every channel joined",
                           vmig_mp_type_name(f.hdr.type));
            return -EPROTO;
        }
        if (vmig__engine_cancelled(e)) {
            return -ECANCELED;
        }
        if (d->p.timeout_ms != 0 && vmig__mono_ms() > end) {
            vmig__dst_fail(d, -1,
                           "only %u of %u extra channels joined within %u ms",
                           joined, mc->count - 1, d->p.timeout_ms);
            return -ETIMEDOUT;
        }
    }
}

int
vmig__mc_dst_grant(struct eng_dst *d)
{
    struct vmig_engine *e = d->e;
    struct vmig_mp_msg m = {.type = VMIG_MP_CHANNELS_ACK};
    struct vmig_mp_frame f;
    uint64_t id[2];
    unsigned int count;
    int ret;

    if (!(d->features & VMIG_MP_FEAT_CHANNELS)) {
        return 0;
    }
    ret = vmig_mp_recv(d->c, &f);
    if (ret < 0) {
        return ret;
    }
    if (f.hdr.type == VMIG_MP_ABORT) {
        return vmig__dst_frame(d, &f);
    }
    if (f.hdr.type != VMIG_MP_CHANNELS) {
        vmig__dst_fail(d, -1, "expected CHANNELS, got %s",
                       vmig_mp_type_name(f.hdr.type));
        return -EPROTO;
    }
    if (vmig_mp_frame_decode(&f, &m) < 0) {
        vmig__dst_fail(d, -1, "malformed CHANNELS (%u bytes)", f.hdr.len);
        return -EBADMSG;
    }
    count = m.channels.count < d->p.channels ? m.channels.count : d->p.channels;
    if (getrandom(id, sizeof(id), 0) != (ssize_t)sizeof(id)) {
        vmig__dst_fail(d, -1, "no randomness for the migration id");
        return -EIO;
    }
    d->mc = vmig__mc_new(e, count);
    if (d->mc == NULL) {
        return -ENOMEM;
    }
    d->mc->d = d;
    /* one peer, one silence: see chan_priv.h */
    vmig__chan_share_heard(d->ch, &d->mc->heard);
    d->mc->id_hi = id[0];
    d->mc->id_lo = id[1];
    pthread_mutex_lock(&e->lock);
    e->mc_cur = d->mc;
    pthread_mutex_unlock(&e->lock);
    m = (struct vmig_mp_msg){.type = VMIG_MP_CHANNELS_ACK};
    m.channels = (struct vmig_mp_channels){count, id[0], id[1]};
    ret = vmig_mp_send_msg(d->c, &m);
    if (ret == 0) {
        ret = dst_await_joins(d);
    }
    if (ret == 0) {
        vmig_info(e->ctx, "incoming: %u parallel channels joined", count);
    }
    return ret;
}

/* ------------------------------------------------------------ receiving */

/* What a channel's frame handler reports on failure. */
struct chan_fail {
    int dev; /* our device index, or -1 */
    char why[VMIG_MP_REASON_MAX + 1];
};

typedef int chan_handler_fn(struct eng_mc_chan *w,
                            const struct vmig_mp_frame *f,
                            const struct vmig_mp_msg *m, struct chan_fail *cf);

static int chan_refuse(struct chan_fail *cf, int dev, int err, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));

static int
chan_refuse(struct chan_fail *cf, int dev, int err, const char *fmt, ...)
{
    va_list ap;

    cf->dev = dev;
    va_start(ap, fmt);
    vsnprintf(cf->why, sizeof(cf->why), fmt, ap);
    va_end(ap);
    return err;
}

static int
chan_ram(struct eng_mc_chan *w, const struct vmig_mp_frame *f,
         const struct vmig_mp_msg *msg, struct chan_fail *cf)
{
    const struct vmig_mp_ram *m = &msg->ram;
    char why[200];
    int ret =
        vmig__dst_apply_ram(w->mc->d, f, m, &w->mc->ram_lock, why, sizeof(why));

    if (ret < 0) {
        return chan_refuse(cf, -1, ret, "channel %u: %s", w->index, why);
    }
    vmig__engine_account_extra(
        w->mc->d->e, (uint64_t)m->npages * VMIG_MP_PAGE_SIZE,
        (m->flags & VMIG_MP_RAM_ZERO) ? m->npages : 0, -1, 0, 0);
    return 0;
}

/*
 * Our device for the source's device @idx, owned by channel @w from now
 * on (the first channel to carry a device owns it), or NULL with @cf set.
 */
static struct eng_dst_dev *
chan_dev(struct eng_mc_chan *w, uint32_t idx, const char *what,
         struct chan_fail *cf, int *err)
{
    struct eng_mc *mc = w->mc;
    struct eng_dst *d = mc->d;
    unsigned int owner;

    if (idx >= d->src_ndev || d->map[idx] < 0) {
        *err = chan_refuse(cf, -1, -EBADMSG,
                           "channel %u: %s for unknown device %u", w->index,
                           what, idx);
        return NULL;
    }
    pthread_mutex_lock(&mc->e->lock);
    if (mc->owner[idx] == 0) {
        mc->owner[idx] = w->index;
    }
    owner = mc->owner[idx];
    pthread_mutex_unlock(&mc->e->lock);
    if (owner != w->index) {
        *err = chan_refuse(cf, d->map[idx], -EPROTO,
                           "%s on channel %u, but channel %u carries that "
                           "device",
                           what, w->index, owner);
        return NULL;
    }
    return &d->dev[d->map[idx]];
}

static int
chan_dev_data(struct eng_mc_chan *w, const struct vmig_mp_frame *f,
              const struct vmig_mp_msg *msg, struct chan_fail *cf)
{
    struct eng_dst *d = w->mc->d;
    const struct vmig_mp_dev_data *m = &msg->dev_data;
    struct eng_dst_dev *dd;
    const struct eng_dev *ed;
    int ret = 0, j;

    (void)f;
    dd = chan_dev(w, m->dev, "DEV_DATA", cf, &ret);
    if (dd == NULL) {
        return ret;
    }
    j = d->map[m->dev];
    ed = &d->e->dev[j];
    if (m->flags & VMIG_MP_DEV_PRECOPY) {
        return chan_refuse(cf, j, -EPROTO,
                           "precopy data on channel %u (extra channels "
                           "carry stop-copy data only)",
                           w->index);
    }
    if (dd->rx_ended || m->offset != dd->rx_off) {
        return chan_refuse(cf, j, -EBADMSG,
                           "device data out of order at offset %llu "
                           "(expected %llu)",
                           (unsigned long long)m->offset,
                           (unsigned long long)dd->rx_off);
    }
    ret = ed->ops->write(ed->opaque, m->data.ptr, m->data.len);
    if (ret < 0) {
        return chan_refuse(cf, j, ret,
                           "device refused its state at offset %llu: %s",
                           (unsigned long long)m->offset, strerror(-ret));
    }
    XXH3_64bits_update(dd->hash, m->data.ptr, m->data.len);
    dd->rx_off += m->data.len;
    dd->rx_stopcopy = true;
    vmig__engine_account_extra(d->e, 0, 0, j, m->data.len, 0);
    return 0;
}

static int
chan_dev_end(struct eng_mc_chan *w, const struct vmig_mp_frame *f,
             const struct vmig_mp_msg *msg, struct chan_fail *cf)
{
    struct eng_dst *d = w->mc->d;
    const struct vmig_mp_dev_end *m = &msg->dev_end;
    struct eng_dst_dev *dd;
    int ret = 0;

    (void)f;
    dd = chan_dev(w, m->dev, "DEV_END", cf, &ret);
    if (dd == NULL) {
        return ret;
    }
    if (dd->rx_ended || m->total != dd->rx_off ||
        m->digest != XXH3_64bits_digest(dd->hash)) {
        return chan_refuse(cf, d->map[m->dev], -EBADMSG,
                           "device data incomplete, corrupt or ended twice "
                           "(%llu of %llu bytes)",
                           (unsigned long long)dd->rx_off,
                           (unsigned long long)m->total);
    }
    dd->rx_ended = true;
    return 0;
}

/* CHANNEL_END: everything this channel carried arrived (1). */
static int
chan_end(struct eng_mc_chan *w, const struct vmig_mp_frame *f,
         const struct vmig_mp_msg *m, struct chan_fail *cf)
{
    (void)f;
    if (m->channel.index != w->index || m->channel.frames != w->frames) {
        return chan_refuse(cf, -1, -EBADMSG,
                           "CHANNEL_END of channel %u says %u and %llu "
                           "frames; %llu arrived",
                           w->index, m->channel.index,
                           (unsigned long long)m->channel.frames,
                           (unsigned long long)w->frames);
    }
    return 1;
}

/* The frames an extra channel may carry, by type. */
static chan_handler_fn *const chan_handlers[VMIG_MP_MAIN_LAST + 1] = {
    [VMIG_MP_RAM] = chan_ram,
    [VMIG_MP_DEV_DATA] = chan_dev_data,
    [VMIG_MP_DEV_END] = chan_dev_end,
    [VMIG_MP_CHANNEL_END] = chan_end,
};

/* One frame of extra channel @w: 0 go on, 1 its end, or a negative errno. */
static int
chan_frame(struct eng_mc_chan *w, const struct vmig_mp_frame *f,
           struct chan_fail *cf)
{
    unsigned int type = f->hdr.type;
    struct vmig_mp_msg m;
    int ret;

    if (!vmig_mp_type_known(type)) {
        if (f->hdr.flags & VMIG_MP_F_OPTIONAL) {
            return 0;
        }
        return chan_refuse(cf, -1, -EOPNOTSUPP,
                           "unknown mandatory frame type %#x on channel %u",
                           type, w->index);
    }
    if (type >= VMIG_ARRAY_SIZE(chan_handlers) || chan_handlers[type] == NULL) {
        return chan_refuse(cf, -1, -EPROTO, "%s frame on extra channel %u",
                           vmig_mp_type_name(type), w->index);
    }
    if (vmig_mp_frame_decode(f, &m) < 0) {
        return chan_refuse(cf, -1, -EBADMSG,
                           "malformed %s frame on channel %u (%u bytes)",
                           vmig_mp_type_name(type), w->index, f->hdr.len);
    }
    ret = chan_handlers[type](w, f, &m, cf);
    if (ret == 0 && type != VMIG_MP_CHANNEL_END) {
        w->frames++;
    }
    return ret;
}

/* Wait for CHANNEL_SYNC (or the end); false when stopped first. */
static bool
chan_wait_go(struct eng_mc *mc)
{
    bool go;

    pthread_mutex_lock(&mc->e->lock);
    while (!mc->go && __atomic_load_n(&mc->abort, __ATOMIC_ACQUIRE) == 0) {
        pthread_cond_wait(&mc->cond, &mc->e->lock);
    }
    go = mc->go && __atomic_load_n(&mc->abort, __ATOMIC_ACQUIRE) == 0;
    pthread_mutex_unlock(&mc->e->lock);
    return go;
}

/* An extra channel's thread on the destination. */
static void *
dst_chan_main(void *arg)
{
    struct eng_mc_chan *w = arg;
    struct eng_mc *mc = w->mc;
    struct vmig_engine *e = mc->e;
    struct vmig_mp_msg ready = {.type = VMIG_MP_CHANNEL_READY};
    struct chan_fail cf = {.dev = -1};
    struct vmig_mp_frame f;
    uint64_t seen = 0, now;
    int ret;

    ready.channel.index = w->index;
    ret = vmig_mp_send_msg(w->c, &ready);
    if (ret == 0 && !chan_wait_go(mc)) {
        ret = -ECANCELED;
    }
    while (ret == 0) {
        ret = vmig_mp_recv_placed(w->c, VMIG_MP_RAM_HDR_LEN, vmig__dst_place,
                                  mc->d, &f);
        if (ret == 0) {
            ret = chan_frame(w, &f, &cf);
        } else if (ret == -EBADMSG || ret == -E2BIG) {
            chan_refuse(&cf, -1, ret, "corrupt or oversized frame (%s)",
                        strerror(-ret));
        }
        vmig_mp_conn_bytes(w->c, NULL, &now);
        vmig__engine_account_extra(e, 0, 0, -1, 0, now - seen);
        seen = now;
    }
    if (ret < 0 && __atomic_load_n(&mc->abort, __ATOMIC_ACQUIRE) == 0) {
        if (cf.why[0] == '\0' && ret == -ETIMEDOUT) {
            snprintf(cf.why, sizeof(cf.why),
                     "migration channel %u: " VMIG__PEER_SILENT_FMT, w->index,
                     "source", mc->d->p.timeout_ms);
        } else if (cf.why[0] == '\0') {
            snprintf(cf.why, sizeof(cf.why), "migration channel %u: %s",
                     w->index, strerror(-ret));
        }
        vmig_err(e->ctx, "incoming: %s", cf.why);
        if (vmig_engine_fail(e, cf.dev >= 0 ? e->dev[cf.dev].name : NULL,
                             -ret > 0 && -ret <= 4095 ? -ret : EIO,
                             cf.why) < 0) {
            vmig_dbg(e->ctx, "incoming: the migration already ended");
        }
    }
    if (ret < 0) {
        vmig__mc_fail(mc, ret);
    }
    pthread_mutex_lock(&e->lock);
    w->done = ret == 1;
    mc->ndone++;
    pthread_cond_broadcast(&mc->cond);
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

/*
 * After SWITCHOVER the source waits on the main connection for our
 * answer while the extra channels may still deliver what the sockets'
 * buffers hold: it hears nothing there meanwhile.  While the channels
 * hear from it, an ACK of SWITCHOVER (value: the extra channels done so
 * far) every quarter of the peer timeout says so; a source may ignore
 * ACKs, ours counts the bytes as the peer heard (chan_priv.h).  Channels
 * that hear nothing send nothing: a stall still times out.  *@last: when
 * the previous one went (or the wait began).
 */
static int
dst_alive(struct eng_dst *d, uint64_t *last, unsigned int ndone)
{
    struct vmig_mp_msg m = {.type = VMIG_MP_ACK,
                            .ack = {VMIG_MP_SWITCHOVER, d->sw_seq, ndone}};
    uint64_t now = vmig__mono_ms();

    if (d->p.timeout_ms == 0 || now - *last < d->p.timeout_ms / 4 ||
        __atomic_load_n(&d->mc->heard, __ATOMIC_RELAXED) <= *last) {
        return 0;
    }
    *last = now;
    return vmig_mp_send_msg(d->c, &m);
}

int
vmig__mc_dst_finish(struct eng_dst *d)
{
    struct vmig_engine *e = d->e;
    struct eng_mc *mc = d->mc;
    uint64_t last = vmig__mono_ms();
    unsigned int ndone;
    int err;

    if (mc == NULL) {
        return 0;
    }
    if (!d->chan_sync) {
        vmig__dst_fail(d, -1, "SWITCHOVER before CHANNEL_SYNC");
        return -EPROTO;
    }
    for (;;) {
        pthread_mutex_lock(&e->lock);
        if (mc->ndone + 1 < mc->count && mc->err == 0) {
            vmig__mc_wait(mc, 50);
        }
        ndone = mc->ndone;
        err = mc->err;
        pthread_mutex_unlock(&e->lock);
        if (err != 0) {
            return err;
        }
        if (ndone + 1 >= mc->count) {
            break;
        }
        if (vmig__engine_cancelled(e)) {
            return -ECANCELED;
        }
        err = dst_alive(d, &last, ndone);
        if (err < 0) {
            return err;
        }
    }
    for (unsigned int k = 1; k < mc->count; k++) {
        if (mc->ch[k].th_live) {
            pthread_join(mc->ch[k].th, NULL);
            mc->ch[k].th_live = false;
        }
    }
    return 0;
}

void
vmig__mc_dst_stop(struct eng_dst *d)
{
    struct vmig_engine *e = d->e;
    struct eng_mc *mc = d->mc;

    if (mc == NULL) {
        return;
    }
    pthread_mutex_lock(&e->lock);
    if (e->mc_cur == mc) {
        e->mc_cur = NULL;
    }
    mc->stopped = true;
    __atomic_store_n(&mc->abort, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&mc->cond);
    for (unsigned int k = 1; k < mc->count; k++) {
        /* a thread blocked reading its socket wakes up */
        if (mc->ch[k].th_live && !mc->ch[k].done && mc->ch[k].ch != NULL) {
            shutdown(vmig_chan_fd(mc->ch[k].ch), SHUT_RDWR);
        }
    }
    pthread_mutex_unlock(&e->lock);
    for (unsigned int k = 1; k < mc->count; k++) {
        if (mc->ch[k].th_live) {
            pthread_join(mc->ch[k].th, NULL);
            mc->ch[k].th_live = false;
        }
    }
}

void
vmig__mc_dst_free(struct eng_dst *d)
{
    struct eng_mc *mc = d->mc;

    if (mc == NULL) {
        return;
    }
    vmig__mc_dst_stop(d);
    if (d->c != NULL) {
        vmig__chan_share_heard(d->ch, NULL);
    }
    for (unsigned int k = 1; k < mc->count; k++) {
        vmig_mp_conn_free(mc->ch[k].c);
        if (mc->ch[k].ch != NULL) {
            d->e->chan_ops->release(d->e->chan_opaque, mc->ch[k].ch);
        }
    }
    vmig__mc_free(mc);
    d->mc = NULL;
}

/* ------------------------------------------------------------ joining */

/*
 * Join @c (its CHANNEL_HELLO in @h) to the migration waiting for
 * channels: 0, or a positive errno with @why.
 */
static int
dst_join(struct vmig_engine *e, struct vmig_chan *ch, struct vmig_mp_conn *c,
         const struct vmig_mp_channel *h, char *why, size_t len)
{
    struct eng_mc *mc;
    struct eng_mc_chan *w;
    int err = 0;

    pthread_mutex_lock(&e->lock);
    mc = e->mc_cur;
    if (mc == NULL || mc->stopped) {
        err = ENOENT;
        snprintf(why, len, "no migration here is waiting for its channels");
    } else if (((h->id_hi ^ mc->id_hi) | (h->id_lo ^ mc->id_lo)) != 0) {
        err = ENOENT;
        snprintf(why, len, "unknown migration id");
    } else if (h->count != mc->count || h->index >= mc->count) {
        err = EINVAL;
        snprintf(why, len,
                 "channel %u of %u does not fit this migration, which has "
                 "%u channels",
                 h->index, h->count, mc->count);
    } else if (mc->ch[h->index].ch != NULL) {
        err = EEXIST;
        snprintf(why, len, "channel %u already joined", h->index);
    } else {
        w = &mc->ch[h->index];
        w->ch = ch;
        w->c = c;
        /* the migration's peer timeout, not the accept's own, and its
         * shared time the peer was last heard */
        vmig_mp_conn_set_timeout(c, mc->d->p.timeout_ms);
        vmig__chan_share_heard(ch, &mc->heard);
        vmig_mp_conn_set_cancel(c, &mc->abort);
        if ((mc->d->features & VMIG_MP_FEAT_ZSTD) &&
            vmig_mp_conn_set_compress(c, VMIG_MP_COMPRESS_ZSTD,
                                      mc->d->p.zstd_level) < 0) {
            w->ch = NULL;
            w->c = NULL;
            err = ENOMEM;
            snprintf(why, len, "cannot set up compression for channel %u",
                     h->index);
        } else if (pthread_create(&w->th, NULL, dst_chan_main, w) != 0) {
            w->ch = NULL;
            w->c = NULL;
            err = EAGAIN;
            snprintf(why, len, "cannot start a thread for channel %u",
                     h->index);
        } else {
            w->th_live = true;
            mc->joined++;
            pthread_cond_broadcast(&mc->cond);
        }
    }
    pthread_mutex_unlock(&e->lock);
    return err;
}

int
vmig_engine_accept_chan(struct vmig_engine *e, struct vmig_chan *ch,
                        const char *busy_reason, unsigned int timeout_ms)
{
    struct vmig_mp_msg m = {.type = VMIG_MP_ERROR};
    char why[VMIG_MP_REASON_MAX + 1] = "";
    struct vmig_mp_conn *c;
    struct vmig_mp_frame f;
    uint8_t sink[4096];
    int ret, err = 0;

    if (e == NULL || ch == NULL) {
        return -EINVAL;
    }
    ret = vmig_mp_conn_new_chan(e->ctx, ch, &c);
    if (ret < 0) {
        return ret;
    }
    vmig_mp_conn_set_timeout(c, timeout_ms);
    ret = vmig_mp_handshake(c);
    if (ret == 0) {
        ret = vmig_mp_recv(c, &f);
    }
    if (ret < 0) {
        vmig_mp_conn_free(c);
        return ret;
    }
    if (f.hdr.type == VMIG_MP_HELLO) {
        err = EBUSY;
        snprintf(why, sizeof(why), "%s",
                 busy_reason != NULL ? busy_reason
                                     : "destination busy: it is already "
                                       "receiving a migration");
    } else if (f.hdr.type != VMIG_MP_CHANNEL_HELLO) {
        err = EPROTO;
        snprintf(why, sizeof(why), "expected CHANNEL_HELLO, got %s",
                 vmig_mp_type_name(f.hdr.type));
    } else if (vmig_mp_frame_decode(&f, &m) < 0) {
        err = EBADMSG;
        snprintf(why, sizeof(why), "malformed CHANNEL_HELLO");
    } else {
        err = dst_join(e, ch, c, &m.channel, why, sizeof(why));
        if (err == 0) {
            return 0; /* the channel's thread owns @c now */
        }
    }
    vmig_warn(e->ctx, "incoming: refused a connection: %s", why);
    m = (struct vmig_mp_msg){.type = VMIG_MP_ERROR};
    m.error.err = (uint32_t)err;
    m.error.dev = VMIG_MP_NO_DEVICE;
    snprintf(m.error.reason, sizeof(m.error.reason), "%s", why);
    if (vmig_mp_send_msg(c, &m) == 0) {
        vmig__chan_shutdown_wr(ch);
        vmig__fd_drain(vmig_chan_fd(ch), 500, sink, sizeof(sink));
    }
    vmig_mp_conn_free(c);
    return -err;
}
