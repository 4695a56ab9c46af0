/* SPDX-License-Identifier: MIT */
/*
 * migproto_msg.c - every frame type of the migration stream, described
 * once: its name, its payload limit and, for all but HELLO and
 * HELLO_REPLY (migproto_hello.c), its layout.  One encoder and one decoder
 * walk a layout, so what is sent and what is accepted cannot drift apart.
 * Layouts: docs/migration-protocol.md section 2.
 *
 * A layout is a list of little-endian integer fields, each with a rule
 * (any value, must be 0, only known flag bits, a range), then an optional
 * tail: a string (u16 length, at most VMIG_MP_REASON_MAX bytes) or data
 * (the rest of the payload).  A per-type check relates fields to each
 * other where a rule cannot (a RAM frame's page count to its data).
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <vmig/migproto.h>
#include "internal.h"
#include "migproto_priv.h"

enum fld_rule {
    ANY = 0,
    ZERO,   /* reserved: 0 */
    FLAGS,  /* no bits outside .arg */
    MAX,    /* 0 .. .arg */
    NZ_MAX, /* 1 .. .arg */
};

enum tail_kind {
    TAIL_NONE = 0,
    TAIL_STRING, /* char[VMIG_MP_REASON_MAX + 1] at .tail */
    TAIL_DATA,   /* struct vmig_mp_data at .tail */
};

#define NO_SLOT 0xffffu
#define MAX_FIELDS 5

struct fld {
    uint8_t width; /* bytes on the wire and in the struct: 4 or 8 */
    uint8_t rule;
    uint16_t slot; /* offset in struct vmig_mp_msg, or NO_SLOT */
    uint64_t arg;
};

/* A frame type.  Its fields end at the first of width 0. */
struct frame_desc {
    const char *name;
    uint32_t limit; /* largest payload */
    struct fld f[MAX_FIELDS];
    uint8_t tail;
    uint16_t tail_slot;
    /* relations between fields; 0 or -EBADMSG */
    int (*check)(const struct vmig_mp_msg *m);
};

#define SLOT(member) ((uint16_t)offsetof(struct vmig_mp_msg, member))
#define U32(member)                                                            \
    {                                                                          \
        4, ANY, SLOT(member), 0                                                \
    }
#define U64(member)                                                            \
    {                                                                          \
        8, ANY, SLOT(member), 0                                                \
    }
#define FLAGS32(member, known)                                                 \
    {                                                                          \
        4, FLAGS, SLOT(member), (known)                                        \
    }
#define MAX32(member, max)                                                     \
    {                                                                          \
        4, MAX, SLOT(member), (max)                                            \
    }
#define NZ32(member, max)                                                      \
    {                                                                          \
        4, NZ_MAX, SLOT(member), (max)                                         \
    }
#define RSV32                                                                  \
    {                                                                          \
        4, ZERO, NO_SLOT, 0                                                    \
    }
#define RSV64                                                                  \
    {                                                                          \
        8, ZERO, NO_SLOT, 0                                                    \
    }
#define NZ64(member)                                                           \
    {                                                                          \
        8, NZ_MAX, SLOT(member), UINT64_MAX                                    \
    }
#define ERRNO_MAX 4095u

static int
ram_check(const struct vmig_mp_msg *m)
{
    const struct vmig_mp_ram *r = &m->ram;
    size_t want = (r->flags & VMIG_MP_RAM_ZERO)
                      ? 0
                      : (size_t)r->npages * VMIG_MP_PAGE_SIZE;

    if (r->offset % VMIG_MP_PAGE_SIZE != 0 || r->data.len != want) {
        return -EBADMSG;
    }
    return 0;
}

static int
dev_data_check(const struct vmig_mp_msg *m)
{
    return m->dev_data.data.len > 0 ? 0 : -EBADMSG;
}

/* A request for parallel channels asks for more than one connection. */
static int
channels_check(const struct vmig_mp_msg *m)
{
    return m->channels.count >= 2 ? 0 : -EBADMSG;
}

/* An extra channel's index lies below the count of channels. */
static int
channel_hello_check(const struct vmig_mp_msg *m)
{
    return m->channel.index < m->channel.count ? 0 : -EBADMSG;
}

/* A compressed frame carries a RAM or DEV_DATA frame no longer than that
 * type allows, and some compressed bytes. */
static int
zdata_check(const struct vmig_mp_msg *m)
{
    const struct vmig_mp_zdata *z = &m->zdata;

    if (z->type != VMIG_MP_RAM && z->type != VMIG_MP_DEV_DATA) {
        return -EBADMSG;
    }
    if (z->raw_len > vmig_mp_type_limit(z->type) || z->data.len == 0) {
        return -EBADMSG;
    }
    return 0;
}

/* clang-format off */
static const struct frame_desc frames[256] = {
    [VMIG_MP_HELLO] = {.name = "HELLO", .limit = 4u << 20},
    [VMIG_MP_SETUP] = {.name = "SETUP", .limit = 64,
        .f = {U64(setup.ram_bytes), U64(setup.dev_bytes)}},
    [VMIG_MP_RAM] = {.name = "RAM",
        .limit = VMIG_MP_RAM_HDR_LEN + VMIG_MP_CHUNK_MAX,
        .f = {U32(ram.region), FLAGS32(ram.flags, VMIG_MP_RAM_ZERO),
              U64(ram.offset), NZ32(ram.npages, VMIG_MP_RAM_PAGES_MAX),
              NZ32(ram.pass, UINT32_MAX)},
        .tail = TAIL_DATA, .tail_slot = SLOT(ram.data), .check = ram_check},
    [VMIG_MP_RAM_PASS_END] = {.name = "RAM_PASS_END", .limit = 64,
        .f = {NZ32(pass_end.pass, UINT32_MAX),
              FLAGS32(pass_end.flags, VMIG_MP_PASS_LAST),
              U64(pass_end.pages)}},
    [VMIG_MP_DEV_CONFIG] = {.name = "DEV_CONFIG",
        .limit = VMIG_MP_DEV_CONFIG_HDR_LEN + VMIG_MP_CONFIG_MAX,
        .f = {U32(dev_config.dev), RSV32},
        .tail = TAIL_DATA, .tail_slot = SLOT(dev_config.data)},
    [VMIG_MP_DEV_DATA] = {.name = "DEV_DATA",
        .limit = VMIG_MP_DEV_DATA_HDR_LEN + VMIG_MP_CHUNK_MAX,
        .f = {U32(dev_data.dev), FLAGS32(dev_data.flags, VMIG_MP_DEV_PRECOPY),
              U64(dev_data.offset)},
        .tail = TAIL_DATA, .tail_slot = SLOT(dev_data.data),
        .check = dev_data_check},
    [VMIG_MP_DEV_END] = {.name = "DEV_END", .limit = 64,
        .f = {U32(dev_end.dev), RSV32, U64(dev_end.total),
              U64(dev_end.digest)}},
    [VMIG_MP_VCPU] = {.name = "VCPU",
        .limit = VMIG_MP_VCPU_HDR_LEN + VMIG_MP_VCPU_MAX,
        .f = {U32(vcpu.index), RSV32},
        .tail = TAIL_DATA, .tail_slot = SLOT(vcpu.data)},
    [VMIG_MP_SWITCHOVER] = {.name = "SWITCHOVER", .limit = 64,
        .f = {U64(switchover.ram_bytes), U32(switchover.ndevices),
              FLAGS32(switchover.flags, VMIG_MP_SW_VCPU),
              U64(switchover.pause_ns), RSV64}},
    [VMIG_MP_ABORT] = {.name = "ABORT", .limit = 8 + VMIG_MP_REASON_MAX,
        .f = {NZ32(abort.err, ERRNO_MAX)},
        .tail = TAIL_STRING, .tail_slot = SLOT(abort.reason)},
    [VMIG_MP_SWITCHOVER_REQ] = {.name = "SWITCHOVER_REQ", .limit = 64,
        .f = {NZ32(switchover_req.id, UINT32_MAX), RSV32}},
    [VMIG_MP_DEV_RESTART] = {.name = "DEV_RESTART", .limit = 64,
        .f = {U32(dev_restart.dev), RSV32}},
    [VMIG_MP_GO] = {.name = "GO", .limit = 64, .f = {NZ64(go.id), RSV64}},
    [VMIG_MP_DONE] = {.name = "DONE", .limit = 64,
        .f = {NZ64(done.id), RSV64}},
    [VMIG_MP_RECOVER] = {.name = "RECOVER", .limit = 64,
        .f = {NZ64(recover.id), RSV64}},
    [VMIG_MP_CHANNELS] = {.name = "CHANNELS", .limit = 64,
        .f = {NZ32(channels.count, VMIG_MP_MAX_CHANNELS), RSV32},
        .check = channels_check},
    [VMIG_MP_CHANNEL_HELLO] = {.name = "CHANNEL_HELLO", .limit = 64,
        .f = {U64(channel.id_hi), U64(channel.id_lo),
              NZ32(channel.index, VMIG_MP_MAX_CHANNELS - 1),
              NZ32(channel.count, VMIG_MP_MAX_CHANNELS)},
        .check = channel_hello_check},
    [VMIG_MP_CHANNEL_SYNC] = {.name = "CHANNEL_SYNC", .limit = 64,
        .f = {RSV64}},
    [VMIG_MP_CHANNEL_END] = {.name = "CHANNEL_END", .limit = 64,
        .f = {NZ32(channel.index, VMIG_MP_MAX_CHANNELS - 1), RSV32,
              U64(channel.frames)}},
    [VMIG_MP_ZDATA] = {.name = "ZDATA",
        .limit = 8 + VMIG_MP_RAM_HDR_LEN + VMIG_MP_CHUNK_MAX,
        .f = {U32(zdata.type),
              NZ32(zdata.raw_len, VMIG_MP_RAM_HDR_LEN + VMIG_MP_CHUNK_MAX)},
        .tail = TAIL_DATA, .tail_slot = SLOT(zdata.data),
        .check = zdata_check},
    [VMIG_MP_HELLO_REPLY] = {.name = "HELLO_REPLY", .limit = 64 << 10},
    [VMIG_MP_SETUP_ACK] = {.name = "SETUP_ACK",
        .limit = 8 + VMIG_MP_REASON_MAX,
        .f = {MAX32(setup_ack.err, ERRNO_MAX)},
        .tail = TAIL_STRING, .tail_slot = SLOT(setup_ack.reason)},
    [VMIG_MP_ACK] = {.name = "ACK", .limit = 64,
        .f = {U32(ack.type), U32(ack.seq), U64(ack.value)}},
    [VMIG_MP_ERROR] = {.name = "ERROR", .limit = 12 + VMIG_MP_REASON_MAX,
        .f = {NZ32(error.err, ERRNO_MAX), U32(error.dev)},
        .tail = TAIL_STRING, .tail_slot = SLOT(error.reason)},
    [VMIG_MP_CONFIRM] = {.name = "CONFIRM", .limit = 64,
        .f = {U64(confirm.resume_ns), U64(confirm.switchover_ns),
              U64(confirm.ram_bytes), U64(confirm.dev_bytes)}},
    [VMIG_MP_SWITCHOVER_ACK] = {.name = "SWITCHOVER_ACK", .limit = 64,
        .f = {NZ32(switchover_ack.id, UINT32_MAX), RSV32}},
    [VMIG_MP_READY] = {.name = "READY", .limit = 64,
        .f = {NZ64(ready.id), U64(ready.load_ns)}},
    [VMIG_MP_RECOVER_REPLY] = {.name = "RECOVER_REPLY",
        .limit = 16 + VMIG_MP_REASON_MAX,
        .f = {NZ64(recover_reply.id), MAX32(recover_reply.state,
              VMIG_MP_REC__LAST), RSV32},
        .tail = TAIL_STRING, .tail_slot = SLOT(recover_reply.reason)},
    [VMIG_MP_CHANNELS_ACK] = {.name = "CHANNELS_ACK", .limit = 64,
        .f = {NZ32(channels.count, VMIG_MP_MAX_CHANNELS), RSV32,
              U64(channels.id_hi), U64(channels.id_lo)}},
    [VMIG_MP_CHANNEL_READY] = {.name = "CHANNEL_READY", .limit = 64,
        .f = {NZ32(channel.index, VMIG_MP_MAX_CHANNELS - 1), RSV32}},
};
/* clang-format on */

static const struct frame_desc *
desc_of(unsigned int type)
{
    if (type >= VMIG_ARRAY_SIZE(frames) || frames[type].name == NULL) {
        return NULL;
    }
    return &frames[type];
}

bool
vmig_mp_type_known(unsigned int type)
{
    return desc_of(type) != NULL;
}

const char *
vmig_mp_type_name(unsigned int type)
{
    const struct frame_desc *d = desc_of(type);

    return d != NULL ? d->name : "unknown";
}

uint32_t
vmig_mp_type_limit(unsigned int type)
{
    const struct frame_desc *d = desc_of(type);

    return d != NULL ? d->limit : VMIG_MP_PAYLOAD_MAX;
}

/* A fixed-layout frame's description, or NULL (HELLO, unknown types). */
static const struct frame_desc *
layout_of(unsigned int type)
{
    const struct frame_desc *d = desc_of(type);

    return d != NULL && d->f[0].width != 0 ? d : NULL;
}

static bool
fld_ok(const struct fld *f, uint64_t v)
{
    switch (f->rule) {
    case ZERO:
        return v == 0;
    case FLAGS:
        return (v & ~f->arg) == 0;
    case MAX:
        return v <= f->arg;
    case NZ_MAX:
        return v >= 1 && v <= f->arg;
    default:
        return true;
    }
}

static uint64_t
fld_get(const struct vmig_mp_msg *m, const struct fld *f)
{
    const uint8_t *p = (const uint8_t *)m + f->slot;
    uint32_t v32;
    uint64_t v64;

    if (f->slot == NO_SLOT) {
        return 0;
    }
    if (f->width == 4) {
        memcpy(&v32, p, sizeof(v32));
        return v32;
    }
    memcpy(&v64, p, sizeof(v64));
    return v64;
}

static void
fld_set(struct vmig_mp_msg *m, const struct fld *f, uint64_t v)
{
    uint8_t *p = (uint8_t *)m + f->slot;
    uint32_t v32 = (uint32_t)v;

    if (f->slot == NO_SLOT) {
        return;
    }
    if (f->width == 4) {
        memcpy(p, &v32, sizeof(v32));
    } else {
        memcpy(p, &v, sizeof(v));
    }
}

/* The tail of @m: a struct vmig_mp_data or a reason string. */
static const void *
tail_of(const struct vmig_mp_msg *m, const struct frame_desc *d)
{
    return (const uint8_t *)m + d->tail_slot;
}

ssize_t
vmig_mp_msg_encode(const struct vmig_mp_msg *m, void *buf, size_t cap)
{
    const struct frame_desc *d = layout_of(m->type);
    struct mp_w w = {.p = buf, .cap = cap};

    if (d == NULL) {
        return -EINVAL;
    }
    for (unsigned int i = 0; i < MAX_FIELDS && d->f[i].width != 0; i++) {
        uint64_t v = fld_get(m, &d->f[i]);

        if (!fld_ok(&d->f[i], v)) {
            return -EINVAL;
        }
        if (d->f[i].width == 4) {
            mp_w_u32(&w, (uint32_t)v);
        } else {
            mp_w_u64(&w, v);
        }
    }
    if (d->tail == TAIL_STRING) {
        const char *s = tail_of(m, d);
        size_t n = strnlen(s, VMIG_MP_REASON_MAX);

        mp_w_u16(&w, (uint16_t)n);
        mp_w_bytes(&w, s, n);
    } else if (d->tail == TAIL_DATA) {
        const struct vmig_mp_data *t = tail_of(m, d);

        if ((t->ptr == NULL && t->len > 0) || w.len + t->len > d->limit) {
            return -EINVAL;
        }
    }
    if (d->check != NULL && d->check(m) < 0) {
        return -EINVAL;
    }
    if (w.err != 0) {
        return w.err;
    }
    return (ssize_t)w.len;
}

/* Control characters of a peer's text would garble the log it lands in. */
static void
sanitize(char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f) {
            *s = '?';
        }
    }
}

int
vmig_mp_msg_decode_head(unsigned int type, const void *head, size_t head_len,
                        size_t len, struct vmig_mp_msg *out)
{
    const struct frame_desc *d = layout_of(type);
    struct mp_r r = {.p = head, .len = head_len};
    struct vmig_mp_msg m;

    if (d == NULL) {
        return -EINVAL;
    }
    if (head_len > len || (head_len < len && d->tail != TAIL_DATA) ||
        len > d->limit) {
        return -EBADMSG;
    }
    memset(&m, 0, sizeof(m));
    m.type = type;
    for (unsigned int i = 0; i < MAX_FIELDS && d->f[i].width != 0; i++) {
        uint64_t v = d->f[i].width == 4 ? mp_r_u32(&r) : mp_r_u64(&r);

        if (r.err != 0 || !fld_ok(&d->f[i], v)) {
            return -EBADMSG;
        }
        fld_set(&m, &d->f[i], v);
    }
    if (d->tail == TAIL_STRING) {
        char *s = (char *)&m + d->tail_slot;

        if (mp_r_str(&r, s, VMIG_MP_REASON_MAX + 1) < 0) {
            return -EBADMSG;
        }
        /* a NUL inside ends the text early; the rest is still consumed */
        sanitize(s);
    } else if (d->tail == TAIL_DATA) {
        struct vmig_mp_data *t =
            (struct vmig_mp_data *)((uint8_t *)&m + d->tail_slot);

        t->len = len - r.off;
        t->ptr = head_len == len && t->len > 0 ? r.p + r.off : NULL;
        r.off = head_len;
    }
    if (mp_r_done(&r) < 0) {
        return -EBADMSG;
    }
    if (d->check != NULL && d->check(&m) < 0) {
        return -EBADMSG;
    }
    *out = m;
    return 0;
}

int
vmig_mp_msg_decode(unsigned int type, const void *buf, size_t len,
                   struct vmig_mp_msg *out)
{
    return vmig_mp_msg_decode_head(type, buf, len, len, out);
}

int
vmig_mp_frame_decode(const struct vmig_mp_frame *f, struct vmig_mp_msg *out)
{
    return vmig_mp_msg_decode_head(f->hdr.type, f->payload,
                                   f->placed ? f->head_len : f->hdr.len,
                                   f->hdr.len, out);
}

int
vmig__mp_msg_parts(const struct vmig_mp_msg *m, uint8_t *head, size_t cap,
                   struct vmig_mp_data *tail)
{
    const struct frame_desc *d = layout_of(m->type);
    ssize_t n = vmig_mp_msg_encode(m, head, cap);

    *tail = (struct vmig_mp_data){NULL, 0};
    if (n >= 0 && d->tail == TAIL_DATA) {
        *tail = *(const struct vmig_mp_data *)tail_of(m, d);
    }
    return (int)n;
}
