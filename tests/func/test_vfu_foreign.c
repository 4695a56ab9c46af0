/* SPDX-License-Identifier: MIT */
/*
 * test_vfu_foreign.c - vmig's client and the engine's vfio-user backend
 * over the foreign test server (tests/func/foreign_vfu.py: written from
 * the spec apart from vmig, no vmig extensions), checking what
 * docs/engine.md and docs/vfio-user.md promise for such servers:
 *
 *   stopcopy  STOP_COPY only: no extension negotiated, no descriptor
 *             probed, PCI ids read; PRE_COPY and P2P states refused by the
 *             backend without reaching the server; no sizing asked; a
 *             STOP_COPY save through the backend (replies padded by the
 *             server) loads into a second server, whose digest report
 *             equals the first's; DEVICE_RESET refused in STOP is walked
 *             round; the server never exits (never asked for a state it
 *             did not advertise)
 *   precopy   --pre-copy: bursts in PRE_COPY, the data-size estimate from
 *             the bytes read, the session going on into STOP_COPY
 *
 * usage: test_vfu_foreign <python3> <foreign_vfu.py> <case>
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vmig/engine_vfu.h>
#include <vmig/log.h>
#include "func_check.h"

static int failures;
static vmig_ctx_t *ctx;
static pid_t kids[8]; /* every server started, for the cleanup */
static int nkids;
static char dir[256];
static const char *py, *script;

struct srv {
    pid_t pid;
    char sock[300], rep[300];
};

static int
srv_start(struct srv *s, const char *name, bool precopy, int seed)
{
    char a1[320], a2[320], a3[32];

    snprintf(s->sock, sizeof(s->sock), "%s/%s.sock", dir, name);
    snprintf(s->rep, sizeof(s->rep), "%s/%s.rep", dir, name);
    snprintf(a1, sizeof(a1), "--socket-path=%s", s->sock);
    snprintf(a2, sizeof(a2), "--report=%s", s->rep);
    snprintf(a3, sizeof(a3), "--seed=%d", seed);
    s->pid = fork();
    if (s->pid == 0) {
        execl(py, py, script, a1, a2, a3, "--state-mib=2",
              precopy ? "--pre-copy" : "--xfer=65536", (char *)NULL);
        _exit(127);
    }
    if (s->pid > 0 && nkids < 8) {
        kids[nkids++] = s->pid;
    }
    for (int i = 0; i < 500; i++) {
        struct stat st;

        if (stat(s->sock, &st) == 0) {
            return 0;
        }
        usleep(20000);
    }
    return -ETIMEDOUT;
}

/* SIGTERM: status 0 unless the server exited on its own (status 3: it
 * was asked for a state it did not advertise). */
static int
srv_stop(struct srv *s)
{
    int status = 0;

    if (waitpid(s->pid, &status, WNOHANG) == 0) {
        kill(s->pid, SIGTERM);
        (void)waitpid(s->pid, &status, 0);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The last "@what DIGEST" line of a report file. */
static void
report(const struct srv *s, const char *what, char *out, size_t len)
{
    char line[200];
    FILE *f = fopen(s->rep, "r");

    out[0] = '\0';
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, what, strlen(what)) == 0) {
            snprintf(out, len, "%s", line + strlen(what) + 1);
        }
    }
    if (f != NULL) {
        fclose(f);
    }
}

struct dev {
    struct vmig_vfu_client *c;
    struct vmig_engine_vfu *b;
};

static int
dev_up(struct dev *d, const struct srv *s)
{
    struct vmig_engine_vfu_params p = {.name = "foreign"};
    int ret = connect_retry(ctx, s->sock, VMIG_VFU_EXT__ALL, &d->c);

    return ret < 0 ? ret : vmig_engine_vfu_new(ctx, d->c, &p, &d->b);
}

static void
dev_down(struct dev *d)
{
    vmig_engine_vfu_free(d->b);
    vmig_vfu_client_free(d->c);
    memset(d, 0, sizeof(*d));
}

static void
case_stopcopy(void)
{
    const struct vmig_engine_dev_ops *ops = vmig_engine_vfu_ops();
    static uint8_t buf[256u << 10];
    struct srv a = {0}, b = {0};
    struct dev da = {0}, db = {0};
    struct vmig_vfu_caps caps;
    struct vmig_pci_ids ids;
    enum vmig_state st;
    uint64_t flags, v, w;
    char sa[100], rb[100];
    size_t dl = 99;
    long total = 0;
    ssize_t n;

    CHECK_RC(srv_start(&a, "a", false, 5), 0);
    CHECK_RC(srv_start(&b, "b", false, 6), 0);
    CHECK_RC(dev_up(&da, &a), 0);
    CHECK_RC(dev_up(&db, &b), 0);
    vmig_vfu_client_caps(da.c, &caps);
    CHECK(caps.ext == 0);
    CHECK(caps.max_data_xfer_size == 65536);
    vmig_engine_vfu_identity(da.b, &ids, &dl);
    CHECK(dl == 0); /* no descriptor probe without x-vmig */
    CHECK(ids.valid && ids.vendor == 0x1af4 && ids.device == 0x10f0);
    CHECK_RC(ops->get_flags(da.b, &flags), 0);
    CHECK(flags == VMIG_MIGRATION_STOP_COPY);
    /* states the device lacks are refused here, never sent */
    CHECK_RC(ops->set_state(da.b, VMIG_STATE_PRE_COPY), -EOPNOTSUPP);
    CHECK_RC(ops->set_state(da.b, VMIG_STATE_RUNNING_P2P), -EOPNOTSUPP);
    CHECK_RC(ops->get_state(da.b, &st), 0);
    CHECK(st == VMIG_STATE_RUNNING);
    /* nothing beyond the spec is asked */
    CHECK_RC(ops->data_size(da.b, &v), -EOPNOTSUPP);
    CHECK_RC(ops->precopy_info(da.b, &v, &w), -EOPNOTSUPP);

    /* a save (replies padded by the server) loads into the other one */
    CHECK_RC(ops->set_state(da.b, VMIG_STATE_STOP), 0);
    CHECK_RC(ops->set_state(da.b, VMIG_STATE_STOP_COPY), 0);
    CHECK_RC(ops->set_state(db.b, VMIG_STATE_RESUMING), 0);
    while ((n = ops->read(da.b, buf, sizeof(buf))) > 0) {
        CHECK_RC(ops->write(db.b, buf, (size_t)n), 0);
        total += n;
    }
    CHECK_RC(n, 0);
    CHECK(total > (2l << 20));
    CHECK_RC(ops->set_state(db.b, VMIG_STATE_STOP), 0);
    report(&a, "save", sa, sizeof(sa));
    report(&b, "restore", rb, sizeof(rb));
    CHECK(sa[0] != '\0' && strcmp(sa, rb) == 0);
    CHECK_RC(ops->set_state(db.b, VMIG_STATE_RUNNING), 0);

    /* the server refuses DEVICE_RESET in STOP: walked round */
    CHECK_RC(ops->set_state(da.b, VMIG_STATE_STOP), 0);
    CHECK_RC(ops->reset(da.b), 0);
    CHECK_RC(ops->get_state(da.b, &st), 0);
    CHECK(st == VMIG_STATE_RUNNING);

    dev_down(&da);
    dev_down(&db);
    CHECK_RC(srv_stop(&a), 0);
    CHECK_RC(srv_stop(&b), 0);
}

static void
case_precopy(void)
{
    const struct vmig_engine_dev_ops *ops = vmig_engine_vfu_ops();
    static uint8_t buf[256u << 10];
    struct srv a = {0}, b = {0};
    struct dev da = {0}, db = {0};
    uint64_t flags, est = 0;
    char sa[100], rb[100];
    long pre = 0, post = 0, second = 0;
    size_t dl = 99;
    ssize_t n;

    CHECK_RC(srv_start(&a, "pa", true, 7), 0);
    CHECK_RC(srv_start(&b, "pb", true, 8), 0);
    CHECK_RC(dev_up(&da, &a), 0);
    CHECK_RC(dev_up(&db, &b), 0);
    vmig_engine_vfu_identity(da.b, NULL, &dl);
    CHECK(dl == 0); /* PRE_COPY, but no x-vmig: still not probed */
    CHECK_RC(ops->get_flags(da.b, &flags), 0);
    CHECK(flags == (VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_PRE_COPY));
    CHECK_RC(ops->set_state(da.b, VMIG_STATE_PRE_COPY), 0);
    CHECK_RC(ops->set_state(db.b, VMIG_STATE_RESUMING), 0);
    /* no estimate before anything was read */
    CHECK_RC(ops->data_size(da.b, &est), -EOPNOTSUPP);
    /* the first burst: the initial data, then "no more for now" */
    while ((n = ops->read(da.b, buf, sizeof(buf))) > 0) {
        CHECK_RC(ops->write(db.b, buf, (size_t)n), 0);
        pre += n;
    }
    CHECK_RC(n, -ENOMSG);
    CHECK(pre > (2l << 20));
    /* the estimate comes from the bytes read: the last burst */
    CHECK_RC(ops->data_size(da.b, &est), 0);
    CHECK(est == (uint64_t)pre);
    /* the device runs on: a later burst brings what changed, and the
     * estimate follows it */
    usleep(100000);
    while ((n = ops->read(da.b, buf, sizeof(buf))) > 0) {
        CHECK_RC(ops->write(db.b, buf, (size_t)n), 0);
        pre += n;
        second += n;
    }
    CHECK_RC(n, -ENOMSG);
    CHECK_RC(ops->data_size(da.b, &est), 0);
    CHECK(est == (uint64_t)second);
    /* the session goes on in STOP_COPY to its end */
    CHECK_RC(ops->set_state(da.b, VMIG_STATE_STOP_COPY), 0);
    while ((n = ops->read(da.b, buf, sizeof(buf))) > 0) {
        CHECK_RC(ops->write(db.b, buf, (size_t)n), 0);
        post += n;
    }
    CHECK_RC(n, 0);
    CHECK(post > 0);
    CHECK_RC(ops->set_state(db.b, VMIG_STATE_STOP), 0);
    report(&a, "save", sa, sizeof(sa));
    report(&b, "restore", rb, sizeof(rb));
    CHECK(sa[0] != '\0' && strcmp(sa, rb) == 0);
    printf("precopy: %ld bytes in PRE_COPY, %ld in STOP_COPY\n", pre, post);
    CHECK_RC(ops->set_state(da.b, VMIG_STATE_RUNNING), 0);
    dev_down(&da);
    dev_down(&db);
    CHECK_RC(srv_stop(&a), 0);
    CHECK_RC(srv_stop(&b), 0);
}

static void
log_sink(void *opaque, int level, const char *msg)
{
    (void)opaque;
    if (level <= VMIG_LOG_WARNING) {
        fprintf(stderr, "%s\n", msg);
    }
}

int
main(int argc, char **argv)
{
    char tmpl[] = "/tmp/vmig-foreign-XXXXXX";

    if (argc != 4) {
        fprintf(stderr, "usage: %s <python3> <foreign_vfu.py> <case>\n",
                argv[0]);
        return 2;
    }
    py = argv[1];
    script = argv[2];
    signal(SIGPIPE, SIG_IGN);
    if (mkdtemp(tmpl) == NULL ||
        vmig_ctx_new("test", log_sink, NULL, &ctx) < 0) {
        return 1;
    }
    snprintf(dir, sizeof(dir), "%s", tmpl);
    if (strcmp(argv[3], "stopcopy") == 0) {
        case_stopcopy();
    } else if (strcmp(argv[3], "precopy") == 0) {
        case_precopy();
    } else {
        fprintf(stderr, "unknown case %s\n", argv[3]);
        failures++;
    }
    for (int i = 0; i < nkids; i++) {
        if (kill(kids[i], SIGTERM) == 0) {
            (void)waitpid(kids[i], NULL, 0);
        }
    }
    vmig_ctx_free(ctx);
    {
        char cmd[300];

        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "could not remove %s\n", dir);
        }
    }
    printf("%s: %s\n", argv[3], failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
