/* SPDX-License-Identifier: MIT */
/*
 * cmd_demo.c - `vmig demo`: two agents on this machine, a migration between
 * them, and a check that the guest carried on where it left off.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>
#include "cmd.h"

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

int
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
