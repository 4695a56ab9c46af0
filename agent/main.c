/* SPDX-License-Identifier: MIT */
/*
 * main.c - the `vmig` program: a subcommand table (run, receive, migrate,
 * check, status, cancel, demo, conform), option parsing and help.
 * `conform` has its own options (tools/conform/cli.c).
 *
 * Exit codes, for every command: 0 success, 1 failure (the operation was
 * tried and failed, or found an incompatibility or a discrepancy), 2 usage
 * error (bad command line).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>
#include <vmig/version.h>
#include "agent.h"
#include "conform.h"

extern volatile sig_atomic_t agent_signalled;

struct opts {
    const char *qmp;
    const char *to;
    const char *listen;
    const char *setup_dir;              /* tls-setup DIR */
    struct vmig_tls_setup_params setup; /* tls-setup options */
    bool tls_given;                     /* a --tls-* option was given */
    bool insecure;
    struct vm_opts vm;
    json_object *params; /* migrate-set-parameters arguments */
    bool json;
    bool ram_given;
    bool acc_given;
    int verbose;
};

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
    "                        flowtab[,state=MIB][,no-p2p]\n"
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

static int
cmd_run(struct opts *o)
{
    return serve(o, false);
}

static int
cmd_receive(struct opts *o)
{
    return serve(o, true);
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

static int
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

static int
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

static int
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
static int
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
    for (int i = 0; i < 600 && running_status(st); i++) {
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
    } else {
        fprintf(stderr, "vmig cancel: the migration is still %s\n", st);
    }
out:
    json_object_put(ret);
    json_object_put(mig);
    qmpc_close(c);
    return rc;
}

/* ------------------------------------------------------------ tls-setup */

static int
cmd_tls_setup(struct opts *o)
{
    char err[512];
    int ret;

    if (o->setup_dir == NULL) {
        fprintf(stderr, "vmig tls-setup: give the directory to write (see "
                        "'vmig tls-setup --help')\n");
        return EXIT_USAGE;
    }
    if (mkdir(o->setup_dir, 0700) < 0 && errno != EEXIST) {
        fprintf(stderr, "vmig tls-setup: %s: %s\n", o->setup_dir,
                strerror(errno));
        return EXIT_FAIL;
    }
    ret = vmig_tls_setup(o->setup_dir, &o->setup, err, sizeof(err));
    if (ret < 0) {
        fprintf(stderr, "vmig tls-setup: %s\n", err);
        return EXIT_FAIL;
    }
    printf("vmig tls-setup: wrote throwaway credentials to %s:\n"
           "  ca-cert.pem ca-key.pem        the CA (keep ca-key.pem off the "
           "hosts for real use)\n"
           "  server-cert.pem server-key.pem the destination, valid for %s\n"
           "  client-cert.pem client-key.pem the source\n"
           "  keys.psk                       PSK identity '%s'\n"
           "use: vmig receive --tls-creds %s ...; vmig run --tls-creds %s ...\n"
           "     (or --tls-psk %s/keys.psk on both)\n",
           o->setup_dir,
           o->setup.hostnames != NULL ? o->setup.hostnames
                                      : "localhost,127.0.0.1,::1",
           o->setup.psk_identity != NULL ? o->setup.psk_identity
                                         : VMIG_TLS_DEFAULT_IDENTITY,
           o->setup_dir, o->setup_dir, o->setup_dir);
    return EXIT_OK;
}

/* ------------------------------------------------------------ demo */

/* The demo gives up on a workload that made no progress for this long. */
#define DEMO_STALL_MS 60000
/* ...and on an agent that did not listen after this long. */
#define DEMO_START_MS 120000

static pid_t
spawn(const char *log, char *const argv[])
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    pid_t pid;

    /* exec'd by its own name, so the agent's comm is "vmig" (executing
     * /proc/self/exe would name it "exe", and another agent's start-up
     * would take its device directory for a dead agent's) */
    if (n <= 0) {
        return -1;
    }
    self[n] = '\0';
    pid = fork();
    if (pid == 0) {
        FILE *f = freopen(log, "w", stderr);

        (void)f;
        execv(self, argv);
        _exit(127);
    }
    return pid;
}

static int
free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
        port = ntohs(a.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

/* Connect to the agent *@pid serves on @path once it listens: as long as
 * it is alive, for up to DEMO_START_MS (a loaded machine or a sanitizer
 * build starts slowly). */
static int
wait_agent(pid_t *pid, const char *path, struct qmp_client **c)
{
    for (int ms = 0; ms < DEMO_START_MS; ms += 50) {
        int status;

        /* a guest report replays the ledger and, once the workload is
         * done, recomputes every result: slow under a loaded machine or a
         * sanitizer, so each answer gets a generous deadline */
        if (qmpc_connect(path, 120000, c) == 0) {
            return 0;
        }
        if (waitpid(*pid, &status, WNOHANG) == *pid) {
            *pid = -1; /* reaped: nothing left to stop */
            return -ECHILD;
        }
        usleep(50000);
    }
    return -ETIMEDOUT;
}

static int
guest_report(struct qmp_client *c, int64_t *steps, bool *verified, bool *busy,
             char *why, size_t len, json_object **acc)
{
    json_object *r, *v;
    char err[256];

    *acc = NULL;
    *busy = false;
    if (qmpc_exec(c, "x-vmig-query-guest", NULL, &r, err, sizeof(err)) < 0) {
        snprintf(why, len, "%s", err);
        return -1;
    }
    json_object_object_get_ex(r, "steps", &v);
    *steps = json_object_get_int64(v);
    json_object_object_get_ex(r, "verified", &v);
    *verified = json_object_get_boolean(v);
    if (json_object_object_get_ex(r, "busy", &v)) {
        *busy = json_object_get_boolean(v);
    }
    if (json_object_object_get_ex(r, "error", &v)) {
        snprintf(why, len, "%s", json_object_get_string(v));
    }
    if (json_object_object_get_ex(r, "accelerator", &v)) {
        *acc = json_object_get(v);
    }
    json_object_put(r);
    return 0;
}

static bool
jbool(json_object *o, const char *k)
{
    json_object *v;

    return o != NULL && json_object_object_get_ex(o, k, &v) &&
           json_object_get_boolean(v);
}

static int64_t
jint_demo(json_object *o, const char *a, const char *b)
{
    json_object *v;

    if (o == NULL || !json_object_object_get_ex(o, a, &v)) {
        return 0;
    }
    if (b != NULL && !json_object_object_get_ex(v, b, &v)) {
        return 0;
    }
    return json_object_get_int64(v);
}

static const char *
jstr_demo(json_object *o, const char *k)
{
    json_object *v;

    return o != NULL && json_object_object_get_ex(o, k, &v)
               ? json_object_get_string(v)
               : "?";
}

static void
reap(pid_t pid, const char *who)
{
    int status;

    for (int i = 0; i < 100; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            return;
        }
        usleep(50000);
    }
    fprintf(stderr, "vmig demo: %s did not exit; killing it\n", who);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
}

/* @bytes in tenths of a MiB, rounded: parts printed side by side are
 * summed in these units, so the printed numbers add up. */
static int64_t
tenths(int64_t bytes)
{
    return (bytes * 10 + (1 << 19)) >> 20;
}

/*
 * What moved, each number saying what it counts, parts adding up to
 * their whole: guest RAM sent (every pass, a page as often as it was
 * dirtied) as page data plus zero pages (which travel as a marker, not
 * as 4 KiB); and the bytes on the wire from the first precopy byte to
 * SWITCHOVER (page data, markers, device state, frame headers) while the
 * VM ran plus while it was paused.  The wire total is smaller than the
 * RAM sent when much of RAM is zero.
 */
static void
print_bytes(json_object *mig)
{
    int64_t zero =
        jint_demo(mig, "ram", "duplicate") * jint_demo(mig, "ram", "page-size");
    int64_t data = tenths(jint_demo(mig, "ram", "transferred") - zero);
    int64_t run = tenths(jint_demo(mig, "x-vmig-precopy", "precopy-bytes"));
    int64_t paused = tenths(jint_demo(mig, "x-vmig-precopy", "stopcopy-bytes"));

    zero = tenths(zero);
    printf("  guest RAM sent, %2lld passes              %lld.%lld MiB = "
           "%lld.%lld MiB page data + %lld.%lld MiB zero pages (sent as "
           "markers)\n",
           (long long)jint_demo(mig, "ram", "dirty-sync-count"),
           (long long)(data + zero) / 10, (long long)(data + zero) % 10,
           (long long)data / 10, (long long)data % 10, (long long)zero / 10,
           (long long)zero % 10);
    printf("  device state sent                      %lld bytes\n",
           (long long)jint_demo(mig, "vfio", "transferred"));
    printf("  on the wire, precopy to switchover     %lld.%lld MiB = "
           "%lld.%lld MiB while running + %lld.%lld MiB while paused\n",
           (long long)(run + paused) / 10, (long long)(run + paused) % 10,
           (long long)run / 10, (long long)run % 10, (long long)paused / 10,
           (long long)paused % 10);
    printf("  precopy iterations                     %lld\n",
           (long long)jint_demo(mig, "x-vmig-precopy", "iterations"));
}

static int
cmd_demo(struct opts *o)
{
    char dir[] = "/tmp/vmig-demo-XXXXXX", sq[96], dq[96], sl[96], dl[96];
    char psk[96];
    char listen[32], ram[32], reqs[32], why[256] = "";
    struct qmp_client *src = NULL, *dst = NULL;
    pid_t sp = -1, dp = -1;
    int64_t steps_before = 0, steps_after = 0;
    bool verified = false, busy = false, acc_ok, tls_ok;
    json_object *mig = NULL, *ret, *v, *acc0 = NULL, *acc1 = NULL;
    int64_t total, done0, done1;
    char err[256];
    int port, rc = EXIT_FAIL;
    bool tty = isatty(STDERR_FILENO) && !o->json;

    signal(SIGPIPE, SIG_IGN);
    if (!o->ram_given) {
        o->vm.ram_size = 256u << 20; /* enough for the bar to be seen */
    }
    if (!o->acc_given) {
        o->vm.acc_requests = 150000; /* a few seconds of accelerator work */
    }
    if (mkdtemp(dir) == NULL) {
        perror("vmig demo: mkdtemp");
        return EXIT_FAIL;
    }
    snprintf(sq, sizeof(sq), "%s/src.qmp", dir);
    snprintf(dq, sizeof(dq), "%s/dst.qmp", dir);
    snprintf(sl, sizeof(sl), "%s/src.log", dir);
    snprintf(dl, sizeof(dl), "%s/dst.log", dir);
    snprintf(psk, sizeof(psk), "%s/keys.psk", dir);
    if (vmig_tls_setup(dir, NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "vmig demo: cannot make TLS credentials: %s\n", err);
        return EXIT_FAIL;
    }
    port = free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    snprintf(ram, sizeof(ram), "%llu", (unsigned long long)o->vm.ram_size);
    snprintf(reqs, sizeof(reqs), "%llu",
             (unsigned long long)o->vm.acc_requests);
    {
        /* over TLS, authenticated by a pre-shared key made above */
        char *dargv[] = {"vmig",     "receive", "--qmp",     dq,
                         "--listen", listen,    "--ram",     ram,
                         "--device", "acc",     "--tls-psk", psk,
                         NULL};
        char *sargv[] = {
            "vmig",     "run", "--qmp",          sq,   "--ram",     ram,
            "--device", "acc", "--acc-requests", reqs, "--tls-psk", psk,
            NULL};

        dp = spawn(dl, dargv);
        sp = spawn(sl, sargv);
    }
    printf("vmig demo: source and destination agents started, each with a "
           "vmig-acc accelerator process (RAM %s bytes, %s requests; logs in "
           "%s)\n",
           ram, reqs, dir);
    if (sp < 0 || dp < 0 || wait_agent(&sp, sq, &src) < 0 ||
        wait_agent(&dp, dq, &dst) < 0) {
        fprintf(stderr, "vmig demo: agents did not come up (see %s)\n", dir);
        goto out;
    }
    usleep(1500000);
    if (guest_report(src, &steps_before, &verified, &busy, why, sizeof(why),
                     &acc0) < 0 ||
        !verified || acc0 == NULL) {
        fprintf(stderr, "vmig demo: guest on the source does not verify: %s\n",
                why[0] ? why : "no accelerator workload");
        goto out;
    }
    total = jint_demo(acc0, "requests", NULL);
    done0 = jint_demo(acc0, "completed", NULL);
    printf("vmig demo: guest ran %lld steps and %lld of %lld accelerator "
           "requests on the source, all verified; migrating to %s\n",
           (long long)steps_before, (long long)done0, (long long)total, listen);
    fflush(stdout);
    {
        json_object *args = json_object_new_object();
        char uri[64];

        snprintf(uri, sizeof(uri), "tcp:%s", listen);
        json_object_object_add(args, "uri", json_object_new_string(uri));
        if (qmpc_exec(src, "migrate", args, &ret, err, sizeof(err)) < 0) {
            fprintf(stderr, "vmig demo: migrate: %s\n", err);
            goto out;
        }
        json_object_put(ret);
    }
    if (cmd_migrate_follow(src, tty, o->json) != EXIT_OK) {
        goto out;
    }
    if (qmpc_exec(src, "query-migrate", NULL, &mig, err, sizeof(err)) < 0) {
        goto out;
    }
    /* let the workload finish on the destination, however slowly a
     * loaded machine runs it: give up only when it stops moving */
    for (int64_t last = -1, idle_ms = 0; idle_ms < DEMO_STALL_MS;) {
        json_object_put(acc1);
        if (guest_report(dst, &steps_after, &verified, &busy, why, sizeof(why),
                         &acc1) < 0) {
            fprintf(stderr, "vmig demo: destination: %s\n", why);
            goto out;
        }
        if (busy) {
            /* the source saw CONFIRM; the destination's engine is still
             * finishing the incoming migration */
            usleep(20000);
            continue;
        }
        if (!verified || jbool(acc1, "finished")) {
            break;
        }
        if (jint_demo(acc1, "completed", NULL) != last) {
            last = jint_demo(acc1, "completed", NULL);
            idle_ms = 0;
        }
        usleep(100000);
        idle_ms += 100;
    }
    done1 = jint_demo(acc1, "completed", NULL);
    acc_ok = jbool(acc1, "finished") && jbool(acc1, "verified") &&
             done1 == total && jint_demo(acc1, "bad", NULL) == 0 &&
             jint_demo(acc1, "duplicates", NULL) == 0 &&
             jint_demo(acc1, "ledger", "checked") == total &&
             jint_demo(acc1, "ledger", "mismatches") == 0;
    printf("\nvmig demo verdict\n");
    printf("  steps on the source before migrating  %lld\n",
           (long long)steps_before);
    printf("  steps after finishing on destination  %lld\n",
           (long long)steps_after);
    printf("  ledger replayed, every step once       %s%s%s\n",
           verified ? "yes" : "NO", verified ? "" : ": ", verified ? "" : why);
    printf("  guest kept running after migration     %s\n",
           steps_after > steps_before ? "yes" : "NO");
    printf("  accelerator requests                   %lld of %lld completed "
           "exactly once and verified (%lld before migrating, %lld "
           "after)%s\n",
           (long long)done1, (long long)total, (long long)done0,
           (long long)(done1 - done0), acc_ok ? "" : "  <-- DISCREPANCY");
    printf("  wrong results / duplicates             %lld / %lld\n",
           (long long)jint_demo(acc1, "bad", NULL),
           (long long)jint_demo(acc1, "duplicates", NULL));
    printf("  result ledger re-checked (digests)     %lld of %lld entries "
           "right, %lld mismatches\n",
           (long long)jint_demo(acc1, "ledger", "checked"), (long long)total,
           (long long)jint_demo(acc1, "ledger", "mismatches"));
    print_bytes(mig);
    printf("  total time                             %lld ms\n",
           (long long)jint_demo(mig, "total-time", NULL));
    printf("  downtime                               %lld ms\n",
           (long long)jint_demo(mig, "downtime", NULL));
    tls_ok = jbool(json_object_object_get_ex(mig, "x-vmig-tls", &v) ? v : NULL,
                   "enabled");
    if (tls_ok) {
        printf("  migration channel                      %s, %s, both agents "
               "authenticated (%s, peer '%s')\n",
               jstr_demo(v, "version"), jstr_demo(v, "cipher"),
               strcmp(jstr_demo(v, "auth"), "psk") == 0 ? "pre-shared key"
                                                        : "certificates",
               jstr_demo(v, "peer"));
    } else {
        printf("  migration channel                      PLAINTEXT  <-- "
               "expected TLS\n");
    }
    if (json_object_object_get_ex(mig, "status", &v) &&
        strcmp(json_object_get_string(v), "completed") == 0 && verified &&
        steps_after > steps_before && acc_ok && tls_ok) {
        printf("  verdict                                PASS\n");
        rc = EXIT_OK;
    } else {
        printf("  verdict                                FAIL\n");
    }
out:
    json_object_put(acc0);
    json_object_put(acc1);
    json_object_put(mig);
    if (dst != NULL) {
        if (qmpc_exec(dst, "quit", NULL, &ret, err, sizeof(err)) == 0) {
            json_object_put(ret);
        }
        qmpc_close(dst);
    }
    if (src != NULL) {
        if (rc != EXIT_OK &&
            qmpc_exec(src, "quit", NULL, &ret, err, sizeof(err)) == 0) {
            json_object_put(ret);
        }
        qmpc_close(src);
    }
    if (dp > 0) {
        reap(dp, "destination");
    }
    if (sp > 0) {
        reap(sp, "source");
    }
    if (rc == EXIT_OK) {
        static const char *const made[] = {"ca-cert.pem",     "ca-key.pem",
                                           "server-cert.pem", "server-key.pem",
                                           "client-cert.pem", "client-key.pem",
                                           "keys.psk"};
        char f[160];

        for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
            snprintf(f, sizeof(f), "%s/%s", dir, made[i]);
            unlink(f);
        }
        unlink(sl);
        unlink(dl);
        rmdir(dir);
    }
    return rc;
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
     "Sends QMP 'migrate_cancel'.  A migration cancelled before switchover\n"
     "leaves the VM running on the source.\n", cmd_cancel},
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
    c = s->fn(&o);
    json_object_put(o.params);
    return c;
}
