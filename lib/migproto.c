/* SPDX-License-Identifier: MIT */
/*
 * migproto.c - the host-to-host migration stream: preamble, frame header
 * and checksum, and blocking socket I/O.  The payloads' codecs are
 * migproto_msg.c (every fixed-layout frame) and migproto_hello.c (HELLO,
 * HELLO_REPLY).  Layout: docs/migration-protocol.md.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <vmig/migproto.h>
#include "chan_priv.h"
#include "internal.h"
#include "migproto_priv.h"
#include "migproto_zstd.h"
#include "xxh_fast.h"

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

/* @hash false: the checksum field is 0 (inside TLS, see mp_send). */
static int
hdr_encode(unsigned int type, unsigned int flags, uint32_t seq,
           const void *const *payload, const size_t *iov_len, unsigned int niov,
           bool hash, uint8_t out[VMIG_MP_HDR_LEN])
{
    XXH3_state_t st;
    uint64_t total = 0, csum = 0;
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
    if (hash) {
        XXH3_64bits_reset(&st);
        XXH3_64bits_update(&st, out, 16);
        for (unsigned int i = 0; i < niov; i++) {
            if (iov_len[i] > 0) {
                XXH3_64bits_update(&st, payload[i], iov_len[i]);
            }
        }
        csum = XXH3_64bits_digest(&st);
    }
    mp_w_u64(&w, csum);
    return 0;
}

int
vmig_mp_hdr_encode(unsigned int type, unsigned int flags, uint32_t seq,
                   const void *const *payload, const size_t *iov_len,
                   unsigned int niov, uint8_t out[VMIG_MP_HDR_LEN])
{
    return hdr_encode(type, flags, seq, payload, iov_len, niov, true, out);
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
    return XXH3_64bits_digest(&st) == vmig_get_le64(raw + 16) ? 0 : -EBADMSG;
}

/* ------------------------------------------------------------ I/O */

struct vmig_mp_conn {
    vmig_ctx_t *ctx;
    struct vmig_chan *ch; /* the transport (plaintext or TLS) */
    bool own_ch;          /* made by vmig_mp_conn_new(): freed with us */
    /* TLS: every byte is authenticated by the record layer (AES-GCM), so
     * frames are sent with a zero checksum and received unverified */
    bool authenticated;
    const int *cancel;
    unsigned int timeout_ms;
    uint32_t seq_out;
    uint32_t seq_in;
    uint64_t sent;
    uint64_t recvd;
    uint8_t *buf;      /* receive buffer, VMIG_MP_PAYLOAD_MAX bytes */
    struct mp_zstd *z; /* compression both ways, when negotiated */
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
    {
        struct vmig_chan_info ci;

        vmig_chan_info(ch, &ci);
        c->authenticated = ci.tls;
    }
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
    /* a shared peer clock is the migration's, which may end before the
     * channel does (the caller's) */
    vmig__chan_share_heard(c->ch, NULL);
    if (c->own_ch) {
        vmig_chan_free(c->ch);
    }
    vmig__mpz_free(c->z);
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

int
vmig_mp_conn_set_compress(struct vmig_mp_conn *c, unsigned int method,
                          int level)
{
    struct mp_zstd *z = NULL;
    int ret;

    if (method != VMIG_MP_COMPRESS_NONE) {
        ret = vmig__mpz_new(method, level, &z);
        if (ret < 0) {
            return ret;
        }
    }
    vmig__mpz_free(c->z);
    c->z = z;
    return 0;
}

void
vmig_mp_conn_zbytes(const struct vmig_mp_conn *c, uint64_t *raw,
                    uint64_t *packed)
{
    vmig__mpz_bytes(c->z, raw, packed);
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
        return -EPROTONOSUPPORT;
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
    const uint8_t *zp;
    const void *zpv;
    size_t zlen;
    int ret;

    if (niov > 4) {
        return -EINVAL;
    }
    if (c->z != NULL && flags == 0 &&
        (zlen = vmig__mpz_pack(c->z, type, payload, iov_len, niov, &zp)) > 0) {
        /* the frame goes compressed, its checksum over what is sent */
        type = VMIG_MP_ZDATA;
        zpv = zp;
        payload = &zpv;
        iov_len = &zlen;
        niov = 1;
    }
    ret = hdr_encode(type, flags, c->seq_out, payload, iov_len, niov,
                     !c->authenticated, hdr);
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

/* A ZDATA frame received in @out becomes the frame it carries. */
static int
recv_unpack(struct vmig_mp_conn *c, struct vmig_mp_frame *out)
{
    const uint8_t *raw;
    unsigned int type;
    size_t len;
    int ret;

    if (c->z == NULL) {
        vmig_err(c->ctx,
                 "stream: frame %u is compressed but compression was not "
                 "negotiated; the peer is broken",
                 out->hdr.seq);
        return -EPROTO;
    }
    ret = vmig__mpz_unpack(c->z, c->ctx, out->hdr.seq, out->payload,
                           out->hdr.len, &type, &raw, &len);
    if (ret < 0) {
        return ret;
    }
    out->hdr.type = (uint16_t)type;
    out->hdr.len = (uint32_t)len;
    out->payload = raw;
    out->head_len = len;
    return 0;
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
    if (place != NULL && h.len > head_len && h.type != VMIG_MP_ZDATA) {
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
    if (c->authenticated) {
        ret = 0; /* what TLS delivered is what the peer sent */
    } else if (tail != NULL) {
        XXH3_state_t st;

        XXH3_64bits_reset(&st);
        XXH3_64bits_update(&st, raw, 16);
        XXH3_64bits_update(&st, c->buf, head_len);
        XXH3_64bits_update(&st, tail, h.len - head_len);
        ret = XXH3_64bits_digest(&st) == vmig_get_le64(raw + 16) ? 0 : -EBADMSG;
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
    return h.type == VMIG_MP_ZDATA ? recv_unpack(c, out) : 0;
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

int
vmig_mp_send_msg(struct vmig_mp_conn *c, const struct vmig_mp_msg *m)
{
    uint8_t head[VMIG_MP_MSG_HEAD_MAX];
    struct vmig_mp_data tail;
    const void *pl[2] = {head, NULL};
    size_t pl_len[2] = {0, 0};
    int n = vmig__mp_msg_parts(m, head, sizeof(head), &tail);

    if (n < 0) {
        return n;
    }
    pl_len[0] = (size_t)n;
    pl[1] = tail.ptr;
    pl_len[1] = tail.len;
    return vmig_mp_send(c, m->type, 0, pl, pl_len, tail.len > 0 ? 2 : 1);
}
