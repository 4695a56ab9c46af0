/* SPDX-License-Identifier: MIT */
/*
 * cmd_client.c - the client commands `vmig migrate`, `check`, `status` and
 * `cancel`: each talks QMP to a running agent.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cmd.h"

/* ------------------------------------------------------------ helpers */

static int
connect_agent(const struct opts *o, const char *cmd, bool oob,
              struct qmp_client **c)
{
    char err[320];
    int ret = qmpc_open(o->qmp, 30000, oob, c, err, sizeof(err));

    if (ret < 0) {
        fprintf(stderr, "vmig %s: cannot reach the agent: %s\n", cmd, err);
    }
    return ret;
}

static void
print_json(json_object *o)
{
    printf("%s\n", json_object_to_json_string_ext(
                       o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED));
}

/* ------------------------------------------------------------ clients */

/*
 * One `migrate` carries the migration options (x-vmig-parameters), so the
 * agent applies them only if the migration starts: a second `vmig
 * migrate` while one runs is refused and changes nothing.
 */
static int
do_migrate(struct qmp_client *c, const struct opts *o)
{
    json_object *args = json_object_new_object(), *ret;
    char uri[160], err[512];

    snprintf(uri, sizeof(uri), "tcp:%s", o->to);
    json_object_object_add(args, "uri", json_object_new_string(uri));
    if (o->params != NULL) {
        json_object_object_add(args, "x-vmig-parameters",
                               json_object_get(o->params));
    }
    if (qmpc_exec(c, "migrate", args, &ret, err, sizeof(err)) < 0) {
        fprintf(stderr, "vmig: migrate: %s\n", err);
        return EXIT_FAIL;
    }
    json_object_put(ret);
    return cmd_migrate_follow(c, isatty(STDERR_FILENO) && !o->json,
                              o->json || !isatty(STDOUT_FILENO));
}

int
cmd_migrate(struct opts *o)
{
    struct qmp_client *c;
    int rc;

    if (o->to == NULL) {
        fprintf(stderr, "vmig migrate: --to HOST:PORT is required\n");
        return EXIT_USAGE;
    }
    if (connect_agent(o, "migrate", false, &c) < 0) {
        return EXIT_FAIL;
    }
    rc = do_migrate(c, o);
    qmpc_close(c);
    return rc;
}

int
cmd_check(struct opts *o)
{
    struct qmp_client *c;
    json_object *args, *ret, *v, *devs;
    char uri[160], err[512];
    int rc = EXIT_FAIL;

    if (o->to == NULL) {
        fprintf(stderr, "vmig check: --to HOST:PORT is required\n");
        return EXIT_USAGE;
    }
    if (connect_agent(o, "check", false, &c) < 0) {
        return EXIT_FAIL;
    }
    if (o->params != NULL) {
        /* --tls-* and other migration options: the agent's parameters */
        if (qmpc_exec(c, "migrate-set-parameters", json_object_get(o->params),
                      &ret, err, sizeof(err)) < 0) {
            fprintf(stderr, "vmig check: %s\n", err);
            qmpc_close(c);
            return EXIT_FAIL;
        }
        json_object_put(ret);
    }
    snprintf(uri, sizeof(uri), "tcp:%s", o->to);
    args = json_object_new_object();
    json_object_object_add(args, "uri", json_object_new_string(uri));
    if (qmpc_exec(c, "x-vmig-check-compat", args, &ret, err, sizeof(err)) < 0) {
        fprintf(stderr, "vmig check: %s\n", err);
        qmpc_close(c);
        return EXIT_FAIL;
    }
    if (o->json) {
        print_json(ret);
    } else if (json_object_object_get_ex(ret, "devices", &devs)) {
        for (size_t i = 0; i < json_object_array_length(devs); i++) {
            json_object *d = json_object_array_get_idx(devs, i), *n, *ok, *r;

            json_object_object_get_ex(d, "name", &n);
            json_object_object_get_ex(d, "compatible", &ok);
            printf("%-12s %s%s%s\n", json_object_get_string(n),
                   json_object_get_boolean(ok) ? "compatible" : "INCOMPATIBLE",
                   json_object_object_get_ex(d, "reason", &r) ? ": " : "",
                   json_object_object_get_ex(d, "reason", &r)
                       ? json_object_get_string(r)
                       : "");
        }
    }
    if (json_object_object_get_ex(ret, "compatible", &v) &&
        json_object_get_boolean(v)) {
        rc = EXIT_OK;
        if (!o->json) {
            printf("verdict: every device can migrate to %s\n", o->to);
        }
    } else if (!o->json) {
        printf("verdict: migration to %s would be refused: %s\n", o->to,
               json_object_object_get_ex(ret, "reason", &v)
                   ? json_object_get_string(v)
                   : "?");
    }
    json_object_put(ret);
    qmpc_close(c);
    return rc;
}

int
cmd_status(struct opts *o)
{
    struct qmp_client *c;
    json_object *st, *mig, *devs, *v;
    char err[256];

    /* out of band: answered even while the monitor is busy */
    if (connect_agent(o, "status", true, &c) < 0) {
        return EXIT_FAIL;
    }
    if (qmpc_exec_oob(c, "query-status", NULL, &st, err, sizeof(err)) < 0 ||
        qmpc_exec_oob(c, "query-migrate", NULL, &mig, err, sizeof(err)) < 0) {
        fprintf(stderr, "vmig status: %s\n", err);
        qmpc_close(c);
        return EXIT_FAIL;
    }
    /* in band: the devices (a failed one shows with its reason); a
     * monitor busy with a long command (a check against a silent peer)
     * answers it late, so status says so after 5 s instead of waiting */
    qmpc_set_timeout(c, 5000);
    if (qmpc_exec(c, "x-vmig-query-devices", NULL, &devs, err, sizeof(err)) <
        0) {
        devs = NULL;
    }
    if (o->json || !isatty(STDOUT_FILENO)) {
        json_object *all = json_object_new_object();

        json_object_object_add(all, "status", json_object_get(st));
        json_object_object_add(all, "migration", json_object_get(mig));
        json_object_object_add(all, "devices", json_object_get(devs));
        printf("%s\n",
               json_object_to_json_string_ext(all, JSON_C_TO_STRING_PLAIN));
        json_object_put(all);
    } else {
        json_object_object_get_ex(st, "status", &v);
        printf("VM: %s\n", json_object_get_string(v));
        if (json_object_object_get_ex(mig, "status", &v)) {
            printf("migration: %s\n", json_object_get_string(v));
            print_json(mig);
        } else {
            printf("migration: none\n");
        }
        if (devs == NULL) {
            printf("devices: not known (%s)\n", err);
        }
        for (size_t i = 0; devs != NULL && i < json_object_array_length(devs);
             i++) {
            json_object *d = json_object_array_get_idx(devs, i), *n, *s, *e;

            json_object_object_get_ex(d, "name", &n);
            json_object_object_get_ex(d, "state", &s);
            printf("device %s: %s%s%s\n", json_object_get_string(n),
                   json_object_get_string(s),
                   json_object_object_get_ex(d, "error", &e) ? ": " : "",
                   json_object_object_get_ex(d, "error", &e)
                       ? json_object_get_string(e)
                       : "");
        }
    }
    json_object_put(devs);
    json_object_put(st);
    json_object_put(mig);
    qmpc_close(c);
    return EXIT_OK;
}

static bool
running_status(const char *st)
{
    return strcmp(st, "setup") == 0 || strcmp(st, "active") == 0 ||
           strcmp(st, "cancelling") == 0 || strcmp(st, "device") == 0 ||
           strcmp(st, "pre-switchover") == 0;
}

static const char *
mig_status(struct qmp_client *c, char *err, size_t len, json_object **mig)
{
    json_object *v;

    /* out of band: a busy monitor does not hold up a cancel */
    if (qmpc_exec_oob(c, "query-migrate", NULL, mig, err, len) < 0) {
        return NULL;
    }
    return json_object_object_get_ex(*mig, "status", &v)
               ? json_object_get_string(v)
               : "none";
}

/*
 * Cancel out of band (a busy monitor cannot delay it), then follow the
 * migration to its end: it may still complete if the cancel came too
 * late.  With no migration running, say so: there is nothing to cancel.
 */
int
cmd_cancel(struct opts *o)
{
    struct qmp_client *c;
    json_object *ret = NULL, *mig = NULL;
    const char *st;
    char err[320];
    int rc = EXIT_FAIL;

    if (qmpc_open(o->qmp, 30000, true, &c, err, sizeof(err)) < 0) {
        struct stat sb;

        if (stat(o->qmp, &sb) < 0 && errno == ENOENT) {
            fprintf(stderr,
                    "vmig cancel: nothing to cancel: no agent at %s (a "
                    "source agent exits once its VM has migrated away)\n",
                    o->qmp);
        } else {
            fprintf(stderr, "vmig cancel: cannot reach the agent: %s\n", err);
        }
        return EXIT_FAIL;
    }
    st = mig_status(c, err, sizeof(err), &mig);
    if (st == NULL) {
        fprintf(stderr, "vmig cancel: %s\n", err);
        goto out;
    }
    if (!running_status(st)) {
        if (strcmp(st, "none") == 0) {
            fprintf(stderr, "vmig cancel: nothing to cancel: no migration "
                            "has run\n");
        } else {
            fprintf(stderr,
                    "vmig cancel: nothing to cancel: no migration is "
                    "running (the last one: %s)\n",
                    st);
        }
        goto out;
    }
    if (qmpc_exec_oob(c, "migrate_cancel", NULL, &ret, err, sizeof(err)) < 0) {
        fprintf(stderr, "vmig cancel: %s\n", err);
        goto out;
    }
    /* a cancel after GO is only a wish: the source may lose the answer
     * to GO and ask the destination again ("recovering"), and the wish
     * applies only if GO turns out not to have arrived; follow that too
     * (the recovery ends within x-vmig-recover-timeout) */
    for (int i = 0;
         i < 36000 && (running_status(st) || strcmp(st, "recovering") == 0);
         i++) {
        json_object_put(mig);
        mig = NULL;
        if (qmpc_poll_events(c, 50) < 0 ||
            (st = mig_status(c, err, sizeof(err), &mig)) == NULL) {
            fprintf(stderr, "vmig cancel: %s\n", err);
            goto out;
        }
    }
    if (strcmp(st, "cancelled") == 0 || strcmp(st, "failed") == 0) {
        printf("migration %s; the VM keeps running here\n", st);
        rc = EXIT_OK;
    } else if (strcmp(st, "completed") == 0) {
        fprintf(stderr, "vmig cancel: too late: the migration completed; "
                        "the VM runs on the destination\n");
    } else if (strcmp(st, "postmigrate-unknown") == 0) {
        json_object *v;

        fprintf(stderr, "vmig cancel: %s\n",
                json_object_object_get_ex(mig, "error-desc", &v)
                    ? json_object_get_string(v)
                    : "the outcome is unknown; 'vmig recover' asks the "
                      "destination again");
    } else {
        fprintf(stderr, "vmig cancel: the migration is still %s\n", st);
    }
out:
    json_object_put(ret);
    json_object_put(mig);
    qmpc_close(c);
    return rc;
}

/*
 * The last migration's outcome is unknown (postmigrate-unknown): ask the
 * destination again and follow it to its end, or with --destination-gone
 * resume the VM here.
 */
int
cmd_recover(struct opts *o)
{
    struct qmp_client *c;
    json_object *args = json_object_new_object(), *ret = NULL, *mig = NULL;
    const char *st;
    char err[320];
    int rc = EXIT_FAIL;

    if (qmpc_open(o->qmp, 30000, true, &c, err, sizeof(err)) < 0) {
        fprintf(stderr, "vmig recover: cannot reach the agent: %s\n", err);
        json_object_put(args);
        return EXIT_FAIL;
    }
    json_object_object_add(args, "destination-gone",
                           json_object_new_boolean(o->destination_gone));
    if (qmpc_exec(c, "x-vmig-migrate-recover", args, &ret, err, sizeof(err)) <
        0) {
        fprintf(stderr, "vmig recover: %s\n", err);
        goto out;
    }
    /* the agent shows "recovering" before it replies, so
     * "postmigrate-unknown" from here on is this recovery's end */
    st = "recovering";
    for (int i = 0; i < 36000 && st != NULL && strcmp(st, "recovering") == 0;
         i++) {
        json_object_put(mig);
        mig = NULL;
        if (qmpc_poll_events(c, 50) < 0) {
            break;
        }
        st = mig_status(c, err, sizeof(err), &mig);
    }
    if (st == NULL) {
        fprintf(stderr, "vmig recover: %s\n", err);
    } else if (strcmp(st, "completed") == 0) {
        printf("recovered: the VM runs on the destination\n");
        rc = EXIT_OK;
    } else if (strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0) {
        printf("recovered: the VM runs here (%s)\n", st);
        rc = EXIT_OK;
    } else {
        json_object *v;

        fprintf(stderr, "vmig recover: still %s: %s\n", st,
                json_object_object_get_ex(mig, "error-desc", &v)
                    ? json_object_get_string(v)
                    : "the destination could not be asked");
    }
out:
    json_object_put(ret);
    json_object_put(mig);
    qmpc_close(c);
    return rc;
}
