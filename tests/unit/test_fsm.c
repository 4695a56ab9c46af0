/* SPDX-License-Identifier: MIT */
/*
 * test_fsm.c - the state machine against the kernel's vectors and against
 * an independent oracle (BFS over the uAPI's documented arcs).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <vmig/fsm.h>

#define NSTATES VMIG_STATE__COUNT
#define S(x) VMIG_STATE_##x

static const uint64_t valid_flag_sets[] = {1, 3, 5, 7};

/* ------------------------------------------------------------ vectors */

static FILE *
open_vectors(void)
{
    FILE *f = fopen(VMIG_TEST_DATA "/fsm-next-step.txt", "r");

    assert_non_null(f);
    return f;
}

static void
test_raw_table_matches_vectors(void **state)
{
    char line[512];
    int rows = 0;
    FILE *f = open_vectors();

    (void)state;
    while (fgets(line, sizeof(line), f) != NULL) {
        int cur, v[8];

        if (sscanf(line, "raw %d: %d %d %d %d %d %d %d %d", &cur, &v[0], &v[1],
                   &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) != 9) {
            continue;
        }
        for (int t = 0; t < NSTATES; t++) {
            assert_int_equal(vmig_fsm_raw_next(cur, t), v[t]);
        }
        rows++;
    }
    fclose(f);
    assert_int_equal(rows, NSTATES);
}

static void
test_next_matches_vectors(void **state)
{
    char line[512];
    int cells = 0;
    FILE *f = open_vectors();

    (void)state;
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned int flags;
        int cur, off;
        char *p;

        if (sscanf(line, "flags=%u cur=%d:%n", &flags, &cur, &off) != 2) {
            continue;
        }
        p = line + off;
        for (int t = 0; t < NSTATES; t++) {
            char tok[8];
            int n;
            enum vmig_state next = S(ERROR);
            int rc;

            assert_int_equal(sscanf(p, " %7s%n", tok, &n), 1);
            p += n;
            rc = vmig_fsm_next(flags, cur, t, &next);
            if (strcmp(tok, "E") == 0) {
                if (rc != -EINVAL) {
                    fail_msg("flags=%u %s->%s: want EINVAL, got %d (%s)", flags,
                             vmig_state_name(cur), vmig_state_name(t), rc,
                             vmig_state_name(next));
                }
            } else {
                assert_int_equal(rc, 0);
                if ((int)next != atoi(tok)) {
                    fail_msg("flags=%u %s->%s: want %s, got %s", flags,
                             vmig_state_name(cur), vmig_state_name(t),
                             vmig_state_name(atoi(tok)), vmig_state_name(next));
                }
            }
            cells++;
        }
    }
    fclose(f);
    /* 4 flag sets x 64 (cur, target) pairs */
    assert_int_equal(cells, 4 * NSTATES * NSTATES);
}

static void
test_paths_match_vectors(void **state)
{
    char line[512];
    int paths = 0, refused = 0;
    FILE *f = open_vectors();

    (void)state;
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned int flags;
        int off;
        struct vmig_fsm_path want = {0}, got;
        char *tok, *save = NULL;
        bool einval = false;
        int rc;

        if (sscanf(line, "path flags=%u%n", &flags, &off) != 1) {
            continue;
        }
        line[strcspn(line, "\n")] = '\0';
        if (strstr(line, " : EINVAL") != NULL) {
            einval = true;
            *strstr(line, " : EINVAL") = '\0';
        }
        for (tok = strtok_r(line + off, " ", &save); tok != NULL;
             tok = strtok_r(NULL, " ", &save)) {
            enum vmig_state s;

            if (strcmp(tok, "->") == 0) {
                continue;
            }
            assert_int_equal(vmig_state_from_name(tok, &s), 0);
            assert_true(want.len < VMIG_FSM_PATH_MAX);
            want.state[want.len++] = s;
        }
        assert_true(want.len >= 2);
        rc =
            vmig_fsm_path(flags, want.state[0], want.state[want.len - 1], &got);
        if (einval) {
            assert_int_equal(rc, -EINVAL);
            refused++;
        } else {
            char a[160], b[160];

            assert_int_equal(rc, 0);
            if (got.len != want.len ||
                memcmp(got.state, want.state,
                       want.len * sizeof(want.state[0])) != 0) {
                fail_msg("flags=%u: want %s, got %s", flags,
                         vmig_fsm_path_format(&want, a, sizeof(a)),
                         vmig_fsm_path_format(&got, b, sizeof(b)));
            }
        }
        paths++;
    }
    fclose(f);
    assert_int_equal(paths, 42 + 20 + 20 + 12);
    assert_int_equal(refused, 3);
}

/* ------------------------------------------------------------ oracle */

/*
 * The uAPI's documented single arcs when a device has every state
 * (include/uapi/linux/vfio.h, "The FSM takes actions on the arcs").
 */
/* clang-format off */
static const int uapi_arcs[][2] = {
    {S(STOP), S(RUNNING_P2P)},        {S(STOP), S(STOP_COPY)},
    {S(STOP), S(RESUMING)},           {S(RUNNING), S(RUNNING_P2P)},
    {S(RUNNING), S(PRE_COPY)},        {S(STOP_COPY), S(STOP)},
    {S(RESUMING), S(STOP)},           {S(RUNNING_P2P), S(STOP)},
    {S(RUNNING_P2P), S(RUNNING)},     {S(RUNNING_P2P), S(PRE_COPY_P2P)},
    {S(PRE_COPY), S(RUNNING)},        {S(PRE_COPY), S(PRE_COPY_P2P)},
    {S(PRE_COPY_P2P), S(RUNNING_P2P)}, {S(PRE_COPY_P2P), S(STOP_COPY)},
    {S(PRE_COPY_P2P), S(PRE_COPY)},
};
/* clang-format on */

static bool
oracle_supported(uint64_t flags, int s)
{
    static const uint64_t need[NSTATES] = {
        [S(ERROR)] = ~0ull, [S(STOP)] = 1,         [S(RUNNING)] = 1,
        [S(STOP_COPY)] = 1, [S(RESUMING)] = 1,     [S(RUNNING_P2P)] = 3,
        [S(PRE_COPY)] = 5,  [S(PRE_COPY_P2P)] = 7,
    };
    return (flags & need[s]) == need[s];
}

static bool
saving_group(int s)
{
    return s == S(PRE_COPY) || s == S(PRE_COPY_P2P) || s == S(STOP_COPY);
}

/*
 * May a path that started in @start pass through @x on its way?  STOP_COPY
 * (the final state is being read) and RESUMING are ends, never waypoints;
 * the precopy states are waypoints only for a path that started inside
 * the saving session and has not left it.
 */
static bool
oracle_may_pass(int start, int x)
{
    if (x == S(RESUMING) || x == S(STOP_COPY)) {
        return false;
    }
    return !saving_group(x) || saving_group(start);
}

/*
 * Effective arcs for a feature set: a states the device lacks is
 * contracted away (a -> missing -> b becomes a -> b), as the uAPI says a
 * device without P2P treats RUNNING_P2P "as STOP"/skips it.
 */
static void
oracle_arcs(uint64_t flags, bool arc[NSTATES][NSTATES])
{
    bool base[NSTATES][NSTATES] = {{false}};

    memset(arc, 0, sizeof(bool) * NSTATES * NSTATES);
    for (size_t i = 0; i < sizeof(uapi_arcs) / sizeof(uapi_arcs[0]); i++) {
        base[uapi_arcs[i][0]][uapi_arcs[i][1]] = true;
    }
    for (int a = 1; a < NSTATES; a++) {
        bool seen[NSTATES] = {false};
        int stack[NSTATES * NSTATES], sp = 0;

        if (!oracle_supported(flags, a)) {
            continue;
        }
        stack[sp++] = a;
        seen[a] = true;
        while (sp > 0) {
            int x = stack[--sp];

            for (int b = 1; b < NSTATES; b++) {
                if (!base[x][b] || seen[b]) {
                    continue;
                }
                /* skipping a missing state never opens or ends a
                 * session: the skipped states and both ends share it */
                if (x != a && saving_group(b) != saving_group(a)) {
                    continue;
                }
                seen[b] = true;
                if (oracle_supported(flags, b)) {
                    arc[a][b] = true;
                } else if (saving_group(b) == saving_group(a)) {
                    stack[sp++] = b;
                }
            }
        }
    }
}

/*
 * BFS first hop; ERROR when there is no path.  A path may pass through a
 * saving-group state only while it has not left the group it started in,
 * never through RESUMING, and STOP_COPY -> PRE_COPY(_P2P) is blocked.
 * Search nodes are (state, still-inside-the-starting-session).
 */
static int
oracle_first_hop(uint64_t flags, int from, int to)
{
    bool arc[NSTATES][NSTATES];
    int dist[NSTATES][2], first[NSTATES][2], queue[2 * NSTATES][2];
    int qh = 0, qt = 0, best = -1, hop = S(ERROR);

    if (!oracle_supported(flags, from) || !oracle_supported(flags, to)) {
        return S(ERROR);
    }
    if (from == to) {
        return from;
    }
    if (from == S(STOP_COPY) && (to == S(PRE_COPY) || to == S(PRE_COPY_P2P))) {
        return S(ERROR);
    }
    oracle_arcs(flags, arc);
    memset(dist, -1, sizeof(dist));
    dist[from][saving_group(from)] = 0;
    queue[qt][0] = from;
    queue[qt++][1] = saving_group(from);
    while (qh < qt) {
        int x = queue[qh][0], in = queue[qh][1];

        qh++;
        if (x == to) {
            if (best >= 0 && dist[x][in] == best && first[x][in] != hop) {
                fail_msg("oracle: two shortest paths %d->%d disagree", from,
                         to);
            }
            if (best < 0) {
                best = dist[x][in];
                hop = first[x][in];
            }
            continue;
        }
        if (x != from && !oracle_may_pass(in ? from : S(STOP), x)) {
            continue; /* may end a path here, never pass through */
        }
        for (int b = 1; b < NSTATES; b++) {
            int bin = in && saving_group(b);

            if (!arc[x][b] || dist[b][bin] >= 0) {
                continue;
            }
            dist[b][bin] = dist[x][in] + 1;
            first[b][bin] = x == from ? b : first[x][in];
            queue[qt][0] = b;
            queue[qt++][1] = bin;
        }
    }
    return hop;
}

static void
test_next_matches_oracle(void **state)
{
    int checked = 0;

    (void)state;
    for (size_t i = 0; i < 4; i++) {
        uint64_t flags = valid_flag_sets[i];

        for (int from = 0; from < NSTATES; from++) {
            for (int to = 0; to < NSTATES; to++) {
                int want = oracle_first_hop(flags, from, to);
                enum vmig_state got = S(ERROR);
                int rc = vmig_fsm_next(flags, from, to, &got);

                if (want == S(ERROR)) {
                    assert_int_equal(rc, -EINVAL);
                } else {
                    assert_int_equal(rc, 0);
                    if ((int)got != want) {
                        fail_msg("flags=%llu %s->%s: oracle %s, fsm %s",
                                 (unsigned long long)flags,
                                 vmig_state_name(from), vmig_state_name(to),
                                 vmig_state_name(want), vmig_state_name(got));
                    }
                }
                checked++;
            }
        }
    }
    assert_int_equal(checked, 256);
}

/* The kernel looped forever here before 2026; we must return at once. */
static void
test_stop_copy_to_pre_copy_is_einval(void **state)
{
    enum vmig_state next = S(STOP);
    struct vmig_fsm_path p = {.len = 99};

    (void)state;
    assert_int_equal(vmig_fsm_next(7, S(STOP_COPY), S(PRE_COPY), &next),
                     -EINVAL);
    assert_int_equal(vmig_fsm_next(7, S(STOP_COPY), S(PRE_COPY_P2P), &next),
                     -EINVAL);
    assert_int_equal(vmig_fsm_next(5, S(STOP_COPY), S(PRE_COPY), &next),
                     -EINVAL);
    assert_int_equal(next, S(STOP)); /* untouched */
    assert_int_equal(vmig_fsm_path(5, S(STOP_COPY), S(PRE_COPY), &p), -EINVAL);
    assert_int_equal(p.len, 99); /* untouched */
}

static void
test_out_of_range_and_error(void **state)
{
    enum vmig_state next;

    (void)state;
    for (size_t i = 0; i < 4; i++) {
        uint64_t fl = valid_flag_sets[i];

        assert_int_equal(vmig_fsm_next(fl, 8, S(STOP), &next), -EINVAL);
        assert_int_equal(vmig_fsm_next(fl, S(STOP), 8, &next), -EINVAL);
        assert_int_equal(vmig_fsm_next(fl, 0xffffffffu, 1, &next), -EINVAL);
        assert_int_equal(vmig_fsm_next(fl, S(ERROR), S(STOP), &next), -EINVAL);
        assert_int_equal(vmig_fsm_next(fl, S(STOP), S(ERROR), &next), -EINVAL);
    }
    assert_int_equal(vmig_fsm_raw_next(9, 1), S(ERROR));
    assert_string_equal(vmig_state_name(8), "INVALID");
    assert_string_equal(vmig_state_name(6), "PRE_COPY");
}

/* ------------------------------------------------------------ arcs */

static void
test_arc_classes_cover_exactly_the_effective_arcs(void **state)
{
    bool any[NSTATES][NSTATES] = {{false}};

    (void)state;
    for (size_t i = 0; i < 4; i++) {
        for (int a = 0; a < NSTATES; a++) {
            for (int t = 0; t < NSTATES; t++) {
                enum vmig_state n;

                if (vmig_fsm_next(valid_flag_sets[i], a, t, &n) == 0) {
                    any[a][n] = true;
                }
            }
        }
    }
    for (int a = 0; a < NSTATES; a++) {
        for (int b = 0; b < NSTATES; b++) {
            enum vmig_arc_kind k = vmig_arc_classify(a, b);

            if (any[a][b] != (k != VMIG_ARC_INVALID)) {
                fail_msg("arc %s->%s: taken=%d but classified %s",
                         vmig_state_name(a), vmig_state_name(b), any[a][b],
                         vmig_arc_kind_name(k));
            }
        }
    }
    assert_int_equal(vmig_arc_classify(S(STOP), S(STOP_COPY)),
                     VMIG_ARC_OPEN_SAVE);
    assert_int_equal(vmig_arc_classify(S(RUNNING), S(PRE_COPY)),
                     VMIG_ARC_OPEN_SAVE);
    assert_int_equal(vmig_arc_classify(S(RUNNING_P2P), S(PRE_COPY_P2P)),
                     VMIG_ARC_OPEN_SAVE);
    assert_int_equal(vmig_arc_classify(S(STOP), S(RESUMING)),
                     VMIG_ARC_OPEN_RESUME);
    assert_int_equal(vmig_arc_classify(S(PRE_COPY), S(STOP_COPY)),
                     VMIG_ARC_KEEP_SESSION);
    assert_int_equal(vmig_arc_classify(S(PRE_COPY_P2P), S(PRE_COPY)),
                     VMIG_ARC_KEEP_SESSION);
    assert_int_equal(vmig_arc_classify(S(STOP_COPY), S(STOP)),
                     VMIG_ARC_END_SAVE);
    assert_int_equal(vmig_arc_classify(S(PRE_COPY), S(RUNNING)),
                     VMIG_ARC_END_SAVE);
    assert_int_equal(vmig_arc_classify(S(RESUMING), S(STOP)),
                     VMIG_ARC_END_RESUME);
    assert_int_equal(vmig_arc_classify(S(RUNNING), S(STOP)), VMIG_ARC_NONE);
    assert_int_equal(vmig_arc_classify(S(STOP_COPY), S(PRE_COPY)),
                     VMIG_ARC_INVALID);
    assert_int_equal(vmig_arc_classify(S(ERROR), S(ERROR)), VMIG_ARC_INVALID);
    assert_int_equal(vmig_arc_classify(99, 1), VMIG_ARC_INVALID);
}

/* Only the last arc of a combination transition may open a session. */
static void
test_only_last_arc_opens_a_session(void **state)
{
    int paths = 0;

    (void)state;
    for (size_t i = 0; i < 4; i++) {
        for (int a = 1; a < NSTATES; a++) {
            for (int t = 1; t < NSTATES; t++) {
                struct vmig_fsm_path p;

                if (vmig_fsm_path(valid_flag_sets[i], a, t, &p) != 0) {
                    continue;
                }
                for (unsigned int k = 0; k + 2 < p.len; k++) {
                    enum vmig_arc_kind kind =
                        vmig_arc_classify(p.state[k], p.state[k + 1]);

                    assert_int_not_equal(kind, VMIG_ARC_OPEN_SAVE);
                    assert_int_not_equal(kind, VMIG_ARC_OPEN_RESUME);
                    assert_int_not_equal(kind, VMIG_ARC_INVALID);
                }
                paths++;
            }
        }
    }
    assert_true(paths > 100);
}

/* ------------------------------------------------------------ flags, v1 */

static void
test_flag_words(void **state)
{
    char buf[64];

    (void)state;
    for (uint64_t w = 0; w < 16; w++) {
        bool valid = w == 1 || w == 3 || w == 5 || w == 7;

        assert_int_equal(vmig_flags_validate(w), valid ? 0 : -EINVAL);
    }
    assert_int_equal(vmig_flags_validate(1ull << 3 | 1), -EINVAL);
    assert_int_equal(vmig_flags_validate(1ull << 63 | 1), -EINVAL);
    /* an invalid word makes every next-step query fail */
    for (uint64_t w = 0; w < 16; w++) {
        enum vmig_state n;

        if (vmig_flags_validate(w) == 0) {
            continue;
        }
        assert_int_equal(vmig_fsm_next(w, S(STOP), S(RUNNING), &n), -EINVAL);
    }
    assert_string_equal(vmig_flags_format(7, buf, sizeof(buf)),
                        "STOP_COPY|P2P|PRE_COPY");
    assert_string_equal(vmig_flags_format(0x9, buf, sizeof(buf)),
                        "STOP_COPY|0x8");
    assert_string_equal(vmig_flags_format(0, buf, sizeof(buf)), "0");
}

static void
test_v1_words(void **state)
{
    /* expected decode of every 4-bit word; -1 = refused */
    /* clang-format off */
    static const int want[16] = {
        [0x0] = S(STOP),         [0x1] = S(RUNNING),   [0x2] = S(STOP_COPY),
        [0x3] = S(PRE_COPY),     [0x4] = S(RESUMING),  [0x5] = -1,
        [0x6] = -1,              [0x7] = -1,           [0x8] = S(STOP),
        [0x9] = S(RUNNING_P2P),  [0xa] = S(STOP_COPY), [0xb] = S(PRE_COPY_P2P),
        [0xc] = S(RESUMING),     [0xd] = -1,           [0xe] = -1,
        [0xf] = -1,
    };
    /* clang-format on */

    (void)state;
    for (uint32_t w = 0; w < 16; w++) {
        enum vmig_state s = S(ERROR);
        int rc = vmig_v1_decode(w, &s);

        if (want[w] < 0) {
            assert_int_equal(rc, -EINVAL);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(s, want[w]);
        }
    }
    for (uint32_t w = 16; w < 4096; w++) {
        enum vmig_state s;

        assert_int_equal(vmig_v1_decode(w, &s), -EINVAL);
    }
    assert_int_equal(vmig_v1_decode(0x80000001u, &(enum vmig_state){0}),
                     -EINVAL);
    /* encode is the inverse on valid states and never sets redundant NDMA */
    for (unsigned int st = 1; st < NSTATES; st++) {
        uint32_t w;
        enum vmig_state back;

        assert_int_equal(vmig_v1_encode(st, &w), 0);
        assert_int_equal(vmig_v1_decode(w, &back), 0);
        assert_int_equal(back, st);
        if (st != S(RUNNING_P2P) && st != S(PRE_COPY_P2P)) {
            assert_int_equal(w & VMIG_V1_NDMA, 0);
        }
    }
    {
        uint32_t w;

        assert_int_equal(vmig_v1_encode(S(ERROR), &w), 0);
        assert_int_equal(w, VMIG_V1_SAVING | VMIG_V1_RESUMING);
        assert_int_equal(vmig_v1_encode(8, &w), -EINVAL);
    }
}

static void
test_state_names_round_trip(void **state)
{
    enum vmig_state s;

    (void)state;
    for (unsigned int i = 0; i < NSTATES; i++) {
        assert_int_equal(vmig_state_from_name(vmig_state_name(i), &s), 0);
        assert_int_equal(s, i);
    }
    assert_int_equal(vmig_state_from_name("pre-copy-p2p", &s), 0);
    assert_int_equal(s, S(PRE_COPY_P2P));
    assert_int_equal(vmig_state_from_name("PRE_COPY_P2PX", &s), -EINVAL);
    assert_int_equal(vmig_state_from_name("", &s), -EINVAL);
    assert_int_equal(vmig_state_from_name(NULL, &s), -EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_table_matches_vectors),
        cmocka_unit_test(test_next_matches_vectors),
        cmocka_unit_test(test_paths_match_vectors),
        cmocka_unit_test(test_next_matches_oracle),
        cmocka_unit_test(test_stop_copy_to_pre_copy_is_einval),
        cmocka_unit_test(test_out_of_range_and_error),
        cmocka_unit_test(test_arc_classes_cover_exactly_the_effective_arcs),
        cmocka_unit_test(test_only_last_arc_opens_a_session),
        cmocka_unit_test(test_flag_words),
        cmocka_unit_test(test_v1_words),
        cmocka_unit_test(test_state_names_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
