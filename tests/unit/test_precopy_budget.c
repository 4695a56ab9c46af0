/* SPDX-License-Identifier: MIT */
/*
 * test_precopy_budget.c - the precopy burst budget rule
 * (lib/precopy_budget.c) that the engine's precopy rounds and the
 * vfio-user backend's bursts share: PRECOPY_INFO first (initial + dirty,
 * saturating), then a non-zero MIG_DATA_SIZE capped at 64 MiB, then
 * 64 MiB; an engine round is the burst plus one chunk, never 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>
#include "precopy_budget.h"

#define MiB (1ull << 20)
#define CHUNK (4 * MiB)

struct row {
    const char *what;
    struct vmig__pc_sizing in;
    uint64_t burst, round; /* expected */
};

static const struct row rows[] = {
    {"info: initial + dirty",
     {true, 10 * MiB, 3 * MiB, false, 0},
     13 * MiB,
     17 * MiB},
    {"info wins over a size",
     {true, 1 * MiB, 0, true, 500 * MiB},
     1 * MiB,
     5 * MiB},
    {"info above the no-sizing cap is not capped",
     {true, 1024 * MiB, 1 * MiB, false, 0},
     1025 * MiB,
     1029 * MiB},
    {"info: nothing pending", {true, 0, 0, true, 7 * MiB}, 0, CHUNK},
    {"info saturates",
     {true, UINT64_MAX - 5, 10, false, 0},
     UINT64_MAX,
     UINT64_MAX},
    {"size below the cap", {false, 0, 0, true, 20 * MiB}, 20 * MiB, 24 * MiB},
    {"size above the cap", {false, 0, 0, true, 4096 * MiB}, 64 * MiB, 68 * MiB},
    {"size 0 counts as none", {false, 0, 0, true, 0}, 64 * MiB, 68 * MiB},
    {"no sizing", {false, 9, 9, false, 9}, 64 * MiB, 68 * MiB},
};

static void
test_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        uint64_t b = vmig__pc_burst_budget(&r->in);
        uint64_t rd = vmig__pc_round_budget(&r->in, CHUNK);

        if (b != r->burst || rd != r->round) {
            fail_msg("%s: burst %llu (want %llu), round %llu (want %llu)",
                     r->what, (unsigned long long)b,
                     (unsigned long long)r->burst, (unsigned long long)rd,
                     (unsigned long long)r->round);
        }
    }
}

/* A round always holds the burst: a backend following the rule ends its
 * own burst inside the engine's round, whatever sizing it saw (the
 * engine asks PRECOPY_INFO only, the backend also MIG_DATA_SIZE). */
static void
test_round_holds_burst(void **state)
{
    static const uint64_t sizes[] = {0,        1,        4 * MiB,   63 * MiB,
                                     64 * MiB, 65 * MiB, UINT64_MAX};

    (void)state;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct vmig__pc_sizing backend = {.size = true, .bytes = sizes[i]};
        struct vmig__pc_sizing engine = {0};

        assert_true(vmig__pc_round_budget(&engine, CHUNK) >=
                    vmig__pc_burst_budget(&backend) + CHUNK);
    }
    /* a zero chunk still gives a round that moves something */
    {
        struct vmig__pc_sizing none = {.info = true};

        assert_int_equal(vmig__pc_round_budget(&none, 0), 1);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_round_holds_burst),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
