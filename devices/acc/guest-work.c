/* SPDX-License-Identifier: MIT */
/*
 * guest-work.c - a self-checking accelerator workload kept in guest memory.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include "acc_model.h"
#include "guest-work.h"

#define ALIGN64(x) (((x) + 63u) & ~(uint64_t)63u)
#define MAX_IN_LIMIT (1u << 20)

enum kind { K_COPY, K_CRC, K_SHA, K_ZC, K_ZD, K_DC, K_DD, K_NOP, K__COUNT };

static uint64_t
mix(uint64_t x)
{
    /* splitmix64 finaliser */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Output area / input area size: room for any compressed max_in input. */
static uint32_t
area(uint32_t max_in)
{
    return (uint32_t)ALIGN64((uint64_t)max_in + max_in / 8 + 1024);
}

static void
describe(const struct acc_gwork_state *st, uint64_t n, enum kind *kind,
         uint32_t *len)
{
    uint64_t h = mix(n ^ ((uint64_t)st->seed << 32));

    *kind = (enum kind)(h % K__COUNT);
    *len = (h >> 8) % 16 == 0 ? 0 : (uint32_t)((h >> 12) % (st->max_in + 1));
}

/* Request n's input: text-like, partly compressible. */
static void
gen(const struct acc_gwork_state *st, uint64_t n, uint8_t *p, uint32_t len)
{
    static const char *const words[] = {"guest ", "memory ", "queue ",
                                        "pair ",  "state ",  "zstd ",
                                        "crc ",   "vfio ",   "page "};
    uint64_t h = mix(n * 31 + st->seed);
    uint32_t i = 0;

    while (i < len) {
        h = mix(h);
        if (h % 4 == 0) {
            p[i++] = (uint8_t)(h >> 24);
            continue;
        }
        for (const char *w = words[(h >> 8) % 9]; *w != '\0' && i < len; w++) {
            p[i++] = (uint8_t)*w;
        }
    }
}

/* FNV-1a 64: the ledger's digest of a result. */
static uint64_t
fnv64(const uint8_t *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * 0x100000001b3ull;
    }
    return h;
}

static uint64_t
ledger_size(uint64_t total)
{
    return ALIGN64(total * sizeof(struct acc_gwork_rec));
}

uint64_t
acc_gwork_mem_size(uint32_t qp_count, uint32_t slots_per_qp, uint64_t total,
                   uint32_t max_in)
{
    uint64_t slots = (uint64_t)qp_count * slots_per_qp;

    return ALIGN64(sizeof(struct acc_gwork_state) + 8 * slots) +
           ALIGN64((total + 7) / 8) + ledger_size(total) +
           slots * 2 * area(max_in);
}

static int
alloc_scratch(struct acc_gwork *w)
{
    uint32_t a = area(w->st->max_in);

    w->scratch = malloc(a);
    w->scratch2 = malloc(a);
    if (w->scratch == NULL || w->scratch2 == NULL) {
        acc_gwork_fini(w);
        return -ENOMEM;
    }
    return 0;
}

int
acc_gwork_init(struct acc_gwork *w, struct acc_gdrv *drv, uint64_t state_gpa,
               uint64_t total, uint32_t max_in, uint32_t seed)
{
    const struct acc_gdrv_state *ds = drv->st;
    uint32_t per_qp =
        (ds->sq_size < ds->cq_size ? ds->sq_size : ds->cq_size) - 1;
    uint64_t need, slots = (uint64_t)ds->qp_count * per_qp;
    struct acc_gwork_state *st;

    need = acc_gwork_mem_size(ds->qp_count, per_qp, total, max_in);
    if ((state_gpa & 63u) != 0 || max_in > MAX_IN_LIMIT || total == 0 ||
        total > UINT32_MAX || state_gpa > drv->ram_size ||
        need > drv->ram_size - state_gpa) {
        return -EINVAL;
    }
    memset(drv->ram + state_gpa, 0, need);
    st = (struct acc_gwork_state *)(drv->ram + state_gpa);
    st->total = total;
    st->first_bad = ~0ull;
    st->qp_count = ds->qp_count;
    st->slots_per_qp = per_qp;
    st->max_in = max_in;
    st->slot_size = 2 * area(max_in);
    st->seed = seed;
    st->bitmap_gpa = state_gpa + ALIGN64(sizeof(*st) + 8 * slots);
    st->ledger_gpa = st->bitmap_gpa + ALIGN64((total + 7) / 8);
    st->buf_gpa = st->ledger_gpa + ledger_size(total);
    st->end_gpa = state_gpa + need;
    st->magic = ACC_GWORK_MAGIC;
    return acc_gwork_attach(w, drv->ram, drv->ram_size, state_gpa);
}

int
acc_gwork_attach(struct acc_gwork *w, uint8_t *ram, uint64_t ram_size,
                 uint64_t state_gpa)
{
    const struct acc_gwork_state *st;

    memset(w, 0, sizeof(*w));
    if ((state_gpa & 63u) != 0 || state_gpa > ram_size ||
        ram_size - state_gpa < sizeof(*st)) {
        return -EINVAL;
    }
    st = (const struct acc_gwork_state *)(ram + state_gpa);
    if (st->magic != ACC_GWORK_MAGIC || st->qp_count == 0 ||
        st->qp_count > ACC_QP_MAX || st->slots_per_qp == 0 ||
        st->max_in > MAX_IN_LIMIT || st->end_gpa > ram_size ||
        st->end_gpa - state_gpa != acc_gwork_mem_size(st->qp_count,
                                                      st->slots_per_qp,
                                                      st->total, st->max_in) ||
        st->bitmap_gpa !=
            state_gpa +
                ALIGN64(sizeof(*st) + 8ull * st->qp_count * st->slots_per_qp) ||
        st->ledger_gpa != st->bitmap_gpa + ALIGN64((st->total + 7) / 8) ||
        st->buf_gpa != st->ledger_gpa + ledger_size(st->total)) {
        return -EINVAL;
    }
    w->ram = ram;
    w->ram_size = ram_size;
    w->st = (struct acc_gwork_state *)(ram + state_gpa);
    w->slots = (uint64_t *)(w->st + 1);
    w->ledger = (struct acc_gwork_rec *)(ram + w->st->ledger_gpa);
    return alloc_scratch(w);
}

void
acc_gwork_fini(struct acc_gwork *w)
{
    free(w->scratch);
    free(w->scratch2);
    w->scratch = NULL;
    w->scratch2 = NULL;
}

static uint8_t *
slot_src(const struct acc_gwork *w, uint64_t slot)
{
    return w->ram + w->st->buf_gpa + slot * w->st->slot_size;
}

static bool
bit_get(const struct acc_gwork *w, uint64_t n)
{
    return w->ram[w->st->bitmap_gpa + n / 8] & (1u << (n % 8));
}

static void
bit_set(struct acc_gwork *w, uint64_t n)
{
    w->ram[w->st->bitmap_gpa + n / 8] |= (uint8_t)(1u << (n % 8));
}

/*
 * Is this completion of request n right?  *digest receives the digest of
 * its result (0 when it has none to take).
 */
static bool
check(struct acc_gwork *w, uint64_t n, uint64_t slot, const struct acc_cqe *c,
      uint64_t *digest)
{
    const struct acc_gwork_state *st = w->st;
    const uint8_t *out = slot_src(w, slot) + area(st->max_in);
    uint8_t *x = w->scratch, *y = w->scratch2;
    enum kind kind;
    uint32_t len;

    *digest = 0;
    if (c->out_len <= area(st->max_in)) {
        *digest = fnv64(out, c->out_len);
    }
    if (c->status != ACC_ST_OK) {
        return false;
    }
    describe(st, n, &kind, &len);
    gen(st, n, x, len);
    switch (kind) {
    case K_NOP:
        return c->out_len == 0;
    case K_COPY:
    case K_ZD:
    case K_DD:
        return c->out_len == len && memcmp(out, x, len) == 0;
    case K_CRC: {
        uint32_t crc = acc_crc32c(0, x, len);

        return c->out_len == 4 && out[0] == (uint8_t)crc &&
               out[1] == (uint8_t)(crc >> 8) &&
               out[2] == (uint8_t)(crc >> 16) && out[3] == (uint8_t)(crc >> 24);
    }
    case K_SHA: {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;

        return EVP_Digest(x, len, md, &mdlen, EVP_sha256(), NULL) == 1 &&
               c->out_len == 32 && memcmp(out, md, 32) == 0;
    }
    case K_ZC: {
        size_t r = ZSTD_decompress(y, area(st->max_in), out, c->out_len);

        *digest = fnv64(y, ZSTD_isError(r) ? 0 : r);
        return !ZSTD_isError(r) && r == len && memcmp(x, y, len) == 0;
    }
    case K_DC: {
        uLongf r = area(st->max_in);

        bool ok = uncompress(y, &r, out, c->out_len) == Z_OK;

        *digest = fnv64(y, ok ? r : 0);
        return ok && r == len && memcmp(x, y, len) == 0;
    }
    default:
        return false;
    }
}

static void
note_bad(struct acc_gwork_state *st, uint64_t n, uint32_t status)
{
    if (st->first_bad == ~0ull) {
        st->first_bad = n;
        st->first_bad_status = status;
    }
}

static void
record(struct acc_gwork *w, uint64_t n, const struct acc_cqe *c,
       uint64_t digest)
{
    struct acc_gwork_rec *r = &w->ledger[n];

    r->status = (uint16_t)c->status;
    if (r->count != UINT16_MAX) {
        r->count++;
    }
    r->out_len = c->out_len;
    r->digest = digest;
}

static void
complete(struct acc_gwork *w, const struct acc_cqe *c)
{
    struct acc_gwork_state *st = w->st;
    uint64_t slot = c->req_id >> 32, n = c->req_id & 0xffffffffu;
    uint64_t digest;

    if (slot >= (uint64_t)st->qp_count * st->slots_per_qp || n >= st->total ||
        w->slots[slot] != n + 1 || bit_get(w, n)) {
        /* Not what this slot is waiting for: completed twice. */
        if (n < st->total && w->ledger[n].count != UINT16_MAX) {
            w->ledger[n].count++;
        }
        st->dup++;
        note_bad(st, n, c->status);
        return;
    }
    w->slots[slot] = 0;
    if (check(w, n, slot, c, &digest)) {
        record(w, n, c, digest);
        bit_set(w, n);
        st->completed++;
    } else {
        record(w, n, c, digest);
        st->bad++;
        note_bad(st, n, c->status);
    }
}

/* Fill the SQE of request n in @slot, preparing its input. */
static void
prepare(struct acc_gwork *w, uint64_t n, uint64_t slot, struct acc_sqe *s)
{
    const struct acc_gwork_state *st = w->st;
    uint64_t src = st->buf_gpa + slot * st->slot_size;
    uint8_t *in = w->ram + src;
    uint32_t a = area(st->max_in);
    enum kind kind;
    uint32_t len;

    describe(st, n, &kind, &len);
    memset(s, 0, sizeof(*s));
    s->req_id = slot << 32 | n;
    s->src = src;
    s->src_len = len;
    s->dst = src + a;
    s->dst_len = a;
    switch (kind) {
    case K_ZD: {
        size_t r;

        gen(st, n, w->scratch, len);
        r = ZSTD_compress(in, a, w->scratch, len, 1 + (int)(n % 3));
        s->opcode = ACC_OP_ZSTD_DECOMP;
        s->src_len = ZSTD_isError(r) ? 0 : (uint32_t)r;
        break;
    }
    case K_DD: {
        uLongf r = a;

        gen(st, n, w->scratch, len);
        if (compress2(in, &r, w->scratch, len, 1 + (int)(n % 9)) != Z_OK) {
            r = 0;
        }
        s->opcode = ACC_OP_DEFL_DECOMP;
        s->src_len = (uint32_t)r;
        break;
    }
    default: {
        static const uint8_t ops[K__COUNT] = {
            [K_COPY] = ACC_OP_COPY,    [K_CRC] = ACC_OP_CRC32C,
            [K_SHA] = ACC_OP_SHA256,   [K_ZC] = ACC_OP_ZSTD_COMP,
            [K_DC] = ACC_OP_DEFL_COMP, [K_NOP] = ACC_OP_NOP,
        };

        gen(st, n, in, len);
        s->opcode = ops[kind];
        s->param = (uint16_t)(kind == K_ZC || kind == K_DC ? 1 + n % 6 : 0);
        break;
    }
    }
}

int
acc_gwork_step(struct acc_gwork *w, struct acc_gdrv *drv)
{
    struct acc_gwork_state *st = w->st;
    struct acc_cqe c[64];
    int reaped = 0, n;

    if (drv->st->qp_count < st->qp_count) {
        return -EINVAL;
    }
    (void)acc_gdrv_reap_events(drv, NULL, 4096);
    (void)acc_gdrv_reap_errors(drv, NULL, 4096);
    for (uint32_t qp = 0; qp < st->qp_count; qp++) {
        while ((n = acc_gdrv_reap(drv, qp, c, 64)) > 0) {
            for (int i = 0; i < n; i++) {
                complete(w, &c[i]);
            }
            reaped += n;
        }
    }
    for (uint32_t qp = 0; qp < st->qp_count; qp++) {
        struct acc_sqe s[64];
        unsigned int k = 0;

        for (uint32_t i = 0; i < st->slots_per_qp && k < 64; i++) {
            uint64_t slot = (uint64_t)qp * st->slots_per_qp + i;

            if (st->issued == st->total) {
                break;
            }
            if (w->slots[slot] != 0) {
                continue;
            }
            prepare(w, st->issued, slot, &s[k++]);
            w->slots[slot] = st->issued + 1;
            st->issued++;
        }
        if (k != 0 && acc_gdrv_submit_batch(drv, qp, s, k) != (int)k) {
            return -EINVAL; /* the driver's limit is the slot count */
        }
    }
    return reaped;
}

int
acc_gwork_resubmit(struct acc_gwork *w, struct acc_gdrv *drv)
{
    const struct acc_gwork_state *st = w->st;
    int queued = 0;

    if (drv->st->qp_count < st->qp_count || st->slots_per_qp > 64) {
        return -EINVAL;
    }
    for (uint32_t qp = 0; qp < st->qp_count; qp++) {
        struct acc_sqe s[64];
        unsigned int k = 0;

        for (uint32_t i = 0; i < st->slots_per_qp; i++) {
            uint64_t slot = (uint64_t)qp * st->slots_per_qp + i;
            uint64_t n1 = w->slots[slot];

            if (n1 == 0) {
                continue;
            }
            if (n1 > st->issued) {
                return -EINVAL;
            }
            prepare(w, n1 - 1, slot, &s[k++]);
        }
        if (k != 0 && acc_gdrv_submit_batch(drv, qp, s, k) != (int)k) {
            return -EINVAL;
        }
        queued += (int)k;
    }
    return queued;
}

bool
acc_gwork_finished(const struct acc_gwork *w)
{
    const struct acc_gwork_state *st = w->st;

    if (st->issued != st->total) {
        return false;
    }
    for (uint64_t i = 0; i < (uint64_t)st->qp_count * st->slots_per_qp; i++) {
        if (w->slots[i] != 0) {
            return false;
        }
    }
    return true;
}

int
acc_gwork_verify(const struct acc_gwork *w)
{
    const struct acc_gwork_state *st = w->st;
    uint64_t bits = 0;

    if (st->bad != 0 || st->dup != 0) {
        return -EBADMSG;
    }
    if (!acc_gwork_finished(w)) {
        return -EAGAIN;
    }
    for (uint64_t n = 0; n < st->total; n++) {
        bits += bit_get(w, n);
    }
    if (bits != st->completed || st->completed != st->total) {
        return -EIO;
    }
    return 0;
}

/* Request n's reference result: its digest and length (-1: any length). */
static void
reference(const struct acc_gwork *w, uint64_t n, uint64_t *digest,
          int64_t *out_len)
{
    const struct acc_gwork_state *st = w->st;
    uint8_t *x = w->scratch;
    enum kind kind;
    uint32_t len;

    describe(st, n, &kind, &len);
    gen(st, n, x, len);
    *digest = fnv64(x, len);
    *out_len = len;
    switch (kind) {
    case K_NOP:
        *digest = fnv64(x, 0);
        *out_len = 0;
        break;
    case K_CRC: {
        uint32_t crc = acc_crc32c(0, x, len);
        uint8_t b[4] = {(uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16),
                        (uint8_t)(crc >> 24)};

        *digest = fnv64(b, 4);
        *out_len = 4;
        break;
    }
    case K_SHA: {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;

        if (EVP_Digest(x, len, md, &mdlen, EVP_sha256(), NULL) != 1) {
            mdlen = 0;
        }
        *digest = fnv64(md, mdlen);
        *out_len = 32;
        break;
    }
    case K_ZC:
    case K_DC:
        *out_len = -1; /* the compressor's exact bytes are its own */
        break;
    default:
        break;
    }
}

int
acc_gwork_ledger_check(const struct acc_gwork *w, bool digests,
                       struct acc_gwork_ledger *out)
{
    const struct acc_gwork_state *st = w->st;

    memset(out, 0, sizeof(*out));
    out->first_bad = ~0ull;
    for (uint64_t n = 0; n < st->total; n++) {
        const struct acc_gwork_rec *r = &w->ledger[n];
        bool done = bit_get(w, n), ok;
        uint64_t digest;
        int64_t len;

        if (r->count == 0 && !done) {
            continue;
        }
        out->entries += r->count != 0;
        if (done && !digests) {
            ok = r->count == 1 && r->status == ACC_ST_OK;
        } else if (done) {
            reference(w, n, &digest, &len);
            ok = r->count == 1 && r->status == ACC_ST_OK &&
                 r->digest == digest &&
                 (len < 0 ? r->out_len != 0 : r->out_len == (uint64_t)len);
        } else {
            ok = false; /* completed, but wrong or failed */
        }
        if (ok) {
            out->checked++;
        } else {
            out->mismatch++;
            if (out->first_bad == ~0ull) {
                out->first_bad = n;
            }
        }
    }
    return out->mismatch == 0 ? 0 : -EBADMSG;
}
