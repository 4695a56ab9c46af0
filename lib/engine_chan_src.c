/* SPDX-License-Identifier: MIT */
/*
 * engine_chan_src.c - parallel channels on the source: asking the
 * destination for them (CHANNELS / CHANNELS_ACK), opening and
 * introducing each extra connection (CHANNEL_HELLO / CHANNEL_READY), and
 * the stop-copy that uses them all at once.
 *
 * Stop-copy with channels: the main connection carries every device's
 * VMM-owned config, then CHANNEL_SYNC (from here device data travels on
 * the extra channels only), the vCPU state and pieces of guest RAM; one
 * thread per extra channel takes work from a shared list - first a whole
 * device (its remaining data and DEV_END), then pieces of guest RAM -
 * and ends with CHANNEL_END.  The migrating thread keeps reading the
 * return path meanwhile, so a destination's ERROR stops every channel at
 * once; any channel failing stops the others and fails the migration,
 * which then rolls back as always.  Every thread is joined before
 * stop-copy returns.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/engine.h>
#include "chan_priv.h"
#include "engine_chan.h"
#include "engine_precopy.h"
#include "engine_priv.h"
#include "engine_send.h"
#include "internal.h"

uint64_t
vmig__mc_offer(const struct eng_src *s)
{
    const struct vmig_engine *e = s->e;

    return s->p.channels > 1 && e->chan_ops != NULL && e->chan_ops->open != NULL
               ? VMIG_MP_FEAT_CHANNELS
               : 0;
}

/* ------------------------------------------------------------ opening */

/* Open extra channel @w, introduce it, wait until the destination took it. */
static int
src_open_one(struct eng_src *s, struct eng_mc_chan *w)
{
    struct vmig_engine *e = s->e;
    struct eng_mc *mc = s->mc;
    struct vmig_mp_msg m = {.type = VMIG_MP_CHANNEL_HELLO};
    struct vmig_mp_frame f;
    int ret;

    ret = e->chan_ops->open(e->chan_opaque, w->index, &e->cancel, &w->ch);
    if (ret < 0) {
        w->ch = NULL;
        vmig__engine_set_error(e, "cannot open migration channel %u of %u: %s",
                               w->index, mc->count, strerror(-ret));
        return ret;
    }
    ret = vmig_mp_conn_new_chan(e->ctx, w->ch, &w->c);
    if (ret < 0) {
        return ret;
    }
    vmig__chan_share_heard(w->ch, &mc->heard);
    vmig_mp_conn_set_timeout(w->c, s->p.timeout_ms);
    vmig_mp_conn_set_cancel(w->c, &e->cancel);
    ret = vmig__engine_handshake(e, w->c, true);
    if (ret == 0) {
        ret = vmig__engine_compress(e, w->c, s->features, s->p.zstd_level);
    }
    if (ret < 0) {
        return ret;
    }
    m.channel = (struct vmig_mp_channel){.id_hi = mc->id_hi,
                                         .id_lo = mc->id_lo,
                                         .index = w->index,
                                         .count = mc->count};
    ret = vmig_mp_send_msg(w->c, &m);
    if (ret == 0) {
        ret = vmig_mp_recv(w->c, &f);
    }
    if (ret < 0) {
        vmig__engine_set_error(e, "migration channel %u of %u: %s", w->index,
                               mc->count, strerror(-ret));
        return ret;
    }
    if (f.hdr.type == VMIG_MP_ERROR) {
        return vmig__src_error_frame(s, &f);
    }
    if (f.hdr.type != VMIG_MP_CHANNEL_READY ||
        vmig_mp_frame_decode(&f, &m) < 0 || m.channel.index != w->index) {
        vmig__engine_set_error(e,
                               "destination sent %s instead of CHANNEL_READY "
                               "for channel %u",
                               vmig_mp_type_name(f.hdr.type), w->index);
        return -EPROTO;
    }
    return 0;
}

int
vmig__mc_src_open(struct eng_src *s)
{
    struct vmig_engine *e = s->e;
    struct vmig_mp_msg m = {.type = VMIG_MP_CHANNELS};
    struct vmig_mp_frame f;
    int ret;

    if (!(s->features & VMIG_MP_FEAT_CHANNELS)) {
        return 0;
    }
    m.channels.count = s->p.channels;
    ret = vmig_mp_send_msg(s->c, &m);
    if (ret == 0) {
        ret = vmig__src_expect(s, VMIG_MP_CHANNELS_ACK, &f);
    }
    if (ret < 0) {
        return ret;
    }
    if (vmig_mp_frame_decode(&f, &m) < 0 || m.channels.count < 2 ||
        m.channels.count > s->p.channels) {
        vmig__engine_set_error(e, "destination sent a malformed CHANNELS_ACK");
        return -EPROTO;
    }
    s->mc = vmig__mc_new(e, m.channels.count);
    if (s->mc == NULL) {
        return -ENOMEM;
    }
    s->mc->s = s;
    /* one peer, one silence: see chan_priv.h */
    vmig__chan_share_heard(s->ch, &s->mc->heard);
    s->mc->id_hi = m.channels.id_hi;
    s->mc->id_lo = m.channels.id_lo;
    for (unsigned int k = 1; k < s->mc->count; k++) {
        ret = src_open_one(s, &s->mc->ch[k]);
        if (ret < 0) {
            return ret;
        }
    }
    vmig_info(e->ctx, "migration: %u parallel channels", s->mc->count);
    return 0;
}

/* ------------------------------------------------------------ the work */

/*
 * With e->lock held: the next piece of guest RAM to send, when RAM moves
 * over the channels and some is left.
 */
static bool
take_ram(struct eng_mc *mc, unsigned int *r, uint64_t *off, uint32_t *np)
{
    const struct vmig_engine *e = mc->e;

    while (mc->ram_spread && mc->ram_region < e->nregions) {
        const struct eng_region *rg = &e->region[mc->ram_region];

        if (mc->ram_off < rg->size) {
            uint64_t pages = (rg->size - mc->ram_off) / VMIG_MP_PAGE_SIZE;

            *np = pages > VMIG_MP_RAM_PAGES_MAX ? VMIG_MP_RAM_PAGES_MAX
                                                : (uint32_t)pages;
            *r = mc->ram_region;
            *off = mc->ram_off;
            mc->ram_off += (uint64_t)*np * VMIG_MP_PAGE_SIZE;
            mc->ram_pages += *np;
            return true;
        }
        mc->ram_region++;
        mc->ram_off = 0;
    }
    return false;
}

/* Send @m on extra channel @w and count its bytes into the stats. */
static int
chan_send(struct eng_mc_chan *w, const struct vmig_mp_msg *m, int dev,
          uint64_t ram_bytes, uint64_t zero_pages, uint64_t dev_bytes)
{
    uint64_t before = vmig__wire_sent(w->c);
    int ret = vmig_mp_send_msg(w->c, m);

    if (ret == 0) {
        w->frames++;
        vmig__engine_account_extra(w->mc->e, ram_bytes, zero_pages, dev,
                                   dev_bytes, vmig__wire_sent(w->c) - before);
    }
    return ret;
}

/* One piece of guest RAM on extra channel @w (the VM is paused). */
static int
chan_ram(struct eng_mc_chan *w, unsigned int r, uint64_t off, uint32_t np)
{
    struct vmig_engine *e = w->mc->e;
    const struct eng_src *s = w->mc->s;
    size_t len = (size_t)np * VMIG_MP_PAGE_SIZE;
    const uint8_t *src = (const uint8_t *)e->region[r].host + off;
    struct vmig_mp_msg m = {.type = VMIG_MP_RAM};
    bool zero = (s->features & VMIG_MP_FEAT_ZERO_PAGES) &&
                ((e->ops->ram_hole != NULL &&
                  e->ops->ram_hole(e->opaque, r, off, len) == 1) ||
                 vmig__all_zero(src, len));

    m.ram = (struct vmig_mp_ram){.region = r,
                                 .flags = zero ? VMIG_MP_RAM_ZERO : 0,
                                 .offset = off,
                                 .npages = np,
                                 .pass = 1,
                                 .data = {zero ? NULL : src, zero ? 0 : len}};
    return chan_send(w, &m, -1, len, zero ? np : 0, 0);
}

/* Channel @w's first device frame (data, or DEV_END when its device had
 * none left) was handed over, or it found no device to take: once every
 * channel is there the main connection may start its RAM
 * (wait_workers()).  Counted once per channel, whatever it does next. */
static void
chan_first_out(struct eng_mc_chan *w)
{
    struct eng_mc *mc = w->mc;

    if (w->first_out) {
        return;
    }
    w->first_out = true;
    pthread_mutex_lock(&mc->e->lock);
    mc->dev_first++;
    pthread_cond_broadcast(&mc->cond);
    pthread_mutex_unlock(&mc->e->lock);
}

/* Device @i's remaining state on extra channel @w, then its DEV_END. */
static int
chan_device(struct eng_mc_chan *w, unsigned int i)
{
    struct eng_mc *mc = w->mc;
    struct vmig_engine *e = mc->e;
    const struct eng_dev *d = &e->dev[i];
    struct eng_src_dev *sd = &mc->s->dev[i];
    struct vmig_mp_msg m = {.type = VMIG_MP_DEV_DATA};
    int ret;

    if (d->ops->read == NULL) {
        vmig__engine_set_error(e, "device %s: backend cannot read state",
                               d->name);
        return -EOPNOTSUPP;
    }
    for (;;) {
        ssize_t n = d->ops->read(d->opaque, w->buf, VMIG_MP_CHUNK_MAX);

        if (n == 0) {
            break;
        }
        if (n < 0 || n > (ssize_t)VMIG_MP_CHUNK_MAX) {
            return vmig__src_read_failed(mc->s, i, n < 0 ? (int)n : -EIO);
        }
        if (__atomic_load_n(&mc->abort, __ATOMIC_ACQUIRE) != 0) {
            return -ECANCELED;
        }
        m.dev_data = (struct vmig_mp_dev_data){
            .dev = i, .offset = sd->tx_off, .data = {w->buf, (size_t)n}};
        vmig__src_first_dev(mc->s);
        ret = chan_send(w, &m, (int)i, 0, 0, (uint64_t)n);
        if (ret < 0) {
            return ret;
        }
        chan_first_out(w);
        XXH3_64bits_update(sd->hash, w->buf, (size_t)n);
        sd->tx_off += (uint64_t)n;
    }
    m = (struct vmig_mp_msg){.type = VMIG_MP_DEV_END};
    m.dev_end = (struct vmig_mp_dev_end){
        .dev = i, .total = sd->tx_off, .digest = XXH3_64bits_digest(sd->hash)};
    ret = chan_send(w, &m, -1, 0, 0, 0);
    if (ret == 0) {
        chan_first_out(w);
    }
    return ret;
}

/* An extra channel's thread: devices, then RAM, then CHANNEL_END. */
static void *
src_worker(void *arg)
{
    struct eng_mc_chan *w = arg;
    struct eng_mc *mc = w->mc;
    struct vmig_engine *e = mc->e;
    int ret = 0;

    for (;;) {
        int dev = -1;
        unsigned int r = 0;
        uint64_t off = 0;
        uint32_t np = 0;
        bool ram;

        pthread_mutex_lock(&e->lock);
        if (mc->next_dev < e->ndev) {
            dev = (int)mc->next_dev++;
        }
        ram = dev < 0 && take_ram(mc, &r, &off, &np);
        pthread_mutex_unlock(&e->lock);
        if (dev < 0) {
            chan_first_out(w); /* no device for it: nothing to wait for */
        }
        if (dev < 0 && !ram) {
            break;
        }
        ret = dev >= 0 ? chan_device(w, (unsigned int)dev)
                       : chan_ram(w, r, off, np);
        if (ret < 0) {
            break;
        }
    }
    if (ret == 0) {
        struct vmig_mp_msg m = {.type = VMIG_MP_CHANNEL_END};

        m.channel.index = w->index;
        m.channel.frames = w->frames;
        ret = vmig_mp_send_msg(w->c, &m);
        vmig__engine_zaccount_extra(e, w->c);
    }
    if (ret < 0) {
        if (ret != -ECANCELED) {
            vmig_err(e->ctx, "migration: channel %u failed: %s", w->index,
                     strerror(-ret));
            vmig__engine_set_error(e, "migration channel %u of %u: %s",
                                   w->index, mc->count, strerror(-ret));
        }
        vmig__mc_fail(mc, ret);
    }
    pthread_mutex_lock(&e->lock);
    w->done = true;
    mc->ndone++;
    pthread_cond_broadcast(&mc->cond);
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

/* The main connection's share: pieces of RAM, the return path read in
 * between (vmig__src_send_pages()). */
static int
main_ram(struct eng_src *s)
{
    struct eng_mc *mc = s->mc;
    bool zero = (s->features & VMIG_MP_FEAT_ZERO_PAGES) != 0;

    for (;;) {
        unsigned int r = 0;
        uint64_t off = 0;
        uint32_t np = 0;
        bool more;
        int ret;

        if (__atomic_load_n(&mc->abort, __ATOMIC_ACQUIRE) != 0) {
            return 0; /* the failure is recorded */
        }
        pthread_mutex_lock(&s->e->lock);
        more = take_ram(mc, &r, &off, &np);
        pthread_mutex_unlock(&s->e->lock);
        if (!more) {
            return 0;
        }
        ret = vmig__src_send_pages(s, r, off, np, zero, true, false, 1);
        if (ret < 0) {
            return ret;
        }
    }
}

/* Under the engine lock: every started channel thread ended, or (@first)
 * each has its first device frame out (or had no device to take). */
static bool
workers_done(const struct eng_mc *mc, unsigned int started, bool first)
{
    return mc->ndone >= started || (first && mc->dev_first >= started);
}

/*
 * Until every started channel thread ended (@first: only until each has
 * its first device frame out, or nothing is left to wait for): read the
 * return path (an ERROR there stops them all) and honour a cancel.
 */
static void
wait_workers(struct eng_src *s, unsigned int started, bool first)
{
    struct eng_mc *mc = s->mc;
    struct vmig_engine *e = s->e;

    for (;;) {
        bool failed, done;
        int ret;

        pthread_mutex_lock(&e->lock);
        done = workers_done(mc, started, first);
        failed = mc->err != 0;
        pthread_mutex_unlock(&e->lock);
        if (done || (first && failed)) {
            return;
        }
        if (!failed) {
            ret = vmig__src_check_return(s);
            if (ret == 0 && vmig__engine_cancelled(e)) {
                ret = -ECANCELED;
            }
            if (ret < 0) {
                vmig__mc_fail(mc, ret);
            }
        }
        pthread_mutex_lock(&e->lock);
        if (!workers_done(mc, started, first)) {
            vmig__mc_wait(mc, 20);
        }
        pthread_mutex_unlock(&e->lock);
    }
}

/* Start one thread per extra channel; return how many started. */
static unsigned int
start_workers(struct eng_mc *mc)
{
    unsigned int started = 0;

    for (unsigned int k = 1; k < mc->count; k++) {
        struct eng_mc_chan *w = &mc->ch[k];

        w->buf = malloc(VMIG_MP_CHUNK_MAX);
        if (w->buf == NULL) {
            vmig__mc_fail(mc, -ENOMEM);
            break;
        }
        vmig_mp_conn_set_cancel(w->c, &mc->abort);
        w->first_out = false;
        if (pthread_create(&w->th, NULL, src_worker, w) != 0) {
            vmig__engine_set_error(mc->e,
                                   "cannot start the thread of "
                                   "migration channel %u",
                                   k);
            vmig__mc_fail(mc, -EAGAIN);
            break;
        }
        w->th_live = true;
        started++;
    }
    return started;
}

int
vmig__mc_src_stop_copy(struct eng_src *s)
{
    struct vmig_engine *e = s->e;
    struct eng_mc *mc = s->mc;
    struct vmig_mp_msg m = {.type = VMIG_MP_CHANNEL_SYNC};
    bool dirty = vmig__pc_dirty_pass(s);
    unsigned int started;
    int ret;

    /* the dirty pages now, before the channels read the devices */
    ret = vmig__pc_final_collect(s);
    for (unsigned int i = 0; ret == 0 && i < e->ndev; i++) {
        ret = vmig__src_send_config(s, i);
    }
    if (ret == 0) {
        ret = vmig_mp_send_msg(s->c, &m);
    }
    if (ret < 0) {
        return ret;
    }
    pthread_mutex_lock(&e->lock);
    mc->next_dev = 0;
    mc->dev_first = 0;
    mc->ram_spread = !dirty;
    mc->ram_region = 0;
    mc->ram_off = 0;
    mc->ram_pages = 0;
    pthread_mutex_unlock(&e->lock);
    if (mc->ram_spread) {
        vmig__engine_pass(e, 1);
    }
    /*
     * The devices' data starts on the extra channels at once.  The main
     * connection's RAM waits until each channel has its first device
     * frame out: on a machine with few cores a RAM pass started at once
     * takes the CPU from the channel threads and the device servers, and
     * the devices' first bytes would wait for most of it.
     */
    started = start_workers(mc);
    ret = vmig__src_send_vcpu(s);
    if (ret == 0) {
        wait_workers(s, started, true);
    }
    if (ret == 0 && __atomic_load_n(&mc->abort, __ATOMIC_ACQUIRE) == 0) {
        ret = dirty ? vmig__pc_final_send(s) : main_ram(s);
    }
    if (ret < 0) {
        vmig__mc_fail(mc, ret);
    }
    wait_workers(s, started, false);
    for (unsigned int k = 1; k < mc->count; k++) {
        if (mc->ch[k].th_live) {
            pthread_join(mc->ch[k].th, NULL);
            mc->ch[k].th_live = false;
        }
    }
    pthread_mutex_lock(&e->lock);
    ret = mc->err;
    pthread_mutex_unlock(&e->lock);
    if (ret == 0 && mc->ram_spread) {
        ret = vmig__src_pass_end(s, 1, true, mc->ram_pages);
    }
    return ret;
}

void
vmig__mc_src_free(struct eng_src *s)
{
    struct eng_mc *mc = s->mc;

    if (mc == NULL) {
        return;
    }
    if (s->c != NULL) {
        vmig__chan_share_heard(s->ch, NULL);
    }
    for (unsigned int k = 1; k < mc->count; k++) {
        struct eng_mc_chan *w = &mc->ch[k];

        if (w->th_live) {
            /* stop-copy joins its threads; this is a safety net */
            __atomic_store_n(&mc->abort, 1, __ATOMIC_RELEASE);
            pthread_join(w->th, NULL);
            w->th_live = false;
        }
        vmig_mp_conn_free(w->c);
        w->c = NULL;
        if (w->ch != NULL) {
            s->e->chan_ops->release(s->e->chan_opaque, w->ch);
            w->ch = NULL;
        }
    }
    vmig__mc_free(mc);
    s->mc = NULL;
}
