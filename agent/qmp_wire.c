/* SPDX-License-Identifier: MIT */
/*
 * qmp_wire.c - QMP's byte stream both ways (QEMU docs/interop/qmp-spec).
 *
 * In: a framer cuts the client's bytes into JSON values the way QEMU's
 * JSON streamer does, before any parsing: it follows braces, brackets and
 * strings (double- or single-quoted, with escapes), so requests need no
 * newline between them and a value may span lines.  A lexical error (an
 * ASCII control character other than tab, CR and LF, or the bytes 0xFE
 * and 0xFF, which are never valid UTF-8) abandons the value being
 * collected; the framer then skips to a structural character or a
 * control character, as QEMU's lexer recovers, which is how a client
 * forces the parser back into a known state.
 *
 * Limits against hostile input: a request (one JSON value) may not exceed
 * QMP_MAX_REQUEST bytes, nor anything else without a newline or a
 * complete value in between; past it the framer reports one error and
 * asks to close.  Within one such run at most one error is reported, so
 * ten megabytes of garbage earn one error reply, not thousands.
 *
 * Out: values are written as QEMU writes them: ": " after keys, ", "
 * between members, ASCII only (other characters as \uXXXX escapes, '/'
 * not escaped), each line ending in CRLF.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "qmp.h"

/* ------------------------------------------------------------ output */

struct sbuf {
    char *p;
    size_t len;
    size_t cap;
    bool oom;
};

static void
sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->cap + n + 1) * 2;
        char *np = realloc(b->p, cap);

        if (np == NULL) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void
sb_str(struct sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void
sb_u(struct sbuf *b, unsigned int cp)
{
    char e[8];

    snprintf(e, sizeof(e), "\\u%04X", cp & 0xffffu);
    sb_put(b, e, 6);
}

/*
 * Decode one UTF-8 sequence at @s (@n bytes left): the code point, or
 * 0xFFFD for an invalid or overlong sequence (one byte consumed then).
 */
static unsigned int
utf8_next(const unsigned char *s, size_t n, size_t *used)
{
    static const unsigned int min[4] = {0, 0x80, 0x800, 0x10000};
    unsigned int cp, extra;

    if (s[0] < 0x80) {
        *used = 1;
        return s[0];
    }
    if ((s[0] & 0xe0) == 0xc0) {
        extra = 1;
        cp = s[0] & 0x1fu;
    } else if ((s[0] & 0xf0) == 0xe0) {
        extra = 2;
        cp = s[0] & 0x0fu;
    } else if ((s[0] & 0xf8) == 0xf0) {
        extra = 3;
        cp = s[0] & 0x07u;
    } else {
        *used = 1;
        return 0xfffd;
    }
    if (n <= extra) {
        *used = 1;
        return 0xfffd;
    }
    for (unsigned int i = 1; i <= extra; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *used = 1;
            return 0xfffd;
        }
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if (cp < min[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        *used = 1;
        return 0xfffd;
    }
    *used = extra + 1;
    return cp;
}

/* A JSON string as QEMU writes one: ASCII only. */
static void
sb_string(struct sbuf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    sb_put(b, "\"", 1);
    while (i < n) {
        size_t used;
        unsigned int cp = utf8_next(s + i, n - i, &used);

        i += used;
        switch (cp) {
        case '"':
            sb_put(b, "\\\"", 2);
            continue;
        case '\\':
            sb_put(b, "\\\\", 2);
            continue;
        case '\b':
            sb_put(b, "\\b", 2);
            continue;
        case '\f':
            sb_put(b, "\\f", 2);
            continue;
        case '\n':
            sb_put(b, "\\n", 2);
            continue;
        case '\r':
            sb_put(b, "\\r", 2);
            continue;
        case '\t':
            sb_put(b, "\\t", 2);
            continue;
        default:
            break;
        }
        if (cp >= 0x20 && cp < 0x7f) {
            char c = (char)cp;

            sb_put(b, &c, 1);
        } else if (cp < 0x10000) {
            sb_u(b, cp);
        } else {
            cp -= 0x10000;
            sb_u(b, 0xd800 + (cp >> 10));
            sb_u(b, 0xdc00 + (cp & 0x3ff));
        }
    }
    sb_put(b, "\"", 1);
}

static void
sb_json(struct sbuf *b, json_object *o)
{
    bool first = true;

    switch (json_object_get_type(o)) {
    case json_type_object:
        sb_str(b, "{");
        json_object_object_foreach(o, key, val)
        {
            sb_str(b, first ? "" : ", ");
            sb_string(b, key, strlen(key));
            sb_str(b, ": ");
            sb_json(b, val);
            first = false;
        }
        sb_str(b, "}");
        break;
    case json_type_array:
        sb_str(b, "[");
        for (size_t i = 0; i < json_object_array_length(o); i++) {
            sb_str(b, i == 0 ? "" : ", ");
            sb_json(b, json_object_array_get_idx(o, i));
        }
        sb_str(b, "]");
        break;
    case json_type_string:
        sb_string(b, json_object_get_string(o),
                  (size_t)json_object_get_string_len(o));
        break;
    default:
        sb_str(b, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        break;
    }
}

char *
qmp_line(json_object *o, size_t *len)
{
    struct sbuf b = {0};

    sb_json(&b, o);
    sb_str(&b, "\r\n");
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    if (len != NULL) {
        *len = b.len;
    }
    return b.p;
}

/* ------------------------------------------------------------ input */

enum {
    F_OUT = 0, /* between values */
    F_VALUE,   /* inside an object or array */
    F_STRING,  /* inside a string (of a value, or a top-level one) */
    F_SCALAR,  /* a top-level number, keyword or stray token */
    F_RECOVER, /* after a lexical error: skipping to a sync point */
};

void
qmp_framer_init(struct qmp_framer *f)
{
    memset(f, 0, sizeof(*f));
}

void
qmp_framer_free(struct qmp_framer *f)
{
    if (f->tok != NULL) {
        json_tokener_free(f->tok);
    }
    free(f->buf);
    memset(f, 0, sizeof(*f));
}

static bool
is_structural(unsigned char c)
{
    return c == '{' || c == '}' || c == '[' || c == ']' || c == ':' || c == ',';
}

/* Bytes that can never appear in QMP input outside a string's escapes. */
static bool
is_lexical_error(unsigned char c)
{
    return (c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0xfe ||
           c == 0xff;
}

static int
buf_add(struct qmp_framer *f, unsigned char c)
{
    if (f->len + 2 > f->cap) {
        size_t cap = f->cap != 0 ? f->cap * 2 : 256;
        char *np;

        if (cap > QMP_MAX_REQUEST + 2) {
            cap = QMP_MAX_REQUEST + 2;
        }
        if (f->len + 2 > cap) {
            return -E2BIG;
        }
        np = realloc(f->buf, cap);
        if (np == NULL) {
            return -ENOMEM;
        }
        f->buf = np;
        f->cap = cap;
    }
    f->buf[f->len++] = (char)c;
    return 0;
}

/* Report an error unless one was reported in this run already. */
static bool
report(struct qmp_framer *f, struct qmp_frame *out, const char *msg,
       unsigned char c)
{
    bool first = !f->err_sent;

    f->err_sent = true;
    if (!first) {
        return false;
    }
    out->kind = QMP_FRAME_ERROR;
    if (c != 0) {
        snprintf(out->msg, sizeof(out->msg), "JSON parse error, %s '\\x%02x'",
                 msg, c);
    } else {
        snprintf(out->msg, sizeof(out->msg), "JSON parse error, %s", msg);
    }
    return true;
}

/* Forget the value being collected. */
static void
drop(struct qmp_framer *f)
{
    f->len = 0;
    f->fed = 0;
    f->depth = 0;
    if (f->tok != NULL) {
        json_tokener_reset(f->tok);
    }
}

/*
 * Parse what was collected since the last call, incrementally, so a
 * syntax error shows at the end of the line it is on instead of when the
 * braces finally balance (a half-sent request followed by other lines
 * would otherwise swallow them all).  @end: the value is complete.
 * Return: json_tokener_continue (fine so far), _success (*o set), or the
 * error.
 */
static enum json_tokener_error
advance(struct qmp_framer *f, bool end, json_object **o)
{
    enum json_tokener_error jerr;

    *o = NULL;
    if (f->tok == NULL) {
        f->tok = json_tokener_new_ex(QMP_MAX_DEPTH + 1);
        if (f->tok == NULL) {
            return json_tokener_error_size;
        }
#ifdef JSON_TOKENER_VALIDATE_UTF8
        json_tokener_set_flags(f->tok, JSON_TOKENER_VALIDATE_UTF8);
#endif
    }
    f->buf[f->len] = '\0';
    /* at the end the NUL goes too: it ends a top-level number */
    *o = json_tokener_parse_ex(f->tok, f->buf + f->fed,
                               (int)(f->len - f->fed + (end ? 1 : 0)));
    f->fed = f->len;
    jerr = json_tokener_get_error(f->tok);
    if (end && jerr == json_tokener_continue) {
        jerr = json_tokener_error_parse_eof;
    }
    if (jerr != json_tokener_success) {
        json_object_put(*o);
        *o = NULL;
    }
    return jerr;
}

/* The collected value is complete: parse it. */
static bool
finish(struct qmp_framer *f, struct qmp_frame *out)
{
    json_object *o;
    enum json_tokener_error jerr = advance(f, true, &o);
    bool oom = f->tok == NULL;

    drop(f);
    f->state = F_OUT;
    if (jerr != json_tokener_success) {
        return report(f, out,
                      oom ? "out of memory" : json_tokener_error_desc(jerr), 0);
    }
    f->run = 0;
    f->err_sent = false;
    out->kind = QMP_FRAME_VALUE;
    out->value = o;
    return true;
}

/* A lexical error inside or outside a value: drop it, recover. */
static bool
lexical(struct qmp_framer *f, struct qmp_frame *out, unsigned char c)
{
    drop(f);
    f->state = F_RECOVER;
    return report(f, out, "stray", c);
}

size_t
qmp_framer_feed(struct qmp_framer *f, const char *p, size_t n,
                struct qmp_frame *out)
{
    size_t i = 0;

    out->kind = QMP_FRAME_MORE;
    out->value = NULL;
    out->msg[0] = '\0';
    while (i < n) {
        unsigned char c = (unsigned char)p[i];
        bool ev = false;

        if (++f->run > QMP_MAX_REQUEST) {
            out->kind = QMP_FRAME_CLOSE;
            if (!f->err_sent) {
                snprintf(out->msg, sizeof(out->msg),
                         "Request too long: more than %u bytes without a "
                         "complete JSON value; closing the connection",
                         QMP_MAX_REQUEST);
            }
            f->err_sent = true;
            return i + 1;
        }
        switch (f->state) {
        case F_RECOVER:
            if (is_lexical_error(c) || c == '\r' || c == '\n') {
                f->state = F_OUT;
                if (c == '\n') {
                    f->run = 0;
                    f->err_sent = false;
                }
                break;
            }
            if (is_structural(c)) {
                f->state = F_OUT;
                f->run--;
                continue; /* look again at it from F_OUT */
            }
            break;
        case F_OUT:
            if (c == '\n') {
                f->run = 0;
                f->err_sent = false;
                break;
            }
            if (c == ' ' || c == '\t' || c == '\r') {
                break;
            }
            if (is_lexical_error(c)) {
                ev = lexical(f, out, c);
                break;
            }
            if (c == '}' || c == ']') {
                ev = report(f, out, "unexpected", c);
                break;
            }
            if (buf_add(f, c) < 0) {
                ev = lexical(f, out, c);
                break;
            }
            if (c == '{' || c == '[') {
                f->depth = 1;
                f->state = F_VALUE;
            } else if (c == '"' || c == '\'') {
                f->depth = 0;
                f->quote = (char)c;
                f->esc = false;
                f->state = F_STRING;
            } else if (c == ':' || c == ',') {
                ev = finish(f, out);
            } else {
                f->state = F_SCALAR;
            }
            break;
        case F_SCALAR:
            if (c == ' ' || c == '\t' || c == '\r' || c == '\n' ||
                is_structural(c) || c == '"' || c == '\'' ||
                is_lexical_error(c)) {
                /* the token ended before c: c is looked at again */
                f->run--;
                if (finish(f, out)) {
                    return i;
                }
                continue; /* its error was suppressed */
            }
            if (buf_add(f, c) < 0) {
                ev = lexical(f, out, c);
            }
            break;
        case F_STRING:
            if (c < 0x20 || c == 0xfe || c == 0xff || buf_add(f, c) < 0) {
                ev = lexical(f, out, c);
                break;
            }
            if (f->esc) {
                f->esc = false;
            } else if (c == '\\') {
                f->esc = true;
            } else if (c == (unsigned char)f->quote) {
                f->state = f->depth > 0 ? F_VALUE : F_OUT;
                if (f->depth == 0) {
                    ev = finish(f, out);
                }
            }
            break;
        case F_VALUE:
            if (is_lexical_error(c) || buf_add(f, c) < 0) {
                ev = lexical(f, out, c);
                break;
            }
            if (c == '"' || c == '\'') {
                f->quote = (char)c;
                f->esc = false;
                f->state = F_STRING;
            } else if (c == '{' || c == '[') {
                if (++f->depth > QMP_MAX_DEPTH) {
                    drop(f);
                    f->state = F_RECOVER;
                    ev = report(f, out, "nesting too deep", 0);
                }
            } else if (c == '}' || c == ']') {
                if (--f->depth == 0) {
                    ev = finish(f, out);
                }
            } else if (c == '\n') {
                json_object *o;
                enum json_tokener_error e = advance(f, false, &o);

                if (e != json_tokener_continue) {
                    /* a line that cannot be part of a request: report
                     * it, start afresh on the next line */
                    json_object_put(o);
                    ev = report(f, out,
                                f->tok == NULL ? "out of memory"
                                               : json_tokener_error_desc(e),
                                0);
                    drop(f);
                    f->state = F_OUT;
                    f->run = 0;
                    f->err_sent = false;
                }
            }
            break;
        default:
            f->state = F_OUT;
            break;
        }
        i++;
        if (ev) {
            return i;
        }
    }
    return i;
}
