/* SPDX-License-Identifier: MIT */
/*
 * engine_send.c - the source's traffic: RAM, vCPU and device data out as
 * frames (each then throttled to max_bandwidth), and the return path in
 * (ERROR, ACK, SWITCHOVER_ACK), looked at between any two frames so a
 * destination's ERROR stops the sending at once.  The phases
 * (engine_src.c) and precopy (engine_precopy.c) are built on these.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/engine.h>
#include "engine_priv.h"
#include "engine_send.h"
#include "internal.h"

/* RAM pages per RAM frame: 4 MiB of data per frame (the limit) keeps
 * syscalls and header overhead negligible. */
#define SRC_RAM_CHUNK_PAGES VMIG_MP_RAM_PAGES_MAX
/* Device data read per DEV_DATA frame. */
#define SRC_DEV_CHUNK VMIG_MP_CHUNK_MAX

int
vmig__src_error_frame(struct eng_src *s, const struct vmig_mp_frame *f)
{
    struct vmig_engine *e = s->e;
    struct vmig_mp_msg m;
    const struct vmig_mp_error *er = &m.error;

    if (vmig_mp_frame_decode(f, &m) < 0) {
        vmig__engine_set_error(e, "destination sent a malformed ERROR");
        return -EPROTO;
    }
    if (er->dev != VMIG_MP_NO_DEVICE && er->dev < e->ndev) {
        vmig__engine_set_error(e, "destination: device %s: %s: %s",
                               e->dev[er->dev].name, strerror((int)er->err),
                               er->reason);
    } else {
        vmig__engine_set_error(e, "destination: %s: %s", strerror((int)er->err),
                               er->reason);
    }
    vmig_err(e->ctx, "migration: destination reported: %s (%s)", er->reason,
             strerror((int)er->err));
    s->peer_err = (int)er->err;
    snprintf(s->peer_reason, sizeof(s->peer_reason), "%s", er->reason);
    return -(int)er->err;
}

/*
 * A SWITCHOVER_ACK on the return path: record it when it answers the last
 * SWITCHOVER_REQ (an answer to an older request, from before a device
 * restarted its precopy, no longer counts).  Return 1 when @f was one.
 */
static int
src_note_ack(struct eng_src *s, const struct vmig_mp_frame *f)
{
    struct vmig_engine *e = s->e;
    struct vmig_mp_msg m;
    uint32_t id;

    if (f->hdr.type != VMIG_MP_SWITCHOVER_ACK) {
        return 0;
    }
    if (vmig_mp_frame_decode(f, &m) < 0 ||
        (id = m.switchover_ack.id) > s->ack_req) {
        vmig__engine_set_error(e, "destination sent a malformed "
                                  "SWITCHOVER_ACK");
        return -EPROTO;
    }
    if (id == s->ack_req) {
        s->ack_got = id;
        pthread_mutex_lock(&e->lock);
        e->st.switchover_ack_ms = (vmig__mono_ns() - s->t_ack_req) / 1000000;
        pthread_mutex_unlock(&e->lock);
        vmig_dbg(e->ctx, "migration: destination acknowledged switchover "
                         "(every device loaded its initial data)");
    }
    return 1;
}

/*
 * A return-path frame nobody waits for specifically: ERROR ends the
 * migration (its errno), ACK, SWITCHOVER_ACK and unknown optional frames
 * are taken in (0), a malformed ACK or anything else is out of place
 * while @due was expected (-EPROTO).
 */
static int
src_return_frame(struct eng_src *s, const struct vmig_mp_frame *f,
                 const char *due)
{
    struct vmig_engine *e = s->e;
    struct vmig_mp_msg m;
    int ret;

    if (f->hdr.type == VMIG_MP_ERROR) {
        return vmig__src_error_frame(s, f);
    }
    ret = src_note_ack(s, f);
    if (ret < 0) {
        return ret;
    }
    if (f->hdr.type == VMIG_MP_ACK && vmig_mp_frame_decode(f, &m) < 0) {
        vmig__engine_set_error(e, "destination sent a malformed ACK");
        return -EPROTO;
    }
    if (ret == 1 || f->hdr.type == VMIG_MP_ACK ||
        (!vmig_mp_type_known(f->hdr.type) &&
         (f->hdr.flags & VMIG_MP_F_OPTIONAL))) {
        return 0;
    }
    vmig_err(e->ctx, "migration: expected %s from the destination, got %s", due,
             vmig_mp_type_name(f->hdr.type));
    vmig__engine_set_error(e, "destination sent %s while %s was due",
                           vmig_mp_type_name(f->hdr.type), due);
    return -EPROTO;
}

int
vmig__src_expect(struct eng_src *s, unsigned int type, struct vmig_mp_frame *f)
{
    for (;;) {
        int ret = vmig_mp_recv(s->c, f);

        if (ret < 0) {
            return ret;
        }
        if (f->hdr.type == type) {
            return 0;
        }
        ret = src_return_frame(s, f, vmig_mp_type_name(type));
        if (ret < 0) {
            return ret;
        }
    }
}

int
vmig__src_check_return(struct eng_src *s)
{
    struct vmig_mp_frame f;
    int ret;

    while (vmig_mp_pending(s->c)) {
        ret = vmig_mp_recv(s->c, &f);
        if (ret == 0) {
            ret = src_return_frame(s, &f, "nothing");
        }
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

int
vmig__src_wait_ack(struct eng_src *s)
{
    struct vmig_mp_frame f;
    int ret;

    while (s->ack_got != s->ack_req) {
        ret = vmig_mp_recv(s->c, &f);
        if (ret == 0) {
            ret = src_return_frame(s, &f, "SWITCHOVER_ACK");
        }
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

bool
vmig__all_zero(const uint8_t *p, size_t n)
{
    static const uint8_t zero[16];

    if (n < 16) {
        return memcmp(p, zero, n) == 0;
    }
    return memcmp(p, zero, 16) == 0 && memcmp(p, p + 16, n - 16) == 0;
}

static int
send_pages_frame(struct eng_src *s, unsigned int r, uint64_t off, uint32_t np,
                 bool zero_pages, bool hole_check, bool live, unsigned int pass)
{
    struct vmig_engine *e = s->e;
    struct vmig_mp_conn *c = s->c;
    const struct eng_region *rg = &e->region[r];
    size_t len = (size_t)np * VMIG_MP_PAGE_SIZE;
    const uint8_t *src = (const uint8_t *)rg->host + off;
    struct vmig_mp_msg m = {.type = VMIG_MP_RAM};
    bool zero;
    int ret;

    if (vmig__engine_cancelled(e)) {
        return -ECANCELED;
    }
    if (live) {
        /* the guest may write these pages while they are sent: send a
         * copy, so the frame checksum covers exactly the bytes sent (a
         * page changed after the copy is dirty again and resent) */
        memcpy(e->buf, src, len);
        src = e->buf;
    }
    zero = zero_pages && ((hole_check && e->ops->ram_hole != NULL &&
                           e->ops->ram_hole(e->opaque, r, off, len) == 1) ||
                          vmig__all_zero(src, len));
    m.ram = (struct vmig_mp_ram){.region = r,
                                 .flags = zero ? VMIG_MP_RAM_ZERO : 0,
                                 .offset = off,
                                 .npages = np,
                                 .pass = pass,
                                 .data = {zero ? NULL : src, zero ? 0 : len}};
    ret = vmig_mp_send_msg(c, &m);
    if (ret < 0) {
        return ret;
    }
    vmig__engine_account(e, c, len, zero ? np : 0, -1, 0);
    ret = vmig__engine_throttle(e, c);
    if (ret == 0) {
        ret = vmig__src_check_return(s);
    }
    return ret;
}

/* One RAM frame per run of pages, cut smaller under a bandwidth limit
 * (vmig__engine_frame_cap(): the limit read before each frame). */
int
vmig__src_send_pages(struct eng_src *s, unsigned int r, uint64_t off,
                     uint32_t np, bool zero_pages, bool hole_check, bool live,
                     unsigned int pass)
{
    while (np != 0) {
        uint64_t cap = vmig__engine_frame_cap(s->e, VMIG_MP_PAGE_SIZE,
                                              (uint64_t)np * VMIG_MP_PAGE_SIZE);
        uint32_t n = (uint32_t)(cap / VMIG_MP_PAGE_SIZE);
        int ret =
            send_pages_frame(s, r, off, n, zero_pages, hole_check, live, pass);

        if (ret < 0) {
            return ret;
        }
        np -= n;
        off += (uint64_t)n * VMIG_MP_PAGE_SIZE;
    }
    return 0;
}

int
vmig__src_pass_end(struct eng_src *s, unsigned int pass, bool last,
                   uint64_t pages)
{
    struct vmig_mp_msg m = {
        .type = VMIG_MP_RAM_PASS_END,
        .pass_end = {pass, last ? VMIG_MP_PASS_LAST : 0, pages}};

    return vmig_mp_send_msg(s->c, &m);
}

int
vmig__src_send_ram(struct eng_src *s, bool zero_pages, bool live,
                   unsigned int pass, bool last)
{
    struct vmig_engine *e = s->e;
    uint64_t pages = 0;
    int ret;

    vmig__engine_pass(e, pass);
    for (unsigned int r = 0; r < e->nregions; r++) {
        const struct eng_region *rg = &e->region[r];

        for (uint64_t off = 0; off < rg->size;) {
            uint64_t left = rg->size - off;
            uint32_t np = left / VMIG_MP_PAGE_SIZE > SRC_RAM_CHUNK_PAGES
                              ? SRC_RAM_CHUNK_PAGES
                              : (uint32_t)(left / VMIG_MP_PAGE_SIZE);

            ret = vmig__src_send_pages(s, r, off, np, zero_pages, true, live,
                                       pass);
            if (ret < 0) {
                return ret;
            }
            pages += np;
            off += (uint64_t)np * VMIG_MP_PAGE_SIZE;
        }
    }
    return vmig__src_pass_end(s, pass, last, pages);
}

int
vmig__src_send_vcpu(struct eng_src *s)
{
    struct vmig_engine *e = s->e;
    struct vmig_mp_msg m = {.type = VMIG_MP_VCPU};
    ssize_t n;

    s->vcpu_sent = false;
    if (e->ops->vcpu_save == NULL) {
        return 0;
    }
    n = e->ops->vcpu_save(e->opaque, e->buf, VMIG_MP_VCPU_MAX);
    if (n < 0) {
        vmig__engine_set_error(e, "cannot save the vCPU state: %s",
                               strerror((int)-n));
        return (int)n;
    }
    if (n > (ssize_t)VMIG_MP_VCPU_MAX) {
        vmig__engine_set_error(e, "vCPU state of %zd bytes exceeds %u", n,
                               VMIG_MP_VCPU_MAX);
        return -E2BIG;
    }
    m.vcpu.data = (struct vmig_mp_data){e->buf, (size_t)n};
    s->vcpu_sent = true;
    return vmig_mp_send_msg(s->c, &m);
}

void
vmig__src_first_dev(struct eng_src *s)
{
    int no = 0;
    uint64_t us;

    if (s->pause_mono == 0 ||
        !__atomic_compare_exchange_n(&s->first_dev_seen, &no, 1, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        return;
    }
    us = (vmig__mono_ns() - s->pause_mono) / 1000;
    pthread_mutex_lock(&s->e->lock);
    s->e->st.first_dev_byte_us = us;
    pthread_mutex_unlock(&s->e->lock);
}

int
vmig__src_read_failed(struct eng_src *s, unsigned int i, int err)
{
    struct vmig_engine *e = s->e;
    const char *name = e->dev[i].name;

    vmig_err(e->ctx,
             "device %s: reading its stop-copy state at byte %llu failed: %s",
             name, (unsigned long long)s->dev[i].tx_off, strerror(-err));
    vmig__engine_set_error(e, "device %s: state read failed: %s", name,
                           strerror(-err));
    return err;
}

int
vmig__src_dev_pump(struct eng_src *s, unsigned int i, bool precopy,
                   uint64_t budget, bool *dev_err)
{
    struct vmig_engine *e = s->e;
    struct vmig_mp_conn *c = s->c;
    const struct eng_dev *d = &e->dev[i];
    struct eng_src_dev *sd = &s->dev[i];
    struct vmig_mp_msg m = {.type = VMIG_MP_DEV_DATA};
    uint64_t got = 0;
    int ret;

    *dev_err = false;
    if (d->ops->read == NULL) {
        vmig__engine_set_error(e, "device %s: backend cannot read state",
                               d->name);
        return -EOPNOTSUPP;
    }
    for (;;) {
        ssize_t n;

        if (precopy && budget != 0 && got >= budget) {
            return 0;
        }
        n = d->ops->read(
            d->opaque, e->buf,
            (size_t)vmig__engine_frame_cap(e, 4096, SRC_DEV_CHUNK));
        if (precopy && (n == -ENOMSG || n == 0)) {
            return 1;
        }
        if (n == 0) {
            return 0;
        }
        if (n < 0 || n > (ssize_t)SRC_DEV_CHUNK) {
            ret = n < 0 ? (int)n : -EIO;
            *dev_err = true;
            if (precopy) {
                /* maybe a reset: the precopy loop decides what it means */
                vmig_dbg(
                    e->ctx, "device %s: precopy read at byte %llu failed: %s",
                    d->name, (unsigned long long)sd->tx_off, strerror(-ret));
                return ret;
            }
            return vmig__src_read_failed(s, i, ret);
        }
        if (vmig__engine_cancelled(e)) {
            return -ECANCELED;
        }
        m.dev_data = (struct vmig_mp_dev_data){
            .dev = i,
            .flags = precopy ? VMIG_MP_DEV_PRECOPY : 0,
            .offset = sd->tx_off,
            .data = {e->buf, (size_t)n}};
        if (!precopy) {
            vmig__src_first_dev(s);
        }
        ret = vmig_mp_send_msg(c, &m);
        if (ret < 0) {
            return ret;
        }
        XXH3_64bits_update(sd->hash, e->buf, (size_t)n);
        sd->tx_off += (uint64_t)n;
        got += (uint64_t)n;
        if (precopy) {
            pthread_mutex_lock(&e->lock);
            e->st.dev[i].precopy_bytes += (uint64_t)n;
            pthread_mutex_unlock(&e->lock);
        }
        vmig__engine_account(e, c, 0, 0, (int)i, (uint64_t)n);
        ret = vmig__engine_throttle(e, c);
        if (ret == 0) {
            ret = vmig__src_check_return(s);
        }
        if (ret < 0) {
            return ret;
        }
    }
}

int
vmig__src_send_config(struct eng_src *s, unsigned int i)
{
    struct vmig_engine *e = s->e;
    const struct eng_dev *d = &e->dev[i];
    struct vmig_mp_msg m = {.type = VMIG_MP_DEV_CONFIG};
    int ret;

    if (d->ops->config_save != NULL) {
        ssize_t n = d->ops->config_save(d->opaque, e->buf, VMIG_MP_CONFIG_MAX);

        if (n < 0 || n > (ssize_t)VMIG_MP_CONFIG_MAX) {
            ret = n < 0 ? (int)n : -E2BIG;
            vmig__engine_set_error(e, "device %s: cannot save its config: %s",
                                   d->name, strerror(-ret));
            return ret;
        }
        m.dev_config = (struct vmig_mp_dev_config){i, {e->buf, (size_t)n}};
        ret = vmig_mp_send_msg(s->c, &m);
        if (ret < 0) {
            return ret;
        }
        pthread_mutex_lock(&e->lock);
        e->st.dev[i].config_len = (uint64_t)n;
        pthread_mutex_unlock(&e->lock);
    }
    return 0;
}

int
vmig__src_send_device(struct eng_src *s, unsigned int i)
{
    struct eng_src_dev *sd = &s->dev[i];
    struct vmig_mp_msg m = {.type = VMIG_MP_DEV_END};
    bool dev_err;
    int ret;

    ret = vmig__src_send_config(s, i);
    if (ret == 0) {
        ret = vmig__src_dev_pump(s, i, false, 0, &dev_err);
    }
    if (ret < 0) {
        return ret;
    }
    m.dev_end.dev = i;
    m.dev_end.total = sd->tx_off;
    m.dev_end.digest = XXH3_64bits_digest(sd->hash);
    return vmig_mp_send_msg(s->c, &m);
}
