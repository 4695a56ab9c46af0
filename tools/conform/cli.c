/* SPDX-License-Identifier: MIT */
/*
 * cli.c - `vmig conform`: options, the device server(s) it spawns (and
 * spawns again when one dies under a rule), the table or JSON report,
 * the exit code (0 only when no rule failed).
 */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vmig/fsm.h>
#include <vmig/log.h>
#include "conform.h"

#define SPAWN_WAIT_MS 10000

/* One device instance: a socket given, or a command spawned on one. */
struct inst {
    const char *role; /* "device", "second instance" */
    const char *socket;
    const char *cmd; /* --spawn: with {socket} */
    char path[256];
    char log[256];
    pid_t pid;
    unsigned int spawns;
    int last_status;
    char last_words[256]; /* the last line a dead server wrote */
    struct cf_vfu *t;
};

struct out {
    bool json;
    bool verbose;
    json_object *rows;
};

static const char *const verdict_names[CF__COUNT] = {"PASS", "FAIL", "SKIP"};

void
vmig_conform_usage(FILE *f)
{
    fprintf(
        f,
        "usage: vmig conform (--socket PATH | --spawn 'CMD {socket}')\n"
        "                    [--dest-socket PATH | --dest-spawn 'CMD "
        "{socket}']\n"
        "                    [--hostile] [--json] [--fsm-table FILE] [-v]\n"
        "\n"
        "Drives a vfio-user device server through the rules a VMM relies on\n"
        "and prints one row per rule: PASS, FAIL (what it saw, and the\n"
        "clause of the vfio-user specification or the kernel uAPI it\n"
        "breaks) or SKIP (a feature the device does not advertise).\n"
        "\n"
        "  --socket PATH         the server's socket\n"
        "  --spawn 'CMD'         start the server: CMD runs under /bin/sh "
        "with\n"
        "                        {socket} replaced by a socket path of ours;\n"
        "                        it is started again if it dies under a rule\n"
        "  --dest-socket PATH, --dest-spawn 'CMD'\n"
        "                        a second instance of the same device, for "
        "the\n"
        "                        save -> restore round trip\n"
        "  --hostile             also send the hostile inputs (every one must\n"
        "                        be refused, and the device keep answering)\n"
        "  --json                one JSON object instead of the table\n"
        "  --fsm-table FILE      the kernel's next-step table as text\n"
        "                        (tests/data/fsm-next-step.txt) instead of\n"
        "                        libvmig's\n"
        "  -v, --verbose         the client's log and the servers' output\n"
        "  -h, --help            this help\n"
        "\n"
        "The rules change the device's state (saves, loads, resets): point it\n"
        "at a device no VM uses.  Exit codes: 0 no rule failed, 1 a rule\n"
        "failed, 2 usage error.\n");
}

/* CMD with every {socket} replaced by @path. */
static int
expand(const char *cmd, const char *path, char *out, size_t len)
{
    const char *p = cmd, *q;
    size_t used = 0;
    bool any = false;

    while ((q = strstr(p, "{socket}")) != NULL) {
        int n =
            snprintf(out + used, len - used, "%.*s%s", (int)(q - p), p, path);

        if (n < 0 || (size_t)n >= len - used) {
            return -E2BIG;
        }
        used += (size_t)n;
        p = q + strlen("{socket}");
        any = true;
    }
    if ((size_t)snprintf(out + used, len - used, "%s", p) >= len - used) {
        return -E2BIG;
    }
    return any ? 0 : -EINVAL;
}

static int
spawn(struct inst *in)
{
    char cmd[2048], line[2100];
    pid_t pid;

    if (expand(in->cmd, in->path, cmd, sizeof(cmd)) < 0) {
        return -EINVAL;
    }
    snprintf(line, sizeof(line), "exec %s", cmd);
    (void)unlink(in->path);
    pid = fork();
    if (pid < 0) {
        return -errno;
    }
    if (pid == 0) {
        FILE *lf = fopen(in->log, "a");

        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (lf != NULL) {
            (void)dup2(fileno(lf), STDOUT_FILENO);
            (void)dup2(fileno(lf), STDERR_FILENO);
        }
        execl("/bin/sh", "sh", "-c", line, (char *)NULL);
        _exit(127);
    }
    in->pid = pid;
    in->spawns++;
    for (int w = 0; w < SPAWN_WAIT_MS; w += 20) {
        struct stat st;
        int status;

        if (stat(in->path, &st) == 0 && S_ISSOCK(st.st_mode)) {
            return 0;
        }
        if (waitpid(pid, &status, WNOHANG) == pid) {
            in->pid = 0;
            in->last_status = status;
            return -ECHILD;
        }
        cf_sleep_ms(20);
    }
    return -ETIMEDOUT;
}

/* The last non-empty line of the server's log. */
static void
last_line(const char *log, char *out, size_t len)
{
    char line[256];
    FILE *lf = fopen(log, "r");

    out[0] = '\0';
    while (lf != NULL && fgets(line, sizeof(line), lf) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] != '\0') {
            snprintf(out, len, "%.*s", (int)(len - 1), line);
        }
    }
    if (lf != NULL) {
        fclose(lf);
    }
}

/* Has the spawned server exited?  Its status and last words then. */
static int
why_gone(void *opaque, char *buf, size_t len)
{
    struct inst *in = opaque;
    int status;

    if (in->cmd == NULL) {
        return -ENOENT;
    }
    /* the socket closes as the process exits: give it a moment */
    for (int w = 0; in->pid > 0 && w < 500; w += 10) {
        if (waitpid(in->pid, &status, WNOHANG) == in->pid) {
            in->last_status = status;
            in->pid = 0;
            last_line(in->log, in->last_words, sizeof(in->last_words));
            break;
        }
        cf_sleep_ms(10);
    }
    if (in->pid > 0) {
        return -ENOENT;
    }
    snprintf(buf, len, "its server exited with status %d (\"%s\")",
             WIFEXITED(in->last_status) ? WEXITSTATUS(in->last_status)
                                        : 128 + WTERMSIG(in->last_status),
             in->last_words);
    return 0;
}

/* The transport cannot reach the server: start it again if it died. */
static int
revive(void *opaque, const char *path)
{
    struct inst *in = opaque;
    int status;

    (void)path;
    if (in->cmd == NULL) {
        return -ENOENT;
    }
    if (in->pid > 0) {
        if (waitpid(in->pid, &status, WNOHANG) != in->pid) {
            return -EBUSY; /* alive: not ours to restart */
        }
        in->last_status = status;
        in->pid = 0;
        last_line(in->log, in->last_words, sizeof(in->last_words));
    }
    return spawn(in);
}

static void
stop(struct inst *in)
{
    int status;

    if (in->pid <= 0) {
        return;
    }
    kill(in->pid, SIGTERM);
    for (int w = 0; w < 2000; w += 10) {
        if (waitpid(in->pid, &status, WNOHANG) == in->pid) {
            in->pid = 0;
            return;
        }
        cf_sleep_ms(10);
    }
    kill(in->pid, SIGKILL);
    (void)waitpid(in->pid, &status, 0);
    in->pid = 0;
}

static void
emit(void *opaque, const struct cf_row *r)
{
    struct out *o = opaque;

    if (o->json) {
        json_object *j = json_object_new_object();

        json_object_object_add(j, "rule", json_object_new_string(r->rule));
        json_object_object_add(
            j, "verdict", json_object_new_string(verdict_names[r->verdict]));
        json_object_object_add(j, "seen", json_object_new_string(r->seen));
        json_object_object_add(j, "clause", json_object_new_string(r->clause));
        json_object_array_add(o->rows, j);
        return;
    }
    printf("%s  %s\n      saw:  %s\n      rule: %s\n",
           verdict_names[r->verdict], r->rule, r->seen, r->clause);
    fflush(stdout);
}

/* The client's messages (refusals it saw): with -v only, the table says
 * what matters. */
static void
log_sink(void *opaque, int level, const char *msg)
{
    const bool *verbose = opaque;

    (void)level;
    if (*verbose) {
        fprintf(stderr, "vmig conform: %s\n", msg);
    }
}

/* The exits of a spawned server, for the report. */
static void
exits_note(const struct inst *in, FILE *f)
{
    if (in->cmd == NULL || in->spawns <= 1) {
        return;
    }
    fprintf(f,
            "note: the %s's server was started %u times (it died under a "
            "rule; last exit status %d%s%s%s)\n",
            in->role, in->spawns,
            WIFEXITED(in->last_status) ? WEXITSTATUS(in->last_status)
                                       : 128 + WTERMSIG(in->last_status),
            in->last_words[0] ? "; its last words: \"" : "", in->last_words,
            in->last_words[0] ? "\"" : "");
}

static int
setup(vmig_ctx_t *ctx, struct inst *in, const char *dir, const char *name)
{
    int ret;

    if (in->cmd != NULL) {
        snprintf(in->path, sizeof(in->path), "%s/%s.sock", dir, name);
        snprintf(in->log, sizeof(in->log), "%s/%s.log", dir, name);
        ret = spawn(in);
        if (ret < 0) {
            fprintf(stderr,
                    "vmig conform: the %s's server did not come up on %s: "
                    "%s (command: %s)\n",
                    in->role, in->path, strerror(-ret), in->cmd);
            return ret;
        }
    } else {
        snprintf(in->path, sizeof(in->path), "%s", in->socket);
    }
    ret = cf_vfu_new(ctx, in->path, revive, why_gone, in, &in->t);
    if (ret < 0) {
        fprintf(stderr, "vmig conform: %s: %s\n", in->path, strerror(-ret));
    }
    return ret;
}

int
vmig_conform_main(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"socket", required_argument, NULL, 's'},
        {"spawn", required_argument, NULL, 'S'},
        {"dest-socket", required_argument, NULL, 'd'},
        {"dest-spawn", required_argument, NULL, 'D'},
        {"hostile", no_argument, NULL, 'H'},
        {"json", no_argument, NULL, 'j'},
        {"fsm-table", required_argument, NULL, 'f'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct inst src = {.role = "device"}, dst = {.role = "second instance"};
    struct out o = {0};
    struct cf cf = {0};
    const char *table = NULL, *tmp = getenv("TMPDIR");
    char dir[256], err[256];
    vmig_ctx_t *ctx = NULL;
    int c, rc = 1;

    optind = 1;
    while ((c = getopt_long(argc, argv, "vh", lopts, NULL)) != -1) {
        switch (c) {
        case 's':
            src.socket = optarg;
            break;
        case 'S':
            src.cmd = optarg;
            break;
        case 'd':
            dst.socket = optarg;
            break;
        case 'D':
            dst.cmd = optarg;
            break;
        case 'H':
            cf.hostile = true;
            break;
        case 'j':
            o.json = true;
            break;
        case 'f':
            table = optarg;
            break;
        case 'v':
            o.verbose = true;
            break;
        case 'h':
            vmig_conform_usage(stdout);
            return 0;
        default:
            vmig_conform_usage(stderr);
            return 2;
        }
    }
    if (optind < argc || (src.socket == NULL) == (src.cmd == NULL) ||
        (dst.socket != NULL && dst.cmd != NULL)) {
        fprintf(stderr, "vmig conform: give exactly one of --socket and "
                        "--spawn (and at most one of --dest-socket and "
                        "--dest-spawn)\n");
        return 2;
    }
    for (int i = 0; i < 2; i++) {
        const char *cmd = i == 0 ? src.cmd : dst.cmd;

        if (cmd != NULL && strstr(cmd, "{socket}") == NULL) {
            fprintf(stderr,
                    "vmig conform: the command '%s' has no {socket}: it "
                    "must name the socket the server listens on\n",
                    cmd);
            return 2;
        }
    }
    if (table != NULL) {
        if (cf_fsm_load(&cf.fsm, table, err, sizeof(err)) < 0) {
            fprintf(stderr, "vmig conform: --fsm-table: %s\n", err);
            return 2;
        }
    } else {
        cf_fsm_from_lib(&cf.fsm);
    }
    if (vmig_ctx_new("conform", log_sink, &o.verbose, &ctx) < 0) {
        return 1;
    }
    vmig_ctx_set_level(ctx, VMIG_LOG_DEBUG);
    snprintf(dir, sizeof(dir), "%s/vmig-conform-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        fprintf(stderr, "vmig conform: mkdtemp %s: %s\n", dir, strerror(errno));
        vmig_ctx_free(ctx);
        return 1;
    }
    if (setup(ctx, &src, dir, "src") < 0 ||
        ((dst.socket != NULL || dst.cmd != NULL) &&
         setup(ctx, &dst, dir, "dst") < 0)) {
        goto out;
    }
    o.rows = json_object_new_array();
    cf.ctx = ctx;
    cf.ops = &cf_vfu_ops;
    cf.src = src.t;
    cf.dst = dst.t;
    cf.emit = emit;
    cf.opaque = &o;
    if (!o.json) {
        printf("vmig conform: vfio-user device at %s%s%s%s\n", src.path,
               src.cmd ? " (spawned: " : "", src.cmd ? src.cmd : "",
               src.cmd ? ")" : "");
        fflush(stdout);
    }
    cf_run(&cf);
    if (o.json) {
        json_object *j = json_object_new_object();

        json_object_object_add(j, "transport",
                               json_object_new_string("vfio-user"));
        json_object_object_add(
            j, "device", json_object_new_string(src.cmd ? src.cmd : src.path));
        json_object_object_add(j, "rows", o.rows);
        o.rows = NULL;
        json_object_object_add(j, "pass",
                               json_object_new_int((int)cf.count[CF_PASS]));
        json_object_object_add(j, "fail",
                               json_object_new_int((int)cf.count[CF_FAIL]));
        json_object_object_add(j, "skip",
                               json_object_new_int((int)cf.count[CF_SKIP]));
        printf("%s\n",
               json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
        json_object_put(j);
    } else {
        printf("\n%u PASS, %u FAIL, %u SKIP\n", cf.count[CF_PASS],
               cf.count[CF_FAIL], cf.count[CF_SKIP]);
    }
    exits_note(&src, stderr);
    exits_note(&dst, stderr);
    rc = cf.count[CF_FAIL] == 0 ? 0 : 1;
out:
    json_object_put(o.rows);
    free(cf.saved);
    cf_vfu_free(src.t);
    cf_vfu_free(dst.t);
    stop(&src);
    stop(&dst);
    if (src.cmd != NULL) {
        if (o.verbose) {
            fprintf(stderr, "vmig conform: the server's output is in %s\n",
                    src.log);
        } else {
            (void)unlink(src.log);
        }
        (void)unlink(src.path);
    }
    if (dst.cmd != NULL) {
        if (!o.verbose) {
            (void)unlink(dst.log);
        }
        (void)unlink(dst.path);
    }
    if (!o.verbose) {
        (void)rmdir(dir);
    }
    vmig_ctx_free(ctx);
    return rc;
}
