/* SPDX-License-Identifier: MIT */
/*
 * frames.c - the proxy's view of a vmig migration stream, written from the
 * wire format (docs/migration-protocol.md), not from libvmig: each
 * direction starts with an 8-byte preamble ("VMIGMS\0", framing version),
 * then frames of a 24-byte header {u32 magic "vmfr", u16 type, u16 flags,
 * u32 payload length, u32 sequence, u64 checksum} and a payload.  Frames
 * are classified from the header and the first payload bytes (RAM: pass
 * and flags; RAM_PASS_END: pass and LAST; DEV_DATA: PRECOPY), so a rule
 * can fire exactly where a phase of the migration begins.  Anything else
 * (a TLS stream, another protocol) makes the parser give up; byte-offset
 * rules still work then.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <stdlib.h>
#include "fp.h"

enum {
    ST_PREAMBLE = 0,
    ST_HDR,
    ST_PREFIX,
    ST_BODY,
    ST_LOST,
};

#define PREAMBLE_LEN 8
#define HDR_LEN 24
#define FRAME_MAGIC 0x72666d76u

static const struct {
    unsigned int type;
    const char *name;
    unsigned int prefix; /* payload bytes the classifier needs */
} types[] = {
    {0x01, "HELLO", 0},
    {0x02, "SETUP", 0},
    {0x03, "RAM", 24},
    {0x04, "RAM_PASS_END", 8},
    {0x05, "DEV_CONFIG", 0},
    {0x06, "DEV_DATA", 8},
    {0x07, "DEV_END", 0},
    {0x08, "VCPU", 0},
    {0x09, "SWITCHOVER", 0},
    {0x0a, "ABORT", 0},
    {0x0b, "SWITCHOVER_REQ", 0},
    {0x0c, "DEV_RESTART", 0},
    {0x0d, "GO", 0},
    {0x0e, "DONE", 0},
    {0x0f, "RECOVER", 0},
    {0x81, "HELLO_REPLY", 0},
    {0x82, "SETUP_ACK", 0},
    {0x83, "ACK", 0},
    {0x84, "ERROR", 0},
    {0x85, "CONFIRM", 0},
    {0x86, "SWITCHOVER_ACK", 0},
    {0x87, "READY", 0},
    {0x88, "RECOVER_REPLY", 0},
};

static uint32_t
le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

const char *
fp_frame_type_name(unsigned int type)
{
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (types[i].type == type) {
            return types[i].name;
        }
    }
    return "unknown";
}

int
fp_frame_type_parse(const char *s, unsigned int *type)
{
    char *end;
    unsigned long v;

    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcasecmp(types[i].name, s) == 0) {
            *type = types[i].type;
            return 0;
        }
    }
    v = strtoul(s, &end, 0);
    if (end == s || *end != '\0' || v > 0xffff) {
        return -1;
    }
    *type = (unsigned int)v;
    return 0;
}

static unsigned int
prefix_for(unsigned int type, uint32_t len)
{
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (types[i].type == type) {
            return types[i].prefix < len ? types[i].prefix : len;
        }
    }
    return 0;
}

void
fp_parser_init(struct fp_parser *p)
{
    memset(p, 0, sizeof(*p));
    p->state = ST_PREAMBLE;
}

bool
fp_parser_lost(const struct fp_parser *p)
{
    return p->state == ST_LOST;
}

uint64_t
fp_parser_unclassified(const struct fp_parser *p)
{
    switch (p->state) {
    case ST_PREAMBLE:
        return PREAMBLE_LEN; /* the first frame starts right after it */
    case ST_HDR:
        return p->hdr_got > 0 ? p->frame_start : p->pos;
    case ST_PREFIX:
        return p->frame_start;
    case ST_BODY:
        return p->pos + p->body_left; /* the next frame's start */
    default:
        return UINT64_MAX;
    }
}

/* Copy what is still missing of a @need-byte field into @dst. */
static size_t
take(struct fp_parser *p, uint8_t *dst, unsigned int *got, unsigned int need,
     const uint8_t **data, size_t *len)
{
    size_t n = need - *got;

    n = n < *len ? n : *len;
    memcpy(dst + *got, *data, n);
    *got += (unsigned int)n;
    p->pos += n;
    *data += n;
    *len -= n;
    return n;
}

static void
classified(struct fp_parser *p,
           void (*fn)(void *opaque, const struct fp_frame *f), void *opaque)
{
    struct fp_frame *f = &p->cur;

    if (f->type == 0x03 && p->pre_got >= 24) { /* RAM */
        f->pflags = le32(p->pre + 4);
        f->pass = le32(p->pre + 20);
        f->pass_known = true;
    } else if ((f->type == 0x04 || f->type == 0x06) && p->pre_got >= 8) {
        f->pass = le32(p->pre);
        f->pass_known = f->type == 0x04;
        f->pflags = le32(p->pre + 4);
    }
    p->frames++;
    p->last_type = f->type;
    fn(opaque, f);
}

bool
fp_parser_feed(struct fp_parser *p, const uint8_t *data, size_t len,
               void (*fn)(void *opaque, const struct fp_frame *f), void *opaque)
{
    static const uint8_t preamble[7] = {'V', 'M', 'I', 'G', 'M', 'S', 0};

    while (len > 0 && p->state != ST_LOST) {
        size_t n;

        switch (p->state) {
        case ST_PREAMBLE:
            if (data[0] != (p->pos < 7 ? preamble[p->pos] : data[0])) {
                p->state = ST_LOST;
                break;
            }
            p->pos++;
            data++;
            len--;
            if (p->pos == PREAMBLE_LEN) {
                p->state = ST_HDR;
                p->hdr_got = 0;
            }
            break;
        case ST_HDR:
            if (p->hdr_got == 0) {
                p->frame_start = p->pos;
            }
            (void)take(p, p->hdr, &p->hdr_got, HDR_LEN, &data, &len);
            if (p->hdr_got < HDR_LEN) {
                break;
            }
            if (le32(p->hdr) != FRAME_MAGIC) {
                p->state = ST_LOST;
                break;
            }
            memset(&p->cur, 0, sizeof(p->cur));
            p->cur.start = p->frame_start;
            p->cur.type = (unsigned int)p->hdr[4] | (unsigned int)p->hdr[5]
                                                        << 8;
            p->cur.len = le32(p->hdr + 8);
            p->pre_need = prefix_for(p->cur.type, p->cur.len);
            p->pre_got = 0;
            p->body_left = p->cur.len;
            p->state = ST_PREFIX;
            break;
        case ST_PREFIX:
            p->body_left -=
                take(p, p->pre, &p->pre_got, p->pre_need, &data, &len);
            if (p->pre_got < p->pre_need) {
                break;
            }
            classified(p, fn, opaque);
            p->state = p->body_left > 0 ? ST_BODY : ST_HDR;
            p->hdr_got = 0;
            break;
        case ST_BODY:
            n = p->body_left < len ? (size_t)p->body_left : len;
            p->pos += n;
            data += n;
            len -= n;
            p->body_left -= n;
            if (p->body_left == 0) {
                p->state = ST_HDR;
                p->hdr_got = 0;
            }
            break;
        default:
            break;
        }
    }
    /* ST_PREFIX with nothing more needed (a frame without prefix) */
    if (p->state == ST_PREFIX && p->pre_got >= p->pre_need) {
        classified(p, fn, opaque);
        p->state = p->body_left > 0 ? ST_BODY : ST_HDR;
        p->hdr_got = 0;
    }
    return p->state != ST_LOST;
}
