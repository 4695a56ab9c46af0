/* SPDX-License-Identifier: MIT */
/*
 * cmd_agent.c - `vmig run` and `vmig receive`: the agent itself, a VM and
 * its QMP server, serving until quit or a signal.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cmd.h"

extern volatile sig_atomic_t agent_signalled;

/* ------------------------------------------------------------ helpers */

static void
on_signal(int sig)
{
    (void)sig;
    agent_signalled = 1;
}

static void
install_signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal};

    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* ------------------------------------------------------------ agents */

/* A source's credentials load now, not at the first migration. */
static int
tls_ready(struct agent_vm *vm, vmig_ctx_t *ctx, char *err, size_t errlen)
{
    struct mig_params p;
    struct vmig_tls *t;
    int ret;

    vm_params_get(vm, &p);
    ret = agent_tls_make(&p.tls, ctx, VMIG_TLS_CLIENT, "localhost", &t, err,
                         errlen);
    vmig_tls_free(t);
    return ret;
}

static int
serve(struct opts *o, bool incoming)
{
    vmig_ctx_t *ctx;
    struct agent_vm vm;
    struct qmp_server *s = NULL;
    char err[600];
    int ret, rc = EXIT_FAIL;

    install_signals();
    if (vmig_ctx_new(o->vm.name, vmig_log_stderr, NULL, &ctx) < 0) {
        return EXIT_FAIL;
    }
    vmig_ctx_set_level(ctx, VMIG_LOG_NOTICE + o->verbose);
    o->vm.program = !incoming;
    ret = vm_create(&vm, &o->vm, ctx);
    if (ret < 0) {
        fprintf(stderr, "vmig: cannot create the VM: %s\n", strerror(-ret));
        goto out;
    }
    ret = qmp_server_new(&vm, o->qmp, &s);
    if (ret < 0) {
        fprintf(stderr, "vmig: cannot serve QMP on %s: %s\n", o->qmp,
                strerror(-ret));
        goto out;
    }
    vm.emit = qmp_emit;
    vm.emit_opaque = s;
    if (o->params != NULL &&
        qmp_params_apply(&vm, o->params, err, sizeof(err)) < 0) {
        fprintf(stderr, "vmig: %s\n", err);
        goto out;
    }
    if (!incoming && tls_ready(&vm, ctx, err, sizeof(err)) < 0) {
        fprintf(stderr, "vmig: %s\n", err);
        goto out;
    }
    if (incoming && o->listen != NULL) {
        char uri[160];

        snprintf(uri, sizeof(uri), "tcp:%s", o->listen);
        if (vm_start_incoming(&vm, uri, err, sizeof(err)) < 0) {
            fprintf(stderr, "vmig: %s\n", err);
            goto out;
        }
    }
    vmig_log(ctx, VMIG_LOG_NOTICE, "%s: QMP on %s%s%s",
             incoming ? "destination" : "VM running", o->qmp,
             incoming && o->listen ? ", migration on " : "",
             incoming && o->listen ? o->listen : "");
    ret = qmp_server_run(s);
    rc = ret < 0 ? EXIT_FAIL : EXIT_OK;
out:
    vm.emit = NULL;
    vm_destroy(&vm);
    qmp_server_free(s);
    vmig_ctx_free(ctx);
    return rc;
}

int
cmd_run(struct opts *o)
{
    return serve(o, false);
}

int
cmd_receive(struct opts *o)
{
    return serve(o, true);
}
