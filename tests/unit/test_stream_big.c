/* SPDX-License-Identifier: MIT */
/*
 * test_stream_big.c - a 4 GiB logical envelope, produced lazily by the
 * device (64 MiB records made up on demand) and loaded through a 1 MiB
 * pipe buffer, with the process's peak RSS growing by less than 64 MiB:
 * neither the writer nor the loader ever holds the state.
 *
 * VMIG_BIG_STREAM_GIB overrides the size (for manual runs).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <cmocka.h>
#include <xxhash.h>
#include <vmig/stream.h>
#include "unit/stream_util.h"

#define REC_LEN (64ull << 20)
#define PIPE_LEN (1u << 20)

struct big_src {
    uint64_t n_recs;
    uint64_t idx;
    uint64_t off;
    XXH3_state_t *h; /* of everything the device handed out */
};

static int
big_next(void *opaque, struct vmig_stream_record *rec)
{
    struct big_src *s = opaque;

    if (s->idx == s->n_recs) {
        return 0;
    }
    rec->type = T_RAM;
    rec->flags = VMIG_RECF_MULTI | VMIG_RECF_MANDATORY;
    rec->len = REC_LEN;
    s->idx++;
    s->off = 0;
    return 1;
}

/* Fast lazily generated content: each 4 KiB page is one byte value. */
static ssize_t
big_read(void *opaque, void *buf, size_t n)
{
    struct big_src *s = opaque;
    uint8_t *p = buf;
    size_t done = 0;

    while (done < n) {
        uint64_t pos = s->off + done;
        size_t c = 4096 - (size_t)(pos & 4095);

        c = c < n - done ? c : n - done;
        memset(p + done, (int)((s->idx * 131 + (pos >> 12)) & 0xff), c);
        done += c;
    }
    XXH3_64bits_update(s->h, buf, n);
    s->off += n;
    return (ssize_t)n;
}

struct big_sink {
    XXH3_state_t *h;
    uint64_t bytes;
    int commits;
};

static int
big_data(void *opaque, const void *buf, size_t n)
{
    struct big_sink *k = opaque;

    XXH3_64bits_update(k->h, buf, n);
    k->bytes += n;
    return 0;
}

static int
big_commit(void *opaque)
{
    struct big_sink *k = opaque;

    k->commits++;
    return 0;
}

static long
max_rss_kib(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void
test_big_stream_bounded_rss(void **state)
{
    static const struct vmig_stream_source_ops src_ops = {big_next, big_read};
    static const struct vmig_stream_sink_ops sink_ops = {
        .data = big_data,
        .commit = big_commit,
    };
    const char *env = getenv("VMIG_BIG_STREAM_GIB");
    uint64_t gib = env ? strtoull(env, NULL, 10) : 4;
    struct big_src src = {.n_recs = (gib << 30) / REC_LEN};
    struct big_sink k = {0};
    struct vmig_stream_loader_cfg cfg = {
        .local = &test_desc,
        .rules = test_rules,
        .n_rules = 3,
        .sink = &sink_ops,
        .sink_opaque = &k,
        .max_record_len = REC_LEN,
    };
    struct vmig_stream_writer *w;
    struct vmig_stream_loader *l;
    struct timespec t0, t1;
    uint64_t total = 0;
    long rss0, rss1;
    uint8_t *pipe;
    ssize_t got;

    (void)state;
    /* The required T_CONFIG rule is not used by this device. */
    struct vmig_stream_rule rules[] = {{T_RAM, VMIG_RULE_MULTI, 0}};
    cfg.rules = rules;
    cfg.n_rules = 1;

    src.h = XXH3_createState();
    k.h = XXH3_createState();
    XXH3_64bits_reset(src.h);
    XXH3_64bits_reset(k.h);
    pipe = malloc(PIPE_LEN);
    assert_non_null(pipe);
    memset(pipe, 0, PIPE_LEN); /* fault it in before measuring */
    assert_int_equal(
        vmig_stream_writer_new(NULL, &test_desc, 0, &src_ops, &src, &w), 0);
    assert_int_equal(vmig_stream_loader_new(NULL, &cfg, &l), 0);
    rss0 = max_rss_kib();
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while ((got = vmig_stream_writer_read(w, pipe, PIPE_LEN)) > 0) {
        /* An odd re-split, so record boundaries never line up. */
        size_t half = (size_t)got / 3 + 1;

        half = half < (size_t)got ? half : (size_t)got;
        assert_int_equal(vmig_stream_loader_write(l, pipe, half), 0);
        assert_int_equal(
            vmig_stream_loader_write(l, pipe + half, (size_t)got - half), 0);
        total += (uint64_t)got;
    }
    assert_int_equal(got, 0);
    assert_int_equal(vmig_stream_loader_finish(l), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    rss1 = max_rss_kib();

    double secs = (double)(t1.tv_sec - t0.tv_sec) +
                  (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("big stream: %llu bytes in %.2f s (%.2f GB/s end to end), peak "
           "RSS growth %ld KiB\n",
           (unsigned long long)total, secs, (double)total / secs / 1e9,
           rss1 - rss0);
    assert_true(total > (gib << 30));
    assert_int_equal(k.bytes, src.n_recs * REC_LEN);
    assert_int_equal(k.commits, 1);
    assert_true(XXH3_64bits_digest(k.h) == XXH3_64bits_digest(src.h));
    assert_true(rss1 - rss0 < 64 * 1024);

    vmig_stream_loader_free(l);
    vmig_stream_writer_free(w);
    XXH3_freeState(src.h);
    XXH3_freeState(k.h);
    free(pipe);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_big_stream_bounded_rss),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
