/* SPDX-License-Identifier: MIT */
/*
 * cmd.h - what main.c shares with the subcommands (cmd_*.c): the parsed
 * command line and each subcommand's entry point.  Private to the
 * agent program.
 */
#ifndef VMIG_AGENT_CMD_H
#define VMIG_AGENT_CMD_H

#include <stdbool.h>
#include <json-c/json.h>
#include "agent.h"

/* The parsed command line. */
struct opts {
    const char *qmp;
    const char *to;
    const char *listen;
    const char *setup_dir;              /* tls-setup DIR */
    struct vmig_tls_setup_params setup; /* tls-setup options */
    bool tls_given;                     /* a --tls-* option was given */
    bool insecure;
    bool destination_gone; /* recover --destination-gone */
    struct vm_opts vm;
    json_object *params; /* migrate-set-parameters arguments */
    bool json;
    bool ram_given;
    bool acc_given;
    int verbose;
};

/* Each returns an exit code: EXIT_OK, EXIT_FAIL or EXIT_USAGE. */
/* cmd_agent.c */
int cmd_run(struct opts *o);
int cmd_receive(struct opts *o);

/* cmd_client.c */
int cmd_migrate(struct opts *o);
int cmd_check(struct opts *o);
int cmd_status(struct opts *o);
int cmd_cancel(struct opts *o);
int cmd_recover(struct opts *o);

/* cmd_tls.c */
int cmd_tls_setup(struct opts *o);

/* cmd_demo.c */
int cmd_demo(struct opts *o);

#endif
