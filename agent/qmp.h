/* SPDX-License-Identifier: MIT */
/*
 * qmp.h - the QMP server's parts, private to agent/qmp*.c: the server core
 * (qmp.c: sockets, connections, dispatch, events), the argument checker
 * (qmp_args.c), the migration parameters (qmp_params.c) and the commands
 * (qmp_cmds.c).
 */
#ifndef VMIG_AGENT_QMP_H
#define VMIG_AGENT_QMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <json-c/json.h>
#include "agent.h"

/*
 * One argument of a command (or one member of an object argument), as the
 * QAPI schema would declare it.  A command's arguments are a table of
 * these ending in {NULL}; dispatch checks a request against it before the
 * command runs, so a command never sees a missing, unknown or mistyped
 * argument, an integer out of range or a string outside its values.
 */
struct arg_spec {
    const char *name;
    json_type type; /* json_type_int, _boolean, _string, _object, _array */
    bool required;
    int64_t max;      /* integers: 0..max; 0 means INT64_MAX */
    const char *unit; /* integers: for the range message */
    /* strings (or arrays of strings): the accepted values, or NULL */
    const char *const *values;
    /* objects: their members; arrays: the members of each element (an
     * object) */
    const struct arg_spec *sub;
    /* migration parameters only (qmp_params.c): extra validation, e.g.
     * that a file exists; store a checked value; read it back */
    int (*check)(json_object *v, char *err, size_t len);
    void (*set)(struct mig_params *p, json_object *v);
    json_object *(*get)(const struct mig_params *p);
};

/*
 * Check @args (a JSON object or NULL for none) against @spec: QEMU's
 * messages ("Parameter 'x' is missing", "Parameter 'x' is unexpected",
 * "Invalid parameter type for 'x', expected: integer", ...).  Nested
 * members are named as QEMU names them ("capabilities[0].state").
 * Return: true when @args fits; false with @err set otherwise.
 */
bool qmp_args_check(json_object *args, const struct arg_spec *spec, char *err,
                    size_t errlen);
/* The value of string argument @name, or NULL when absent. */
const char *qmp_arg_str(json_object *args, const char *name);
/* The value of boolean argument @name, or @dflt when absent. */
bool qmp_arg_bool(json_object *args, const char *name, bool dflt);

/* qmp_params.c: the migration parameters (migrate-set-parameters). */
extern const struct arg_spec qmp_param_args[];
/* Apply already-checked parameters @args on top of @p (nothing is read
 * from elsewhere: the caller loads @p and commits it). */
void qmp_params_stage(struct mig_params *p, json_object *args);
/* Every parameter's current value, as query-migrate-parameters shows it. */
json_object *qmp_params_query(const struct mig_params *p);

/* qmp_wire.c: QMP's byte stream (see the file's comment) */
#define QMP_MAX_REQUEST (1u << 20) /* bytes of one request */
#define QMP_MAX_DEPTH 1024         /* nesting of one request, as QEMU */

/* One value in QEMU's layout, then CRLF; *len (optional) its length.
 * Return: a string the caller frees, NULL when out of memory. */
char *qmp_line(json_object *o, size_t *len);

struct qmp_framer {
    int state;
    unsigned int depth;
    char quote;
    bool esc;
    char *buf; /* the value being collected */
    size_t len;
    size_t cap;
    json_tokener *tok; /* parses it as it comes */
    size_t fed;        /* bytes of buf given to tok */
    size_t run;        /* bytes since the last newline or complete value */
    bool err_sent;     /* an error was reported within this run */
};

enum qmp_frame_kind {
    QMP_FRAME_MORE,  /* everything given was consumed: feed more */
    QMP_FRAME_VALUE, /* a complete JSON value: .value (caller owns) */
    QMP_FRAME_ERROR, /* report .msg (GenericError), carry on */
    QMP_FRAME_CLOSE, /* over the limit: report .msg if set, then close */
};

struct qmp_frame {
    enum qmp_frame_kind kind;
    json_object *value;
    char msg[160];
};

void qmp_framer_init(struct qmp_framer *f);
void qmp_framer_free(struct qmp_framer *f);
/* Consume @p[0..@n) up to the first event (@out; QMP_FRAME_MORE when
 * none).  Return: bytes consumed; call again with the rest. */
size_t qmp_framer_feed(struct qmp_framer *f, const char *p, size_t n,
                       struct qmp_frame *out);

struct qmp_server;

/* What a command gets: the server, the VM, its checked arguments; on
 * failure it returns NULL with @err (and @cls when not GenericError). */
struct cmd_ctx {
    struct qmp_server *s;
    struct agent_vm *vm;
    json_object *args;
    char err[512];
    const char *cls;
    bool quit; /* the agent quits after this reply */
};

typedef json_object *cmd_fn(struct cmd_ctx *x);

enum {
    CMD_ALLOW_OOB = 1u << 0, /* may run out of band (exec-oob) */
};

struct cmd_desc {
    const char *name;
    cmd_fn *fn;
    const struct arg_spec *args; /* NULL: takes no arguments */
    unsigned int flags;
};

/* qmp_cmds.c: the command table */
const struct cmd_desc *qmp_cmd_find(const char *name);
size_t qmp_cmd_count(void);
const struct cmd_desc *qmp_cmd_at(size_t i);
/* query-version's answer, also the greeting's "version". */
json_object *qmp_version(void);

/* qmp_sock.c: the socket on disk and its peers */
/* Check the directory, refuse a live socket, replace a stale one
 * (*stale), create a 0600 listening socket: *fd.  Return: 0 or -errno
 * with @err saying why. */
int qmp_sock_listen(const char *path, int *fd, bool *stale, char *err,
                    size_t errlen);
/* The peer of @fd (*cr); -EPERM when it is neither our uid nor root. */
int qmp_sock_peer(int fd, struct ucred *cr);

#endif /* VMIG_AGENT_QMP_H */
