/* SPDX-License-Identifier: MIT */
/*
 * test_qmp_wire.c - the agent's QMP byte stream: requests framed without
 * newlines, split anywhere, spanning lines; QEMU's recovery after a
 * lexical error; the request size limit (one error, then close, however
 * long the garbage); output in QEMU's layout and ASCII-only escaping; and
 * argument checking against a table with QEMU's messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "qmp.h"

/* Feed all of @in in @chunk-byte pieces; record what comes out. */
struct events {
    int values;
    int errors;
    int closed;
    char last_err[160];
    char keys[8][32]; /* "execute" of the first values */
};

static void
feed_all(struct qmp_framer *f, const char *in, size_t n, size_t chunk,
         struct events *ev)
{
    size_t off = 0;

    while (off < n && !ev->closed) {
        size_t len = n - off < chunk ? n - off : chunk;
        size_t used = 0;

        while (used < len && !ev->closed) {
            struct qmp_frame fr;

            used += qmp_framer_feed(f, in + off + used, len - used, &fr);
            if (fr.kind == QMP_FRAME_VALUE) {
                json_object *x;

                if (ev->values < 8 &&
                    json_object_is_type(fr.value, json_type_object) &&
                    json_object_object_get_ex(fr.value, "execute", &x)) {
                    snprintf(ev->keys[ev->values], sizeof(ev->keys[0]), "%s",
                             json_object_get_string(x));
                }
                ev->values++;
                json_object_put(fr.value);
            } else if (fr.kind == QMP_FRAME_ERROR) {
                ev->errors++;
                snprintf(ev->last_err, sizeof(ev->last_err), "%s", fr.msg);
            } else if (fr.kind == QMP_FRAME_CLOSE) {
                ev->closed = 1;
                if (fr.msg[0] != '\0') {
                    ev->errors++;
                    snprintf(ev->last_err, sizeof(ev->last_err), "%s", fr.msg);
                }
            }
        }
        off += len;
    }
}

static void
run_n(const char *in, size_t n, size_t chunk, struct events *ev)
{
    struct qmp_framer f;

    memset(ev, 0, sizeof(*ev));
    qmp_framer_init(&f);
    feed_all(&f, in, n, chunk, ev);
    qmp_framer_free(&f);
}

static void
run(const char *in, size_t chunk, struct events *ev)
{
    run_n(in, strlen(in), chunk, ev);
}

static void
test_pipelined(void **state)
{
    static const char in[] =
        "{\"execute\":\"a\"}{\"execute\":\"b\",\"arguments\":{\"x\":[1,{}]}}"
        "  {\"execute\": \"c\", \"id\": \"}{\"}\r\n{'execute': 'd'}"
        "{\"execute\":\n\"e\"}";
    const size_t chunks[] = {1, 2, 3, 7, 4096};

    (void)state;
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        struct events ev;

        run(in, chunks[i], &ev);
        assert_int_equal(ev.values, 5);
        assert_int_equal(ev.errors, 0);
        assert_string_equal(ev.keys[0], "a");
        assert_string_equal(ev.keys[1], "b");
        assert_string_equal(ev.keys[2], "c");
        assert_string_equal(ev.keys[3], "d"); /* QEMU's single quotes */
        assert_string_equal(ev.keys[4], "e");
    }
}

static void
test_scalars_and_errors(void **state)
{
    struct events ev;

    (void)state;
    /* top-level scalars are values (dispatch refuses them); a number
     * ends at the next delimiter */
    run("1 \"s\" true [1]\n", 1, &ev);
    assert_int_equal(ev.values, 4);
    assert_int_equal(ev.errors, 0);
    /* a value that does not parse is one error; the next line is fine */
    run("{\"execute\": }\n{\"execute\":\"ok\"}", 5, &ev);
    assert_int_equal(ev.errors, 1);
    assert_int_equal(ev.values, 1);
    assert_string_equal(ev.keys[0], "ok");
    assert_non_null(strstr(ev.last_err, "JSON parse error"));
    /* a stray closer */
    run("}\n{\"execute\":\"ok\"}", 3, &ev);
    assert_int_equal(ev.errors, 1);
    assert_int_equal(ev.values, 1);
}

/* The QMP spec's way to reset the parser: a control character. */
static void
test_recovery(void **state)
{
    struct events ev;

    (void)state;
    run("{\"execute\": \"half\x1b{\"execute\":\"after\"}", 4, &ev);
    assert_int_equal(ev.errors, 1);
    assert_int_equal(ev.values, 1);
    assert_string_equal(ev.keys[0], "after");
    assert_non_null(strstr(ev.last_err, "\\x1b"));
    run("{\"a\":\xff}{\"execute\":\"x\"}", 1, &ev);
    assert_int_equal(ev.values, 1);
    /* half a request, then lines that cannot continue it: the error
     * shows at the end of the bad line, the next request is served */
    run("{\"execute\": \"q\", \"id\"\nthis is not json\n"
        "{\"execute\":\"z\"}",
        3, &ev);
    assert_int_equal(ev.errors, 1);
    assert_int_equal(ev.values, 1);
    assert_string_equal(ev.keys[0], "z");
    /* a raw newline inside a string is a lexical error too */
    run("{\"execute\":\"a\nb\"}\n{\"execute\":\"y\"}", 1, &ev);
    assert_int_equal(ev.values, 1);
    assert_string_equal(ev.keys[0], "y");
}

static void
test_limits(void **state)
{
    size_t n = 10u << 20;
    char *big = malloc(n + 64);
    struct events ev;

    (void)state;
    assert_non_null(big);
    /* ten megabytes of garbage on one line: one error, then close */
    memset(big, 'a', n);
    run_n(big, n, 4096, &ev);
    assert_int_equal(ev.errors, 1);
    assert_int_equal(ev.closed, 1);
    /* a 10 MB string inside a request: one error, close */
    {
        static const char head[] = "{\"execute\":\"x\",\"arguments\":{\"s\":\"";

        memcpy(big, head, sizeof(head) - 1);
    }
    run_n(big, n, 65536, &ev);
    assert_int_equal(ev.errors, 1);
    assert_int_equal(ev.closed, 1);
    assert_int_equal(ev.values, 0);
    assert_non_null(strstr(ev.last_err, "1048576"));
    /* garbage full of control characters: still one error, then close */
    for (size_t i = 0; i < n; i++) {
        big[i] = (char)(i % 3 == 0 ? 0x01 : 'z');
    }
    run_n(big, n, 4096, &ev);
    assert_int_equal(ev.errors, 1);
    assert_int_equal(ev.closed, 1);
    /* many small requests without newlines are not "one long line" */
    for (size_t i = 0; i + 16 <= n; i += 16) {
        memcpy(big + i, "{\"execute\":\"q\"}", 16);
        big[i + 15] = ' ';
    }
    run_n(big, n / 16 * 16, 4096, &ev);
    assert_int_equal(ev.closed, 0);
    assert_int_equal(ev.errors, 0);
    assert_int_equal(ev.values, (int)(n / 16));
    /* nesting deeper than QEMU's limit */
    memset(big, '[', QMP_MAX_DEPTH + 1);
    big[QMP_MAX_DEPTH + 1] = '\n';
    memcpy(big + QMP_MAX_DEPTH + 2, "{\"execute\":\"ok\"}", 17);
    run(big, 100, &ev);
    assert_int_equal(ev.errors, 1);
    assert_int_equal(ev.values, 1);
    free(big);
}

static void
test_output(void **state)
{
    json_object *o =
        json_tokener_parse("{\"return\": {\"a\": [1, 2, {}], \"b\": [], \"s\": "
                           "\"x/y\\u00e9\\n\\\"\","
                           " \"e\": \"\\ud83d\\ude00\"}, \"id\": \"k\"}");
    size_t len;
    char *line;

    (void)state;
    assert_non_null(o);
    line = qmp_line(o, &len);
    assert_non_null(line);
    assert_string_equal(line, "{\"return\": {\"a\": [1, 2, {}], \"b\": [], "
                              "\"s\": \"x/y\\u00E9\\n\\\"\", \"e\": "
                              "\"\\uD83D\\uDE00\"}, \"id\": \"k\"}\r\n");
    assert_int_equal(len, strlen(line));
    for (size_t i = 0; i < len; i++) {
        assert_true((unsigned char)line[i] < 0x80);
    }
    free(line);
    json_object_put(o);
}

static const char *const colours[] = {"red", "green", "blue", NULL};

static const struct arg_spec item_args[] = {
    {.name = "name", .type = json_type_string, .required = true},
    {.name = "on", .type = json_type_boolean, .required = true},
    {.name = NULL},
};

static const struct arg_spec spec[] = {
    {.name = "uri", .type = json_type_string, .required = true},
    {.name = "n", .type = json_type_int, .max = 10, .unit = " things"},
    {.name = "colour", .type = json_type_string, .values = colours},
    {.name = "items", .type = json_type_array, .sub = item_args},
    {.name = "opts", .type = json_type_object, .sub = item_args},
    {.name = NULL},
};

static void
check(const char *json, const struct arg_spec *sp, const char *want)
{
    json_object *a = json_tokener_parse(json);
    char err[256] = "";
    bool ok = qmp_args_check(a, sp, err, sizeof(err));

    if (want == NULL) {
        assert_true(ok);
    } else {
        assert_false(ok);
        assert_string_equal(err, want);
    }
    json_object_put(a);
}

static void
test_args(void **state)
{
    (void)state;
    check("{\"uri\": \"x\"}", spec, NULL);
    check("{\"uri\": \"x\", \"n\": 10, \"colour\": \"blue\", \"items\": "
          "[{\"name\": \"a\", \"on\": true}], \"opts\": {\"name\": \"b\", "
          "\"on\": false}}",
          spec, NULL);
    check("{}", spec, "Parameter 'uri' is missing");
    check("{\"uri\": \"x\", \"bogus\": 1}", spec,
          "Parameter 'bogus' is unexpected");
    check("{\"uri\": 1}", spec,
          "Invalid parameter type for 'uri', expected: string");
    check("{\"uri\": \"x\", \"n\": 11}", spec,
          "Parameter 'n' expects an integer in the range of 0 to 10 things");
    check("{\"uri\": \"x\", \"n\": -1}", spec,
          "Parameter 'n' expects an integer in the range of 0 to 10 things");
    check("{\"uri\": \"x\", \"n\": 1.5}", spec,
          "Invalid parameter type for 'n', expected: integer");
    check("{\"uri\": \"x\", \"colour\": \"mauve\"}", spec,
          "Parameter 'colour' does not accept value 'mauve' (red, green or "
          "blue)");
    check("{\"uri\": \"x\", \"items\": [{\"name\": \"a\"}]}", spec,
          "Parameter 'items[0].on' is missing");
    check("{\"uri\": \"x\", \"items\": [1]}", spec,
          "Invalid parameter type for 'items[0]', expected: object");
    check("{\"uri\": \"x\", \"opts\": {\"name\": \"a\", \"on\": 1}}", spec,
          "Invalid parameter type for 'opts.on', expected: boolean");
    check("{\"uri\": \"x\", \"opts\": {\"name\": \"a\", \"on\": true, "
          "\"z\": 0}}",
          spec, "Parameter 'opts.z' is unexpected");
    /* a command without arguments takes none */
    check("{\"bogus\": 1}", NULL, "Parameter 'bogus' is unexpected");
    check("{}", NULL, NULL);
    assert_true(qmp_args_check(NULL, spec + 1, (char[8]){0}, 8));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_scalars_and_errors),
        cmocka_unit_test(test_recovery),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_output),
        cmocka_unit_test(test_args),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
