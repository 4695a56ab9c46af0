/* SPDX-License-Identifier: MIT */
/*
 * bench_stream.c - the envelope's cost.
 *
 * 1. Overhead in bytes for typical record sizes (exact, from the writer).
 * 2. Throughput of write + verify + load against plain memcpy of the same
 *    bytes along the same path, measured in the same run: the device's
 *    state is copied into a 1 MiB transfer buffer (by the device's read
 *    callback, or by memcpy for the baseline) and from there into the
 *    destination's staging memory (by the loader's data callback, or by
 *    memcpy).  The ratio is envelope time / memcpy time.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vmig/stream.h>

#define XFER (1u << 20)
#define STATE (8u << 20) /* device state buffer, reused for every record */

static const struct vmig_compat_kv params[] = {{"qp-count", "64"},
                                               {"isolation", "shared"}};
static const struct vmig_compat_desc desc = {
    .vendor_id = VMIG_VENDOR_PCI(0x19e5),
    .device_type = 0xa255,
    .generation = 2,
    .mig_flags = VMIG_MIGF_STOP_COPY | VMIG_MIGF_PRE_COPY,
    .stream_version = 2,
    .vendor_version = "hisi-acc 2.0 fw 1.7",
    .params = params,
    .n_params = 2,
};

struct src {
    const uint8_t *state;
    uint64_t rec_len;
    uint64_t n_recs;
    uint64_t idx;
    uint64_t off;
};

static int
s_next(void *opaque, struct vmig_stream_record *rec)
{
    struct src *s = opaque;

    if (s->idx == s->n_recs) {
        return 0;
    }
    rec->type = 0x100;
    rec->flags = VMIG_RECF_MANDATORY | VMIG_RECF_MULTI;
    rec->len = s->rec_len;
    s->idx++;
    s->off = 0;
    return 1;
}

static ssize_t
s_read(void *opaque, void *buf, size_t n)
{
    struct src *s = opaque;

    memcpy(buf, s->state + (s->off % STATE), n);
    s->off += n;
    return (ssize_t)n;
}

struct dst {
    uint8_t *stage;
    uint64_t off;
};

static int
d_begin(void *opaque, const struct vmig_stream_record *rec)
{
    (void)rec;
    ((struct dst *)opaque)->off = 0;
    return 0;
}

static int
d_data(void *opaque, const void *buf, size_t n)
{
    struct dst *d = opaque;

    memcpy(d->stage + (d->off % STATE), buf, n);
    d->off += n;
    return 0;
}

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t
envelope_size(uint64_t rec_len, uint64_t n_recs)
{
    static const struct vmig_stream_source_ops ops = {s_next, s_read};
    static uint8_t state[STATE];
    struct src s = {.state = state, .rec_len = rec_len, .n_recs = n_recs};
    struct vmig_stream_writer *w;
    static uint8_t buf[XFER];
    uint64_t total = 0;
    ssize_t got;

    if (vmig_stream_writer_new(NULL, &desc, 0, &ops, &s, &w) < 0) {
        return 0;
    }
    while ((got = vmig_stream_writer_read(w, buf, sizeof(buf))) > 0) {
        total += (uint64_t)got;
    }
    vmig_stream_writer_free(w);
    return total;
}

/* One envelope pass over @n_recs records of @rec_len; seconds. */
static double
run_envelope(const uint8_t *state, uint8_t *xfer, uint8_t *stage,
             uint64_t rec_len, uint64_t n_recs)
{
    static const struct vmig_stream_source_ops ops = {s_next, s_read};
    static const struct vmig_stream_sink_ops sink = {.begin = d_begin,
                                                     .data = d_data};
    struct src s = {.state = state, .rec_len = rec_len, .n_recs = n_recs};
    struct dst d = {.stage = stage};
    struct vmig_stream_loader_cfg cfg = {
        .local = &desc, .sink = &sink, .sink_opaque = &d};
    struct vmig_stream_rule rule = {0x100, VMIG_RULE_MULTI, 0};
    struct vmig_stream_writer *w;
    struct vmig_stream_loader *l;
    double t0;
    ssize_t got;

    cfg.rules = &rule;
    cfg.n_rules = 1;
    if (vmig_stream_writer_new(NULL, &desc, 0, &ops, &s, &w) < 0 ||
        vmig_stream_loader_new(NULL, &cfg, &l) < 0) {
        fprintf(stderr, "bench_stream: setup failed\n");
        exit(1);
    }
    t0 = now();
    while ((got = vmig_stream_writer_read(w, xfer, XFER)) > 0) {
        if (vmig_stream_loader_write(l, xfer, (size_t)got) < 0) {
            fprintf(stderr, "bench_stream: load failed\n");
            exit(1);
        }
    }
    if (got < 0 || vmig_stream_loader_finish(l) < 0) {
        fprintf(stderr, "bench_stream: stream failed\n");
        exit(1);
    }
    t0 = now() - t0;
    vmig_stream_loader_free(l);
    vmig_stream_writer_free(w);
    return t0;
}

/* The same bytes along the same path with memcpy only. */
static double
run_memcpy(const uint8_t *state, uint8_t *xfer, uint8_t *stage, uint64_t total)
{
    double t0 = now();
    uint64_t off = 0;

    while (off < total) {
        size_t c = total - off < XFER ? (size_t)(total - off) : XFER;

        memcpy(xfer, state + (off % STATE), c);
        memcpy(stage + (off % STATE), xfer, c);
        off += c;
    }
    /* Keep the copies observable. */
    if (stage[off % STATE] == 0x5a && xfer[0] == 0xa5) {
        fputc('.', stderr);
    }
    return now() - t0;
}

int
main(void)
{
    static const uint64_t sizes[] = {64, 4096, 65536, 1u << 20, 4u << 20};
    uint8_t *state = malloc(STATE), *xfer = malloc(XFER);
    uint8_t *stage = malloc(STATE);
    uint64_t fixed;

    if (state == NULL || xfer == NULL || stage == NULL) {
        return 1;
    }
    for (size_t i = 0; i < STATE; i++) {
        state[i] = (uint8_t)(i * 131 + (i >> 12));
    }
    memset(stage, 0, STATE);
    memset(xfer, 0, XFER);

    fixed = envelope_size(0, 0);
    printf("envelope overhead: fixed %llu bytes (header 32 + DESCRIPTOR "
           "record %llu + END 56), plus %llu bytes per record\n",
           (unsigned long long)fixed, (unsigned long long)(fixed - 32 - 56),
           (unsigned long long)(envelope_size(0, 1) - fixed));
    printf("%12s %10s %14s %12s\n", "record size", "records", "overhead B",
           "overhead %");
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t n = (64ull << 20) / sizes[i];
        uint64_t tot = envelope_size(sizes[i], n);
        uint64_t over = tot - sizes[i] * n;

        printf("%12llu %10llu %14llu %11.4f%%\n", (unsigned long long)sizes[i],
               (unsigned long long)n, (unsigned long long)over,
               100.0 * (double)over / (double)(sizes[i] * n));
    }

    printf("\nthroughput, write+verify+load vs memcpy of the same bytes "
           "(source -> 1 MiB transfer buffer -> staging), best of 5:\n");
    printf("%12s %10s %14s %12s %8s\n", "record size", "total MiB",
           "envelope GB/s", "memcpy GB/s", "ratio");
    for (size_t i = 1; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t total = 512ull << 20;
        uint64_t n = total / sizes[i];
        double te = 1e9, tm = 1e9;

        for (int rep = 0; rep < 5; rep++) {
            double a = run_envelope(state, xfer, stage, sizes[i], n);
            double b = run_memcpy(state, xfer, stage, total);

            te = a < te ? a : te;
            tm = b < tm ? b : tm;
        }
        printf("%12llu %10llu %14.2f %12.2f %7.2fx\n",
               (unsigned long long)sizes[i], (unsigned long long)(total >> 20),
               (double)total / te / 1e9, (double)total / tm / 1e9, te / tm);
    }
    free(state);
    free(xfer);
    free(stage);
    return 0;
}
