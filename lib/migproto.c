/* SPDX-License-Identifier: MIT */
/*
 * migproto.c - the host-to-host migration stream: framing, HELLO codec and
 * blocking socket I/O.  Layout: docs/migration-protocol.md.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>
#include <vmig/migproto.h>
#include "chan_priv.h"
#include "internal.h"
#include "migproto_priv.h"

static const uint8_t preamble[VMIG_MP_PREAMBLE_LEN] = {
    'V', 'M', 'I', 'G', 'M', 'S', 0x00, VMIG_MP_FRAMING_VERSION};

void
vmig_mp_preamble(uint8_t out[VMIG_MP_PREAMBLE_LEN])
{
    memcpy(out, preamble, sizeof(preamble));
}

int
vmig_mp_preamble_check(const uint8_t in[VMIG_MP_PREAMBLE_LEN])
{
    if (memcmp(in, preamble, VMIG_MP_PREAMBLE_LEN - 1) != 0) {
        return -EPROTO;
    }
    if (in[VMIG_MP_PREAMBLE_LEN - 1] != VMIG_MP_FRAMING_VERSION) {
        return -EOPNOTSUPP;
    }
    return 0;
}

struct type_desc {
    const char *name;
    uint32_t limit; /* largest payload */
};

/* clang-format off */
static const struct type_desc type_table[256] = {
    [VMIG_MP_HELLO]          = {"HELLO", 4u << 20},
    [VMIG_MP_SETUP]          = {"SETUP", 64},
    [VMIG_MP_RAM]            = {"RAM", 24 + VMIG_MP_CHUNK_MAX},
    [VMIG_MP_RAM_PASS_END]   = {"RAM_PASS_END", 64},
    [VMIG_MP_DEV_CONFIG]     = {"DEV_CONFIG", 8 + VMIG_MP_CONFIG_MAX},
    [VMIG_MP_DEV_DATA]       = {"DEV_DATA", 16 + VMIG_MP_CHUNK_MAX},
    [VMIG_MP_DEV_END]        = {"DEV_END", 64},
    [VMIG_MP_VCPU]           = {"VCPU", 8 + VMIG_MP_VCPU_MAX},
    [VMIG_MP_SWITCHOVER]     = {"SWITCHOVER", 64},
    [VMIG_MP_ABORT]          = {"ABORT", 8 + VMIG_MP_REASON_MAX},
    [VMIG_MP_SWITCHOVER_REQ] = {"SWITCHOVER_REQ", 64},
    [VMIG_MP_DEV_RESTART]    = {"DEV_RESTART", 64},
    [VMIG_MP_HELLO_REPLY]    = {"HELLO_REPLY", 64 << 10},
    [VMIG_MP_SETUP_ACK]      = {"SETUP_ACK", 8 + VMIG_MP_REASON_MAX},
    [VMIG_MP_ACK]            = {"ACK", 64},
    [VMIG_MP_ERROR]          = {"ERROR", 12 + VMIG_MP_REASON_MAX},
    [VMIG_MP_CONFIRM]        = {"CONFIRM", 64},
    [VMIG_MP_SWITCHOVER_ACK] = {"SWITCHOVER_ACK", 64},
};
/* clang-format on */

const char *
vmig_mp_type_name(unsigned int type)
{
    if (type >= VMIG_ARRAY_SIZE(type_table) || type_table[type].name == NULL) {
        return "unknown";
    }
    return type_table[type].name;
}

uint32_t
vmig_mp_type_limit(unsigned int type)
{
    if (type >= VMIG_ARRAY_SIZE(type_table) || type_table[type].name == NULL) {
        return VMIG_MP_PAYLOAD_MAX;
    }
    return type_table[type].limit;
}

static void
hdr_prefix(uint8_t out[16], unsigned int type, unsigned int flags, uint32_t len,
           uint32_t seq)
{
    struct mp_w w = {.p = out, .cap = 16};

    mp_w_u32(&w, VMIG_MP_FRAME_MAGIC);
    mp_w_u16(&w, (uint16_t)type);
    mp_w_u16(&w, (uint16_t)flags);
    mp_w_u32(&w, len);
    mp_w_u32(&w, seq);
}

int
vmig_mp_hdr_encode(unsigned int type, unsigned int flags, uint32_t seq,
                   const void *const *payload, const size_t *iov_len,
                   unsigned int niov, uint8_t out[VMIG_MP_HDR_LEN])
{
    XXH3_state_t st;
    uint64_t total = 0, csum;
    struct mp_w w = {.p = out + 16, .cap = 8};

    if (type > 0xffff || (flags & ~VMIG_MP_F__KNOWN) != 0) {
        return -EINVAL;
    }
    for (unsigned int i = 0; i < niov; i++) {
        total += iov_len[i];
    }
    if (total > vmig_mp_type_limit(type)) {
        return -E2BIG;
    }
    hdr_prefix(out, type, flags, (uint32_t)total, seq);
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, out, 16);
    for (unsigned int i = 0; i < niov; i++) {
        if (iov_len[i] > 0) {
            XXH3_64bits_update(&st, payload[i], iov_len[i]);
        }
    }
    csum = XXH3_64bits_digest(&st);
    mp_w_u64(&w, csum);
    return 0;
}

int
vmig_mp_hdr_decode(const uint8_t *in, struct vmig_mp_hdr *out)
{
    struct mp_r r = {.p = in, .len = VMIG_MP_HDR_LEN};
    struct vmig_mp_hdr h;

    if (mp_r_u32(&r) != VMIG_MP_FRAME_MAGIC) {
        return -EBADMSG;
    }
    h.type = mp_r_u16(&r);
    h.flags = mp_r_u16(&r);
    h.len = mp_r_u32(&r);
    h.seq = mp_r_u32(&r);
    h.csum = mp_r_u64(&r);
    if ((h.flags & ~VMIG_MP_F__KNOWN) != 0) {
        return -EBADMSG;
    }
    if (h.len > vmig_mp_type_limit(h.type)) {
        return -E2BIG;
    }
    *out = h;
    return 0;
}

int
vmig_mp_verify(const uint8_t *raw, const void *payload, size_t len)
{
    XXH3_state_t st;

    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, raw, 16);
    if (len > 0) {
        XXH3_64bits_update(&st, payload, len);
    }
    return XXH3_64bits_digest(&st) == mp_le(raw + 16, 8) ? 0 : -EBADMSG;
}

/* ------------------------------------------------------------ HELLO */

static bool
name_ok(const char *s, size_t n)
{
    if (n == 0 || n > VMIG_MP_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x21 || c > 0x7e) {
            return false;
        }
    }
    return true;
}

static void
w_str(struct mp_w *w, const char *s)
{
    size_t n = strlen(s);

    mp_w_u16(w, (uint16_t)n);
    mp_w_bytes(w, s, n);
}

ssize_t
vmig_mp_hello_encode(const struct vmig_mp_hello *h, void *buf, size_t cap)
{
    struct mp_w w = {.p = buf, .cap = cap};

    if (h->nregions > VMIG_MP_MAX_REGIONS ||
        h->ndevices > VMIG_MP_MAX_DEVICES) {
        return -EINVAL;
    }
    mp_w_u32(&w, h->version_min);
    mp_w_u32(&w, h->version_max);
    mp_w_u64(&w, h->features);
    mp_w_u32(&w, h->flags);
    mp_w_u32(&w, h->page_size);
    mp_w_u32(&w, h->nregions);
    for (uint32_t i = 0; i < h->nregions; i++) {
        const struct vmig_mp_region *rg = &h->region[i];

        if (!name_ok(rg->name, strnlen(rg->name, sizeof(rg->name)))) {
            return -EINVAL;
        }
        w_str(&w, rg->name);
        mp_w_u64(&w, rg->size);
    }
    mp_w_u32(&w, h->ndevices);
    for (uint32_t i = 0; i < h->ndevices; i++) {
        const struct vmig_mp_dev *d = &h->dev[i];

        if (!name_ok(d->name, strnlen(d->name, sizeof(d->name))) ||
            d->desc_len > VMIG_MP_DESC_MAX ||
            (d->desc_len > 0 && d->desc == NULL)) {
            return -EINVAL;
        }
        w_str(&w, d->name);
        mp_w_u64(&w, d->mig_flags);
        mp_w_u8(&w, d->ids.valid ? 1 : 0);
        mp_w_u8(&w, d->ids.revision);
        mp_w_u16(&w, d->ids.vendor);
        mp_w_u16(&w, d->ids.device);
        mp_w_u16(&w, d->ids.subsys_vendor);
        mp_w_u16(&w, d->ids.subsys_device);
        mp_w_u32(&w, d->desc_len);
        mp_w_bytes(&w, d->desc, d->desc_len);
    }
    if (w.err != 0) {
        return w.err;
    }
    return (ssize_t)w.len;
}

static int
r_str(struct mp_r *r, char *out, size_t cap)
{
    uint16_t n = mp_r_u16(r);
    const uint8_t *p;

    if (r->err != 0) {
        return r->err;
    }
    if (n >= cap) {
        return -E2BIG;
    }
    p = mp_r_bytes(r, n);
    if (p == NULL) {
        return -EBADMSG;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

void
vmig_mp_hello_free(struct vmig_mp_hello *h)
{
    if (h == NULL) {
        return;
    }
    for (uint32_t i = 0; i < h->ndevices && i < VMIG_MP_MAX_DEVICES; i++) {
        free(h->dev[i].desc);
    }
    free(h);
}

int
vmig_mp_hello_decode(const void *buf, size_t len, struct vmig_mp_hello **out)
{
    struct mp_r r = {.p = buf, .len = len};
    struct vmig_mp_hello *h;
    uint32_t n;
    int ret;

    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return -ENOMEM;
    }
    h->version_min = mp_r_u32(&r);
    h->version_max = mp_r_u32(&r);
    h->features = mp_r_u64(&r);
    h->flags = mp_r_u32(&r);
    h->page_size = mp_r_u32(&r);
    n = mp_r_u32(&r);
    if (r.err != 0) {
        ret = r.err;
        goto err;
    }
    if (n > VMIG_MP_MAX_REGIONS) {
        ret = -E2BIG;
        goto err;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct vmig_mp_region *rg = &h->region[i];

        ret = r_str(&r, rg->name, sizeof(rg->name));
        if (ret < 0) {
            goto err;
        }
        if (!name_ok(rg->name, strlen(rg->name))) {
            ret = -EBADMSG;
            goto err;
        }
        rg->size = mp_r_u64(&r);
        h->nregions = i + 1;
    }
    n = mp_r_u32(&r);
    if (r.err != 0) {
        ret = r.err;
        goto err;
    }
    if (n > VMIG_MP_MAX_DEVICES) {
        ret = -E2BIG;
        goto err;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct vmig_mp_dev *d = &h->dev[i];
        const uint8_t *p;

        h->ndevices = i + 1; /* so vmig_mp_hello_free() sees desc */
        ret = r_str(&r, d->name, sizeof(d->name));
        if (ret < 0) {
            goto err;
        }
        if (!name_ok(d->name, strlen(d->name))) {
            ret = -EBADMSG;
            goto err;
        }
        d->mig_flags = mp_r_u64(&r);
        d->ids.valid = mp_r_u8(&r) != 0;
        d->ids.revision = mp_r_u8(&r);
        d->ids.vendor = mp_r_u16(&r);
        d->ids.device = mp_r_u16(&r);
        d->ids.subsys_vendor = mp_r_u16(&r);
        d->ids.subsys_device = mp_r_u16(&r);
        d->desc_len = mp_r_u32(&r);
        if (r.err != 0) {
            ret = r.err;
            goto err;
        }
        if (d->desc_len > VMIG_MP_DESC_MAX) {
            ret = -E2BIG;
            goto err;
        }
        if (d->desc_len > 0) {
            p = mp_r_bytes(&r, d->desc_len);
            if (p == NULL) {
                ret = -EBADMSG;
                goto err;
            }
            d->desc = malloc(d->desc_len);
            if (d->desc == NULL) {
                ret = -ENOMEM;
                goto err;
            }
            memcpy(d->desc, p, d->desc_len);
        }
    }
    ret = mp_r_done(&r);
    if (ret < 0) {
        goto err;
    }
    *out = h;
    return 0;

err:
    vmig_mp_hello_free(h);
    return ret;
}

ssize_t
vmig_mp_reply_encode(const struct vmig_mp_hello_reply *rp, void *buf,
                     size_t cap)
{
    struct mp_w w = {.p = buf, .cap = cap};

    if (rp->ndevices > VMIG_MP_MAX_DEVICES) {
        return -EINVAL;
    }
    mp_w_u32(&w, rp->version);
    mp_w_u64(&w, rp->features);
    mp_w_u32(&w, rp->status);
    w_str(&w, rp->reason);
    mp_w_u32(&w, rp->ndevices);
    for (uint32_t i = 0; i < rp->ndevices; i++) {
        mp_w_u8(&w, rp->dev[i].compatible ? 1 : 0);
        w_str(&w, rp->dev[i].reason);
    }
    if (w.err != 0) {
        return w.err;
    }
    return (ssize_t)w.len;
}

int
vmig_mp_reply_decode(const void *buf, size_t len,
                     struct vmig_mp_hello_reply *out)
{
    struct mp_r r = {.p = buf, .len = len};
    struct vmig_mp_hello_reply *rp;
    int ret;

    rp = calloc(1, sizeof(*rp));
    if (rp == NULL) {
        return -ENOMEM;
    }
    rp->version = mp_r_u32(&r);
    rp->features = mp_r_u64(&r);
    rp->status = mp_r_u32(&r);
    ret = r_str(&r, rp->reason, sizeof(rp->reason));
    if (ret < 0) {
        goto out;
    }
    rp->ndevices = mp_r_u32(&r);
    if (r.err == 0 && rp->ndevices > VMIG_MP_MAX_DEVICES) {
        ret = -E2BIG;
        goto out;
    }
    for (uint32_t i = 0; i < rp->ndevices && r.err == 0; i++) {
        uint8_t v = mp_r_u8(&r);

        if (v > 1) {
            ret = -EBADMSG;
            goto out;
        }
        rp->dev[i].compatible = v == 1;
        ret = r_str(&r, rp->dev[i].reason, sizeof(rp->dev[i].reason));
        if (ret < 0) {
            goto out;
        }
    }
    ret = mp_r_done(&r);
    if (ret == 0) {
        *out = *rp;
    }
out:
    free(rp);
    return ret;
}

/* ------------------------------------------------------------ I/O */

struct vmig_mp_conn {
    vmig_ctx_t *ctx;
    struct vmig_chan *ch; /* the transport (plaintext or TLS) */
    bool own_ch;          /* made by vmig_mp_conn_new(): freed with us */
    const int *cancel;
    unsigned int timeout_ms;
    uint32_t seq_out;
    uint32_t seq_in;
    uint64_t sent;
    uint64_t recvd;
    uint8_t *buf; /* receive buffer, VMIG_MP_PAYLOAD_MAX bytes */
};

int
vmig_mp_conn_new_chan(vmig_ctx_t *ctx, struct vmig_chan *ch,
                      struct vmig_mp_conn **out)
{
    struct vmig_mp_conn *c;
    int one = 1;

    if (ch == NULL || out == NULL) {
        return -EINVAL;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return -ENOMEM;
    }
    c->buf = malloc(VMIG_MP_PAYLOAD_MAX);
    if (c->buf == NULL) {
        free(c);
        return -ENOMEM;
    }
    c->ctx = ctx;
    c->ch = ch;
    /* small frames (SWITCHOVER, CONFIRM, acks) must not wait for the
     * peer's delayed ACK: that is downtime; not TCP: nothing to do */
    (void)setsockopt(vmig_chan_fd(ch), IPPROTO_TCP, TCP_NODELAY, &one,
                     sizeof(one));
    *out = c;
    return 0;
}

int
vmig_mp_conn_new(vmig_ctx_t *ctx, int fd, struct vmig_mp_conn **out)
{
    struct vmig_chan *ch;
    int ret;

    if (fd < 0 || out == NULL) {
        return -EINVAL;
    }
    ret = vmig_chan_plain(ctx, fd, &ch);
    if (ret < 0) {
        return ret;
    }
    ret = vmig_mp_conn_new_chan(ctx, ch, out);
    if (ret < 0) {
        vmig_chan_free(ch);
        return ret;
    }
    (*out)->own_ch = true;
    return 0;
}

void
vmig_mp_conn_free(struct vmig_mp_conn *c)
{
    if (c == NULL) {
        return;
    }
    if (c->own_ch) {
        vmig_chan_free(c->ch);
    }
    free(c->buf);
    free(c);
}

void
vmig_mp_conn_set_cancel(struct vmig_mp_conn *c, const int *cancel)
{
    c->cancel = cancel;
}

void
vmig_mp_conn_set_timeout(struct vmig_mp_conn *c, unsigned int ms)
{
    c->timeout_ms = ms;
}

void
vmig_mp_conn_bytes(const struct vmig_mp_conn *c, uint64_t *sent, uint64_t *recv)
{
    if (sent != NULL) {
        *sent = c->sent;
    }
    if (recv != NULL) {
        *recv = c->recvd;
    }
}

static int
write_all(struct vmig_mp_conn *c, struct iovec *iov, int niov)
{
    return vmig__chan_write_all(c->ch, iov, niov, c->timeout_ms, c->cancel,
                                &c->sent);
}

static int
read_all(struct vmig_mp_conn *c, void *buf, size_t len)
{
    return vmig__chan_read_all(c->ch, buf, len, c->timeout_ms, c->cancel,
                               &c->recvd);
}

/*
 * What a peer that is not speaking our preamble is, when we can tell: a
 * TLS record (handshake 0x16 or alert 0x15, version 3.x) means the two
 * sides disagree about TLS, the commonest misconfiguration.
 */
static const char *
foreign_peer(const uint8_t *in, size_t n)
{
    if (n >= 2 && in[0] == 0x16 && in[1] == 0x03) {
        return "the peer speaks TLS but this side has no TLS credentials: "
               "give both sides --tls-creds DIR or --tls-psk FILE";
    }
    if (n >= 2 && in[0] == 0x15 && in[1] == 0x03) {
        return "the peer requires TLS (it answered with a TLS alert) but "
               "this side has no TLS credentials: give both sides "
               "--tls-creds DIR or --tls-psk FILE";
    }
    return NULL;
}

int
vmig_mp_handshake(struct vmig_mp_conn *c)
{
    uint8_t mine[VMIG_MP_PREAMBLE_LEN], theirs[VMIG_MP_PREAMBLE_LEN];
    struct iovec iov = {.iov_base = mine, .iov_len = sizeof(mine)};
    const char *what;
    ssize_t got;
    int ret;

    vmig_mp_preamble(mine);
    ret = write_all(c, &iov, 1);
    if (ret < 0) {
        return ret;
    }
    /* up to the end of the stream: a refusal may be shorter than 8 */
    got = vmig__chan_read_upto(c->ch, theirs, sizeof(theirs), c->timeout_ms,
                               c->cancel);
    if (got < 0) {
        return (int)got;
    }
    c->recvd += (uint64_t)got;
    what = foreign_peer(theirs, (size_t)got);
    if (what != NULL) {
        vmig_err(c->ctx, "stream: %s", what);
        return -EPROTO;
    }
    if (got < (ssize_t)sizeof(theirs)) {
        return -ECONNRESET;
    }
    ret = vmig_mp_preamble_check(theirs);
    if (ret == -EPROTO) {
        vmig_err(c->ctx, "stream: peer is not a vmig agent (bad preamble)");
    } else if (ret < 0) {
        vmig_err(c->ctx,
                 "stream: peer speaks framing version %u, we speak %u; "
                 "upgrade one side",
                 theirs[VMIG_MP_PREAMBLE_LEN - 1], VMIG_MP_FRAMING_VERSION);
    }
    return ret;
}

int
vmig_mp_send(struct vmig_mp_conn *c, unsigned int type, unsigned int flags,
             const void *const *payload, const size_t *iov_len,
             unsigned int niov)
{
    uint8_t hdr[VMIG_MP_HDR_LEN];
    struct iovec iov[5];
    int ret;

    if (niov > 4) {
        return -EINVAL;
    }
    ret = vmig_mp_hdr_encode(type, flags, c->seq_out, payload, iov_len, niov,
                             hdr);
    if (ret < 0) {
        return ret;
    }
    iov[0].iov_base = hdr;
    iov[0].iov_len = sizeof(hdr);
    for (unsigned int i = 0; i < niov; i++) {
        iov[i + 1].iov_base = (void *)payload[i];
        iov[i + 1].iov_len = iov_len[i];
    }
    ret = write_all(c, iov, (int)niov + 1);
    if (ret < 0) {
        return ret;
    }
    c->seq_out++;
    return 0;
}

int
vmig_mp_send1(struct vmig_mp_conn *c, unsigned int type, unsigned int flags,
              const void *buf, size_t len)
{
    const void *p[1] = {buf};
    size_t l[1] = {len};

    return vmig_mp_send(c, type, flags, p, l, len > 0 ? 1 : 0);
}

int
vmig_mp_recv_placed(struct vmig_mp_conn *c, size_t head_len,
                    vmig_mp_place_fn *place, void *opaque,
                    struct vmig_mp_frame *out)
{
    uint8_t raw[VMIG_MP_HDR_LEN];
    struct vmig_mp_hdr h;
    uint8_t *tail = NULL;
    size_t got;
    int ret;

    ret = read_all(c, raw, sizeof(raw));
    if (ret < 0) {
        return ret;
    }
    ret = vmig_mp_hdr_decode(raw, &h);
    if (ret < 0) {
        vmig_dbg(c->ctx, "stream: frame %u: bad header: %s", c->seq_in,
                 strerror(-ret));
        return ret;
    }
    got = h.len;
    if (place != NULL && h.len > head_len) {
        ret = read_all(c, c->buf, head_len);
        if (ret < 0) {
            return ret;
        }
        tail = place(opaque, &h, c->buf, h.len - head_len);
        got = head_len;
        if (tail == NULL) {
            ret = read_all(c, c->buf + head_len, h.len - head_len);
            got = h.len;
        } else {
            ret = read_all(c, tail, h.len - head_len);
        }
    } else {
        ret = read_all(c, c->buf, h.len);
    }
    if (ret < 0) {
        return ret;
    }
    if (tail != NULL) {
        XXH3_state_t st;

        XXH3_64bits_reset(&st);
        XXH3_64bits_update(&st, raw, 16);
        XXH3_64bits_update(&st, c->buf, head_len);
        XXH3_64bits_update(&st, tail, h.len - head_len);
        ret = XXH3_64bits_digest(&st) == mp_le(raw + 16, 8) ? 0 : -EBADMSG;
    } else {
        ret = vmig_mp_verify(raw, c->buf, h.len);
    }
    if (ret < 0) {
        vmig_dbg(c->ctx, "stream: frame %u (%s, %u bytes): checksum mismatch",
                 c->seq_in, vmig_mp_type_name(h.type), h.len);
        return -EBADMSG;
    }
    if (h.seq != c->seq_in) {
        vmig_dbg(c->ctx, "stream: frame %u arrived as number %u", h.seq,
                 c->seq_in);
        return -EBADMSG;
    }
    c->seq_in++;
    out->hdr = h;
    out->payload = c->buf;
    out->placed = tail != NULL;
    out->head_len = got;
    return 0;
}

int
vmig_mp_pending(struct vmig_mp_conn *c)
{
    return vmig__chan_pending(c->ch) ? 1 : 0;
}

int
vmig_mp_recv(struct vmig_mp_conn *c, struct vmig_mp_frame *out)
{
    return vmig_mp_recv_placed(c, 0, NULL, NULL, out);
}
