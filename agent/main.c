/* SPDX-License-Identifier: MIT */
/*
 * main.c - the `vmig` program: a subcommand table (run, receive, migrate,
 * check, status, cancel, demo, conform), option parsing and help.
 * `conform` has its own options (tools/conform/cli.c); the other
 * subcommands are in cmd_*.c (cmd.h).
 *
 * Exit codes, for every command: 0 success, 1 failure (the operation was
 * tried and failed, or found an incompatibility or a discrepancy), 2 usage
 * error (bad command line).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vmig/version.h>
#include "cmd.h"
#include "conform.h"

typedef int cmd_main_fn(struct opts *o);

struct subcmd {
    const char *name;
    const char *args;
    const char *summary;
    const char *help;
    cmd_main_fn *fn;
};

static const char vm_help[] =
    "  --ram SIZE            guest RAM (default 64M; K, M, G suffixes)\n"
    "  --devices N           in-process devices (default 2, at most 8;\n"
    "                        0 when --device is given)\n"
    "  --device SPEC         a vfio-user device server (repeatable, at most\n"
    "                        8): testdev[,seed=N][,size=MIB] or\n"
    "                        acc[,qps=N][,isolation=device|queue-pair] or\n"
    "                        flowtab[,state=MIB][,no-p2p][,peer=NAME]\n"
    "                        spawns that program on a socket in a private\n"
    "                        0700 directory; socket=PATH connects to a\n"
    "                        running server.  Also name=NAME (default vfuN;\n"
    "                        matched by name on the destination) and\n"
    "                        prog=PATH.  Guest RAM is DMA-mapped into it\n"
    "                        (memfd passed) and its IRQs wired to eventfds\n"
    "  --acc-requests N      with an acc device, the guest runs N\n"
    "                        compression/digest requests on it, each\n"
    "                        checked (default 20000)\n"
    "  --dev-state SIZE      state of each device (default 4M)\n"
    "  --dev-revision N      device revision; a destination accepts an\n"
    "                        equal or older source revision (default 1)\n"
    "  --seed N              guest program input (default 1)\n"
    "  --rate N              guest steps per second (default 20000)\n";

static const char mig_help[] =
    "migration options (QMP migrate-set-parameters; with 'run' they are\n"
    "the VM's initial parameters):\n"
    "  --downtime-limit MS   downtime-limit: precopy iterates until the\n"
    "                        rest fits in MS (default 300)\n"
    "  --max-bandwidth B     max-bandwidth, bytes per second; 0 = unlimited\n"
    "  --channels N          multifd-channels: TCP connections per\n"
    "                        migration, 1..16 (default min(4, cores)); the\n"
    "                        devices' state and guest RAM move on them at\n"
    "                        once at stop-copy\n"
    "  --compression C       multifd-compression: none (default) or zstd:\n"
    "                        guest RAM and device state compressed on every\n"
    "                        connection when the destination supports it\n"
    "  --zstd-level N        multifd-zstd-level: 1..19 (default 1)\n"
    "  --no-precopy          stop-and-copy only (x-vmig-precopy false)\n"
    "  --max-iterations N    precopy passes before the cap action\n"
    "                        (default 30)\n"
    "  --max-precopy-time MS precopy time before the cap action\n"
    "                        (default: no limit)\n"
    "  --cap-action A        at the cap: stop-copy (switch over anyway,\n"
    "                        default) or abort (the VM stays here)\n"
    "  --reset-policy P      a device reset during precopy: restart that\n"
    "                        device's precopy (default) or abort\n"
    "  --max-restarts N      precopy restarts per device (default 3)\n"
    "  --allow-mixed-p2p     migrate several devices although one lacks\n"
    "                        P2P (refused by default, as QEMU does)\n";

static const char tls_help[] =
    "TLS on the migration channel (docs/security.md):\n"
    "  --tls-creds DIR       x509 credentials in QEMU's layout: ca-cert.pem,\n"
    "                        server-cert.pem + server-key.pem (destination),\n"
    "                        client-cert.pem + client-key.pem (source); both\n"
    "                        sides are authenticated (QMP tls-creds)\n"
    "  --tls-psk FILE        a keys.psk of identity:hexkey lines instead\n"
    "  --tls-identity NAME   the PSK identity the source uses (default qemu)\n"
    "  --tls-hostname NAME   the name the destination's certificate must\n"
    "                        carry (default: the host in --to)\n"
    "  --tls-authz FILE      destination: only sources whose certificate\n"
    "                        subject (e.g. CN=src,O=org) or PSK identity is\n"
    "                        listed, one a line\n"
    "  --ktls                ask for kernel TLS offload where the kernel has\n"
    "                        it\n";

static const char common_help[] =
    "  --qmp PATH            the agent's QMP socket (default $VMIG_QMP or\n"
    "                        ./vmig.qmp)\n"
    "  -v, --verbose         more log output (repeat for debug)\n"
    "  -h, --help            this help\n"
    "\nExit codes: 0 success, 1 failure, 2 usage error.\n";

/* ------------------------------------------------------------ helpers */

static int
parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 0);

    switch (*end) {
    case 'k':
    case 'K':
        v <<= 10;
        end++;
        break;
    case 'm':
    case 'M':
        v <<= 20;
        end++;
        break;
    case 'g':
    case 'G':
        v <<= 30;
        end++;
        break;
    default:
        break;
    }
    if (*end != '\0' || end == s) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

/* ------------------------------------------------------------ table */

static int cmd_help(struct opts *o);

/* never called: `conform` is dispatched before option parsing */
static int
cmd_conform(struct opts *o)
{
    (void)o;
    return EXIT_USAGE;
}

/* clang-format off */
static const struct subcmd subcmds[] = {
    {"run", "[--qmp PATH] [VM options] [migration options] [TLS options]",
     "start a VM (guest program + devices) and serve QMP",
     "Starts a VM: guest RAM in a memfd, a vCPU running the ledger guest\n"
     "program, in-process devices it drives, and a QMP server.  The agent\n"
     "exits by itself after migrating the VM away once no QMP client is\n"
     "connected, or on QMP 'quit', SIGINT or SIGTERM.\n", cmd_run},
    {"receive", "[--qmp PATH] [--listen HOST:PORT] [VM options] "
     "[TLS options]",
     "start a destination waiting for an incoming migration",
     "Starts an empty VM (same shape as the source: --ram and the device\n"
     "options must match) waiting for a migration on --listen, or on the\n"
     "address a later QMP 'migrate-incoming' gives.  Compatibility checks\n"
     "and failed attempts leave it listening; after a migration it runs\n"
     "the VM.  With --tls-creds or --tls-psk only authenticated sources\n"
     "get in; without, it listens on a loopback address only, unless\n"
     "--insecure.\n", cmd_receive},
    {"migrate", "--to HOST:PORT [--qmp PATH] [migration options] "
     "[TLS options] [--json]",
     "migrate the agent's VM to a destination agent",
     "Asks the agent to migrate (QMP 'migrate') and follows it: a live\n"
     "progress bar on a terminal, JSON events otherwise (or with --json).\n"
     "Exit 0 when the destination confirmed; 1 when the migration failed\n"
     "or was cancelled (the VM keeps running on the source).  Precopy\n"
     "(device state and guest RAM sent while the VM runs, until the rest\n"
     "fits the downtime limit) is used when possible.\n",
     cmd_migrate},
    {"check", "--to HOST:PORT [--qmp PATH] [TLS options] [--json]",
     "ask a destination whether every device can migrate there",
     "Sends the source's device descriptors to the destination, which\n"
     "answers per device; nothing changes on either side.  Exit 0 when all\n"
     "are compatible, 1 otherwise.\n", cmd_check},
    {"status", "[--qmp PATH] [--json]", "show the VM and migration status",
     "Prints query-status and query-migrate.\n", cmd_status},
    {"cancel", "[--qmp PATH]", "cancel the running migration",
     "Sends QMP 'migrate_cancel'.  A migration cancelled before the source\n"
     "commits (GO) leaves the VM running on the source; after it the\n"
     "cancel is too late and the VM runs where the destination says.\n",
     cmd_cancel},
    {"recover", "[--qmp PATH] [--destination-gone]",
     "learn the outcome of a migration whose answer was lost",
     "After GO (the source's commit) a source that lost the destination's\n"
     "answer and could not ask again stays paused (status\n"
     "postmigrate-unknown): it never resumes on its own, since the VM may\n"
     "run on the destination.  'vmig recover' asks the destination again\n"
     "(QMP x-vmig-migrate-recover) and finishes the migration as it says:\n"
     "the VM runs there, or it was discarded and resumes here.  Only when\n"
     "the destination is gone for good (its host is down, its agent\n"
     "killed) --destination-gone resumes the VM here without asking.\n",
     cmd_recover},
    {"demo", "[--ram SIZE] [--acc-requests N] [--json]",
     "migrate a running VM between two local agents and verify it",
     "Starts a source and a destination agent (separate processes,\n"
     "loopback TCP), each spawning a vmig-acc accelerator server.  The\n"
     "guest drives the accelerator (compression and digest requests,\n"
     "every completion checked) and runs its ledger program; the demo\n"
     "migrates it mid-stream over TLS (a pre-shared key made for the\n"
     "demo) with the progress bar, lets the workload\n"
     "finish on the destination and prints a verdict: requests completed\n"
     "exactly once and verified, ledger replayed, bytes moved, total time,\n"
     "downtime.  Exit 0 only when everything checks out.\n",
     cmd_demo},
    {"conform", "--socket PATH | --spawn 'CMD {socket}' [...]",
     "check a vfio-user device against the rules a VMM relies on",
     "", cmd_conform},
    {"tls-setup", "DIR [--hostname NAMES] [--client-cn NAME] "
     "[--tls-identity NAME]",
     "make throwaway TLS credentials (a CA, certificates, keys.psk)",
     "Writes a new CA (ca-cert.pem, ca-key.pem), a destination certificate\n"
     "and key valid for NAMES (server-cert.pem, server-key.pem), a source\n"
     "certificate and key (client-cert.pem, client-key.pem) and a keys.psk\n"
     "with a random 256-bit key, in the layout --tls-creds and --tls-psk\n"
     "(and QEMU) read; keys are 0600.  For tests and a first setup: copy\n"
     "the directory to both hosts, keep ca-key.pem elsewhere for real use\n"
     "(docs/security.md).\n", cmd_tls_setup},
    {"help", "[COMMAND]", "show help", "Shows help.\n", cmd_help},
};
/* clang-format on */

#define NSUB (sizeof(subcmds) / sizeof(subcmds[0]))

static void
usage(FILE *f)
{
    fprintf(f, "usage: vmig <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < NSUB; i++) {
        fprintf(f, "  %-9s %s\n", subcmds[i].name, subcmds[i].summary);
    }
    fprintf(f, "\n'vmig <command> --help' for a command's options.\n"
               "Exit codes: 0 success, 1 failure, 2 usage error.\n");
}

static void
sub_help(const struct subcmd *s)
{
    printf("usage: vmig %s %s\n\n%s\noptions:\n", s->name, s->args, s->help);
    if (s->fn == cmd_run || s->fn == cmd_receive) {
        fputs(vm_help, stdout);
    }
    if (s->fn == cmd_receive) {
        printf("  --listen HOST:PORT    accept the migration there\n"
               "  --insecure            accept plaintext migrations on an\n"
               "                        address beyond loopback\n");
    }
    if (s->fn == cmd_migrate) {
        printf(
            "  --to HOST:PORT        the destination agent's listen address\n"
            "  --json                JSON events instead of a progress bar\n");
    }
    if (s->fn == cmd_migrate || s->fn == cmd_run) {
        fputs(mig_help, stdout);
    }
    if (s->fn == cmd_check) {
        printf(
            "  --to HOST:PORT        the destination agent's listen address\n");
    }
    if (s->fn == cmd_run || s->fn == cmd_receive || s->fn == cmd_migrate ||
        s->fn == cmd_check) {
        fputs(tls_help, stdout);
    }
    if (s->fn == cmd_tls_setup) {
        printf(
            "  --hostname NAMES      comma-separated names and addresses the\n"
            "                        destination certificate is valid for\n"
            "                        (default localhost,127.0.0.1,::1)\n"
            "  --client-cn NAME      the source certificate's CN (default\n"
            "                        vmig-client)\n"
            "  --tls-identity NAME   the keys.psk identity (default qemu)\n"
            "  --ca DIR              sign with DIR's ca-cert.pem + ca-key.pem\n"
            "                        instead of a new CA\n"
            "  --valid-from DAYS     certificates valid from DAYS from now\n"
            "                        (negative: in the past; for tests)\n"
            "  --valid-days N        and for N days (default 365)\n");
    }
    if (s->fn == cmd_demo) {
        printf("  --ram SIZE            guest RAM (default 256M)\n"
               "  --acc-requests N      accelerator requests (default "
               "150000)\n");
    }
    fputs(common_help, stdout);
}

static int
cmd_help(struct opts *o)
{
    (void)o;
    usage(stdout);
    return EXIT_OK;
}

enum {
    OPT_QMP = 256,
    OPT_TO,
    OPT_LISTEN,
    OPT_RAM,
    OPT_DEVICES,
    OPT_DEV_STATE,
    OPT_DEV_REV,
    OPT_SEED,
    OPT_RATE,
    OPT_DOWNTIME,
    OPT_BANDWIDTH,
    OPT_CHANNELS,
    OPT_COMPRESSION,
    OPT_ZSTD_LEVEL,
    OPT_JSON,
    OPT_DEVICE,
    OPT_ACC_REQUESTS,
    OPT_NO_PRECOPY,
    OPT_MAX_ITER,
    OPT_MAX_TIME,
    OPT_CAP_ACTION,
    OPT_RESET_POLICY,
    OPT_MAX_RESTARTS,
    OPT_MIXED_P2P,
    OPT_TLS_CREDS,
    OPT_TLS_PSK,
    OPT_TLS_IDENTITY,
    OPT_TLS_HOSTNAME,
    OPT_TLS_AUTHZ,
    OPT_INSECURE,
    OPT_DEST_GONE,
    OPT_KTLS,
    OPT_HOSTNAME,
    OPT_CLIENT_CN,
    OPT_CA,
    OPT_VALID_FROM,
    OPT_VALID_DAYS,
};

/* A migration option: its QMP parameter, the value checked as QMP would. */
static int
mig_param(struct opts *o, int opt, const char *arg)
{
    static const struct {
        int opt;
        const char *qmp;
        const char *values[3]; /* NULL: an integer (or a flag) */
    } map[] = {
        {OPT_DOWNTIME, "downtime-limit", {NULL}},
        {OPT_BANDWIDTH, "max-bandwidth", {NULL}},
        {OPT_CHANNELS, "multifd-channels", {NULL}},
        {OPT_COMPRESSION, "multifd-compression", {"none", "zstd"}},
        {OPT_ZSTD_LEVEL, "multifd-zstd-level", {NULL}},
        {OPT_NO_PRECOPY, "x-vmig-precopy", {NULL}},
        {OPT_MAX_ITER, "x-vmig-precopy-max-iterations", {NULL}},
        {OPT_MAX_TIME, "x-vmig-precopy-max-time", {NULL}},
        {OPT_CAP_ACTION, "x-vmig-precopy-cap-action", {"stop-copy", "abort"}},
        {OPT_RESET_POLICY, "x-vmig-reset-policy", {"restart", "abort"}},
        {OPT_MAX_RESTARTS, "x-vmig-max-restarts", {NULL}},
        {OPT_MIXED_P2P, "x-vmig-allow-mixed-p2p", {NULL}},
    };
    json_object *v;
    uint64_t n;

    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (map[i].opt != opt) {
            continue;
        }
        if (opt == OPT_NO_PRECOPY || opt == OPT_MIXED_P2P) {
            v = json_object_new_boolean(opt == OPT_MIXED_P2P);
        } else if (map[i].values[0] != NULL) {
            if (strcmp(arg, map[i].values[0]) != 0 &&
                strcmp(arg, map[i].values[1]) != 0) {
                return -EINVAL;
            }
            v = json_object_new_string(arg);
        } else {
            if (parse_size(arg, &n) < 0 || n > INT64_MAX) {
                return -EINVAL;
            }
            v = json_object_new_int64((int64_t)n);
        }
        if (o->params == NULL) {
            o->params = json_object_new_object();
        }
        json_object_object_add(o->params, map[i].qmp, v);
        return 0;
    }
    return -ENOENT;
}

/* A --tls-* option as the QMP migration parameter it sets (paths made
 * absolute: the agent that reads them may run elsewhere than this
 * command). */
static int
tls_opt(struct opts *o, int opt, const char *arg)
{
    static const struct {
        int opt;
        const char *qmp;
        bool path;
    } map[] = {
        {OPT_TLS_CREDS, "tls-creds", true},
        {OPT_TLS_PSK, "tls-creds", true},
        {OPT_TLS_HOSTNAME, "tls-hostname", false},
        {OPT_TLS_AUTHZ, "tls-authz", true},
        {OPT_TLS_IDENTITY, "x-vmig-tls-identity", false},
        {OPT_KTLS, "x-vmig-ktls", false},
        {OPT_INSECURE, "x-vmig-insecure", false},
    };
    char abs[PATH_MAX];

    o->tls_given = true;
    if (opt == OPT_TLS_IDENTITY) {
        o->setup.psk_identity = arg; /* tls-setup's keys.psk identity */
    }
    if (opt == OPT_INSECURE) {
        o->insecure = true;
    }
    if (o->params == NULL) {
        o->params = json_object_new_object();
    }
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (map[i].opt != opt) {
            continue;
        }
        if (arg == NULL) {
            json_object_object_add(o->params, map[i].qmp,
                                   json_object_new_boolean(1));
            return 0;
        }
        if (json_object_object_get_ex(o->params, map[i].qmp, NULL)) {
            return -EINVAL; /* --tls-creds and --tls-psk: one of them */
        }
        if (map[i].path && realpath(arg, abs) != NULL) {
            arg = abs;
        }
        json_object_object_add(o->params, map[i].qmp,
                               json_object_new_string(arg));
        return 0;
    }
    return -EINVAL;
}

int
main(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"qmp", required_argument, NULL, OPT_QMP},
        {"to", required_argument, NULL, OPT_TO},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"ram", required_argument, NULL, OPT_RAM},
        {"devices", required_argument, NULL, OPT_DEVICES},
        {"dev-state", required_argument, NULL, OPT_DEV_STATE},
        {"dev-revision", required_argument, NULL, OPT_DEV_REV},
        {"seed", required_argument, NULL, OPT_SEED},
        {"rate", required_argument, NULL, OPT_RATE},
        {"downtime-limit", required_argument, NULL, OPT_DOWNTIME},
        {"max-bandwidth", required_argument, NULL, OPT_BANDWIDTH},
        {"channels", required_argument, NULL, OPT_CHANNELS},
        {"compression", required_argument, NULL, OPT_COMPRESSION},
        {"zstd-level", required_argument, NULL, OPT_ZSTD_LEVEL},
        {"json", no_argument, NULL, OPT_JSON},
        {"device", required_argument, NULL, OPT_DEVICE},
        {"acc-requests", required_argument, NULL, OPT_ACC_REQUESTS},
        {"no-precopy", no_argument, NULL, OPT_NO_PRECOPY},
        {"max-iterations", required_argument, NULL, OPT_MAX_ITER},
        {"max-precopy-time", required_argument, NULL, OPT_MAX_TIME},
        {"cap-action", required_argument, NULL, OPT_CAP_ACTION},
        {"reset-policy", required_argument, NULL, OPT_RESET_POLICY},
        {"max-restarts", required_argument, NULL, OPT_MAX_RESTARTS},
        {"allow-mixed-p2p", no_argument, NULL, OPT_MIXED_P2P},
        {"tls-creds", required_argument, NULL, OPT_TLS_CREDS},
        {"tls-psk", required_argument, NULL, OPT_TLS_PSK},
        {"tls-identity", required_argument, NULL, OPT_TLS_IDENTITY},
        {"tls-hostname", required_argument, NULL, OPT_TLS_HOSTNAME},
        {"tls-authz", required_argument, NULL, OPT_TLS_AUTHZ},
        {"insecure", no_argument, NULL, OPT_INSECURE},
        {"destination-gone", no_argument, NULL, OPT_DEST_GONE},
        {"ktls", no_argument, NULL, OPT_KTLS},
        {"hostname", required_argument, NULL, OPT_HOSTNAME},
        {"client-cn", required_argument, NULL, OPT_CLIENT_CN},
        {"ca", required_argument, NULL, OPT_CA},
        {"valid-from", required_argument, NULL, OPT_VALID_FROM},
        {"valid-days", required_argument, NULL, OPT_VALID_DAYS},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct opts o = {
        .qmp = getenv("VMIG_QMP") != NULL ? getenv("VMIG_QMP") : "vmig.qmp",
        .vm = {.name = "agent",
               .ram_size = 64u << 20,
               .ndev = 2,
               .dev_state = 4u << 20,
               .dev_revision = 1,
               .seed = 1,
               .rate = 20000,
               .acc_requests = 20000},
    };
    const struct subcmd *s = NULL;
    uint64_t v;
    bool devices_given = false;
    int c, li;

    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("vmig %s\n", vmig_version());
        return EXIT_OK;
    }
    if (strcmp(argv[1], RUNDIR_REAPER_CMD) == 0) {
        return rundir_reaper_main(argc, argv);
    }
    for (size_t i = 0; i < NSUB; i++) {
        if (strcmp(argv[1], subcmds[i].name) == 0) {
            s = &subcmds[i];
        }
    }
    if (s == NULL) {
        fprintf(stderr, "vmig: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return EXIT_USAGE;
    }
    if (s->fn == cmd_conform) {
        return vmig_conform_main(argc - 1, argv + 1);
    }
    if (s->fn == cmd_help && argc > 2) {
        for (size_t i = 0; i < NSUB; i++) {
            if (strcmp(argv[2], subcmds[i].name) == 0) {
                if (subcmds[i].fn == cmd_conform) {
                    vmig_conform_usage(stdout);
                } else {
                    sub_help(&subcmds[i]);
                }
                return EXIT_OK;
            }
        }
    }
    optind = 2;
    while ((c = getopt_long(argc, argv, "vh", lopts, &li)) != -1) {
        int bad = 0;

        li = -1;
        for (size_t i = 0; lopts[i].name != NULL; i++) {
            if (lopts[i].val == c) {
                li = (int)i;
            }
        }
        switch (c) {
        case OPT_QMP:
            o.qmp = optarg;
            break;
        case OPT_TO:
            o.to = optarg;
            break;
        case OPT_LISTEN:
            o.listen = optarg;
            break;
        case OPT_RAM:
            bad = parse_size(optarg, &o.vm.ram_size);
            o.ram_given = true;
            break;
        case OPT_DEVICES:
            bad = parse_size(optarg, &v);
            o.vm.ndev = (unsigned int)v;
            bad = bad || v > AGENT_MAX_DEV;
            devices_given = true;
            break;
        case OPT_DEV_STATE:
            bad = parse_size(optarg, &o.vm.dev_state);
            break;
        case OPT_DEV_REV:
            bad = parse_size(optarg, &v) || v > 255;
            o.vm.dev_revision = (uint8_t)v;
            break;
        case OPT_SEED:
            bad = parse_size(optarg, &o.vm.seed);
            break;
        case OPT_RATE:
            bad = parse_size(optarg, &o.vm.rate);
            break;
        case OPT_DOWNTIME:
        case OPT_BANDWIDTH:
        case OPT_CHANNELS:
        case OPT_COMPRESSION:
        case OPT_ZSTD_LEVEL:
        case OPT_NO_PRECOPY:
        case OPT_MAX_ITER:
        case OPT_MAX_TIME:
        case OPT_CAP_ACTION:
        case OPT_RESET_POLICY:
        case OPT_MAX_RESTARTS:
        case OPT_MIXED_P2P:
            bad = mig_param(&o, c, optarg);
            break;
        case OPT_TLS_CREDS:
        case OPT_TLS_PSK:
        case OPT_TLS_IDENTITY:
        case OPT_TLS_HOSTNAME:
        case OPT_TLS_AUTHZ:
        case OPT_INSECURE:
        case OPT_KTLS:
            bad = tls_opt(&o, c, optarg);
            break;
        case OPT_HOSTNAME:
            o.setup.hostnames = optarg;
            break;
        case OPT_CLIENT_CN:
            o.setup.client_cn = optarg;
            break;
        case OPT_CA:
            o.setup.ca_dir = optarg;
            break;
        case OPT_VALID_FROM:
        case OPT_VALID_DAYS: {
            char *end;
            long long d = strtoll(optarg, &end, 10);

            bad = *end != '\0' || end == optarg || d < -36500 || d > 36500 ||
                  (c == OPT_VALID_DAYS && d <= 0);
            if (c == OPT_VALID_FROM) {
                o.setup.valid_from_s = d * 86400 + (d == 0 ? -3600 : 0);
            } else {
                o.setup.valid_s = d * 86400;
            }
            break;
        }
        case OPT_DEST_GONE:
            o.destination_gone = true;
            break;
        case OPT_JSON:
            o.json = true;
            break;
        case OPT_ACC_REQUESTS:
            bad = parse_size(optarg, &o.vm.acc_requests) ||
                  o.vm.acc_requests == 0 || o.vm.acc_requests > UINT32_MAX;
            o.acc_given = true;
            break;
        case OPT_DEVICE:
            bad = o.vm.nvfu == AGENT_MAX_DEV ||
                  vfudev_parse(optarg, &o.vm.vfu[o.vm.nvfu], o.vm.nvfu) < 0;
            o.vm.nvfu++;
            if (!devices_given) {
                o.vm.ndev = 0; /* --device replaces the default memdevs */
            }
            break;
        case 'v':
            o.verbose++;
            break;
        case 'h':
            sub_help(s);
            return EXIT_OK;
        default:
            bad = 1;
            break;
        }
        if (bad) {
            if (li >= 0 && c != '?' && optarg != NULL) {
                fprintf(stderr,
                        "vmig %s: bad value '%s' for --%s (see 'vmig %s "
                        "--help')\n",
                        s->name, optarg, lopts[li].name, s->name);
            } else {
                fprintf(stderr, "vmig %s: bad option (see 'vmig %s --help')\n",
                        s->name, s->name);
            }
            json_object_put(o.params);
            return EXIT_USAGE;
        }
    }
    if (s->fn == cmd_tls_setup && optind < argc) {
        o.setup_dir = argv[optind++];
    }
    if (o.tls_given && s->fn != cmd_run && s->fn != cmd_receive &&
        s->fn != cmd_migrate && s->fn != cmd_check && s->fn != cmd_tls_setup) {
        fprintf(stderr, "vmig %s: no TLS options here (see 'vmig %s --help')\n",
                s->name, s->name);
        json_object_put(o.params);
        return EXIT_USAGE;
    }
    if (o.insecure && s->fn != cmd_receive) {
        fprintf(stderr, "vmig %s: --insecure applies to 'vmig receive' only\n",
                s->name);
        json_object_put(o.params);
        return EXIT_USAGE;
    }
    if (optind < argc) {
        fprintf(stderr, "vmig %s: unexpected argument '%s'\n", s->name,
                argv[optind]);
        json_object_put(o.params);
        return EXIT_USAGE;
    }
    if (o.vm.ram_size < VMIG_GUEST_MIN_RAM || o.vm.ram_size % 4096 != 0 ||
        o.vm.dev_state < 64) {
        fprintf(stderr,
                "vmig %s: --ram must be a multiple of 4096 of at "
                "least %u bytes; --dev-state at least 64\n",
                s->name, VMIG_GUEST_MIN_RAM);
        json_object_put(o.params);
        return EXIT_USAGE;
    }
    for (unsigned int i = 0; i < o.vm.nvfu; i++) {
        for (unsigned int k = 0; k < i; k++) {
            if (strcmp(o.vm.vfu[i].name, o.vm.vfu[k].name) == 0) {
                fprintf(stderr,
                        "vmig %s: two --device named '%s': give each its "
                        "own name=\n",
                        s->name, o.vm.vfu[i].name);
                json_object_put(o.params);
                return EXIT_USAGE;
            }
        }
    }
    {
        char why[160];

        if (vfudev_check_peers(o.vm.vfu, o.vm.nvfu, why, sizeof(why)) < 0) {
            fprintf(stderr, "vmig %s: %s\n", s->name, why);
            json_object_put(o.params);
            return EXIT_USAGE;
        }
    }
    c = s->fn(&o);
    json_object_put(o.params);
    return c;
}
