/* SPDX-License-Identifier: MIT */
/*
 * test_acc_vfu.c - the accelerator over vfio-user, end to end: device
 * servers (acc_serve()) in child processes, the vmig client as the VMM,
 * guest RAM a memfd shared with DMA_MAP, BAR0 through region accesses,
 * interrupts through eventfds, the guest workload (guest-work.h) checking
 * every request.
 *
 * usage: test_acc_vfu <case>
 *   migrate  PRE_COPY (compatibility part) + STOP_COPY with requests in
 *            flight, restore into a fresh server process, continue: every
 *            request exactly once, correct
 *   refuse   a 3-queue-pair destination refuses during PRE_COPY; the
 *            source returns to RUNNING and finishes the work
 *   unmap    guest RAM unmapped under a busy device: clean fault, then
 *            recovery after re-map and a driver restart
 *   tool     the vmig-acc program: bad arguments, --fd=N, options
 *   reset    DEVICE_RESET in PRE_COPY and in STOP_COPY, and the guest's
 *            RESET register in PRE_COPY: the reader gets ENODEV, the
 *            device is RUNNING again
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vmig/vfu_client.h>
#include "acc_flatmem.h"
#include "acc_mig.h"
#include "acc_server.h"
#include "guest-driver.h"
#include "guest-work.h"

#define RAM_SIZE (32u << 20)
#define DRV_GPA 0x1000u
#define WORK_GPA (1u << 20)
#define QPS 2u

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

struct host {
    vmig_ctx_t *ctx;
    struct acc_flatmem mem;
    int efd[ACC_IRQ__COUNT];
    struct vmig_vfu_client *c; /* the current device */
    pid_t pid;
    struct acc_gdrv drv;
    struct acc_gwork work;
};

static uint32_t
bar_read(void *opaque, uint32_t off)
{
    struct host *h = opaque;
    uint32_t v = 0;

    CHECK(vmig_vfu_client_region_read(h->c, ACC_VFU_BAR0, off, &v, 4) == 0);
    return v;
}

static void
bar_write(void *opaque, uint32_t off, uint32_t val)
{
    struct host *h = opaque;

    int rc = vmig_vfu_client_region_write(h->c, ACC_VFU_BAR0, off, &val, 4);

    if (rc != 0) {
        fprintf(stderr, "BAR0 write %#x = %#x: %s\n", off, val, strerror(-rc));
    }
    CHECK(rc == 0);
}

static const struct acc_bar_ops bar_ops = {bar_read, bar_write};

/* Start a device server process on a socketpair; connect and wire it. */
static struct vmig_vfu_client *
spawn(struct host *h, uint32_t qps, pid_t *pid)
{
    struct vmig_vfu_client *c;
    int sv[2];

    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    *pid = fork();
    CHECK(*pid >= 0);
    if (*pid == 0) {
        struct acc_server_cfg cfg = {
            .fd = sv[1],
            .qp_count = qps,
            .isolation = ACC_ISO_QP,
            .log = vmig_log_stderr,
            .level = VMIG_LOG_NOTICE,
        };

        /* Only our end of the pair: an inherited connection of another
         * server would keep that server from seeing its client leave. */
        for (int fd = 3; fd < 1024; fd++) {
            if (fd != sv[1]) {
                close(fd);
            }
        }
        _exit(acc_serve(&cfg) == 0 ? 0 : 1);
    }
    close(sv[1]);
    CHECK(vmig_vfu_client_adopt(h->ctx, sv[0], VMIG_VFU_EXT_PRECOPY_INFO, &c) ==
          0);
    CHECK(vmig_vfu_client_dma_map(c, 0, h->mem.size,
                                  VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE,
                                  h->mem.fd, 0, h->mem.base) == 0);
    CHECK(vmig_vfu_client_set_irqs(c, ACC_VFU_IRQ_INDEX, 0, ACC_IRQ__COUNT,
                                   h->efd) == 0);
    return c;
}

static void
reap_child(struct vmig_vfu_client *c, pid_t pid)
{
    int st = 0;

    vmig_vfu_client_free(c); /* the server exits when its client goes */
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void
host_init(struct host *h)
{
    struct acc_gdrv_config cfg = {
        .qp_count = QPS,
        .sq_size = 16,
        .cq_size = 16,
        .eq_size = 64,
        .aeq_size = 16,
    };
    uint32_t id = 0;

    memset(h, 0, sizeof(*h));
    CHECK(vmig_ctx_new("host", vmig_log_stderr, NULL, &h->ctx) == 0);
    vmig_ctx_set_level(h->ctx, VMIG_LOG_WARNING);
    CHECK(acc_flatmem_new(RAM_SIZE, &h->mem) == 0);
    for (int i = 0; i < ACC_IRQ__COUNT; i++) {
        h->efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        CHECK(h->efd[i] >= 0);
    }
    h->c = spawn(h, QPS, &h->pid);
    CHECK(vmig_vfu_client_region_read(h->c, ACC_VFU_CONFIG, 0, &id, 4) == 0);
    CHECK(id == (ACC_PCI_DEVICE_ID << 16 | ACC_PCI_VENDOR_ID));
    CHECK(acc_gdrv_init(&h->drv, h->mem.base, h->mem.size, DRV_GPA, &cfg,
                        &bar_ops, h) == 0);
    CHECK(acc_gwork_init(&h->work, &h->drv, WORK_GPA, 800, 8192, 5) == 0);
}

/* Run the guest until @until requests completed (or all of them). */
static void
run_until(struct host *h, uint64_t until)
{
    int idle = 0;

    while (!acc_gwork_finished(&h->work) && h->work.st->completed < until) {
        int n = acc_gwork_step(&h->work, &h->drv);

        CHECK(n >= 0);
        if (n == 0) {
            int rc = acc_gdrv_wait_irq(h->efd[ACC_IRQ_COMPLETION], 2000);

            idle = rc == 0 ? idle + 1 : 0;
            CHECK(idle < 5);
        }
    }
}

static void
host_fini(struct host *h)
{
    acc_gwork_fini(&h->work);
    reap_child(h->c, h->pid);
    for (int i = 0; i < ACC_IRQ__COUNT; i++) {
        close(h->efd[i]);
    }
    acc_flatmem_free(&h->mem);
    vmig_ctx_free(h->ctx);
}

/* Read the saving session until -ENOMSG (PRE_COPY) or the end. */
static size_t
drain(struct vmig_vfu_client *c, uint8_t *buf, size_t cap, long *last)
{
    size_t len = 0;
    long n;

    while ((n = vmig_vfu_client_mig_read(c, buf + len, cap - len)) > 0) {
        len += (size_t)n;
    }
    *last = n;
    return len;
}

static void
case_migrate(void)
{
    struct host h;
    struct vmig_vfu_client *dst;
    uint8_t pre[4096], rest[8192];
    size_t npre, nrest;
    pid_t dpid;
    long last;

    host_init(&h);
    run_until(&h, 200);
    /* Requests in flight now: refill and migrate right away. */
    CHECK(acc_gwork_step(&h.work, &h.drv) >= 0);

    dst = spawn(&h, QPS, &dpid);
    CHECK(vmig_vfu_client_set_state(dst, VMIG_STATE_RESUMING) == 0);
    CHECK(vmig_vfu_client_set_state(h.c, VMIG_STATE_PRE_COPY) == 0);
    npre = drain(h.c, pre, sizeof(pre), &last);
    CHECK(last == -ENOMSG && npre > 0);
    CHECK(vmig_vfu_client_mig_write(dst, pre, npre) == 0); /* compatible */
    CHECK(vmig_vfu_client_set_state(h.c, VMIG_STATE_STOP_COPY) == 0);
    nrest = drain(h.c, rest, sizeof(rest), &last);
    CHECK(last == 0 && nrest > 0);
    CHECK(vmig_vfu_client_mig_write(dst, rest, nrest) == 0);
    CHECK(vmig_vfu_client_set_state(dst, VMIG_STATE_RUNNING) == 0);
    reap_child(h.c, h.pid);
    printf("migrated with %llu of %llu requests done, %zu + %zu bytes\n",
           (unsigned long long)h.work.st->completed,
           (unsigned long long)h.work.st->total, npre, nrest);

    /* The destination: new views, from guest memory alone. */
    h.c = dst;
    h.pid = dpid;
    acc_gwork_fini(&h.work);
    CHECK(acc_gdrv_attach(&h.drv, h.mem.base, h.mem.size, DRV_GPA, &bar_ops,
                          &h) == 0);
    CHECK(acc_gwork_attach(&h.work, h.mem.base, h.mem.size, WORK_GPA) == 0);
    run_until(&h, ~0ull);
    CHECK(acc_gwork_verify(&h.work) == 0);
    printf("all %llu requests completed exactly once\n",
           (unsigned long long)h.work.st->total);
    host_fini(&h);
}

static void
case_refuse(void)
{
    struct host h;
    struct vmig_vfu_client *dst;
    uint8_t pre[4096];
    enum vmig_state st;
    size_t npre;
    pid_t dpid;
    long last;

    host_init(&h);
    run_until(&h, 100);
    dst = spawn(&h, QPS + 1, &dpid);
    CHECK(vmig_vfu_client_set_state(dst, VMIG_STATE_RESUMING) == 0);
    CHECK(vmig_vfu_client_set_state(h.c, VMIG_STATE_PRE_COPY) == 0);
    npre = drain(h.c, pre, sizeof(pre), &last);
    CHECK(last == -ENOMSG);
    CHECK(vmig_vfu_client_mig_write(dst, pre, npre) < 0);
    CHECK(vmig_vfu_client_set_state(dst, VMIG_STATE_STOP) < 0);
    reap_child(dst, dpid);
    /* No downtime was spent: back to RUNNING and finish there. */
    CHECK(vmig_vfu_client_set_state(h.c, VMIG_STATE_RUNNING) == 0);
    CHECK(vmig_vfu_client_get_state(h.c, &st) == 0 && st == VMIG_STATE_RUNNING);
    run_until(&h, ~0ull);
    CHECK(acc_gwork_verify(&h.work) == 0);
    printf("refused in PRE_COPY; the source finished all %llu requests\n",
           (unsigned long long)h.work.st->total);
    host_fini(&h);
}

static void
case_reset(void)
{
    struct host h;
    uint8_t buf[4096];
    enum vmig_state st;

    host_init(&h);
    run_until(&h, 50);
    for (int i = 0; i < 2; i++) {
        enum vmig_state target = i ? VMIG_STATE_STOP_COPY : VMIG_STATE_PRE_COPY;

        CHECK(vmig_vfu_client_set_state(h.c, target) == 0);
        CHECK(vmig_vfu_client_mig_read(h.c, buf, 16) == 16);
        CHECK(vmig_vfu_client_reset(h.c) == 0);
        CHECK(vmig_vfu_client_mig_read(h.c, buf, 16) == -ENODEV);
        CHECK(vmig_vfu_client_get_state(h.c, &st) == 0 &&
              st == VMIG_STATE_RUNNING);
        /* Power-on registers: the guest driver must start over. */
        CHECK(bar_read(&h, ACC_REG_CTRL) == 0);
    }
    /* The guest's own RESET register, during PRE_COPY. */
    CHECK(vmig_vfu_client_set_state(h.c, VMIG_STATE_PRE_COPY) == 0);
    CHECK(vmig_vfu_client_mig_read(h.c, buf, 16) == 16);
    bar_write(&h, ACC_REG_RESET, ACC_RESET_MAGIC);
    CHECK(vmig_vfu_client_mig_read(h.c, buf, 16) == -ENODEV);
    CHECK(vmig_vfu_client_get_state(h.c, &st) == 0 && st == VMIG_STATE_RUNNING);
    printf("DEVICE_RESET in PRE_COPY and STOP_COPY, guest RESET register in "
           "PRE_COPY: ENODEV, back to RUNNING\n");
    acc_gwork_fini(&h.work);
    reap_child(h.c, h.pid);
    for (int i = 0; i < ACC_IRQ__COUNT; i++) {
        close(h.efd[i]);
    }
    acc_flatmem_free(&h.mem);
    vmig_ctx_free(h.ctx);
}

/*
 * The VMM unmaps guest RAM under a busy device: DMA_UNMAP waits for the
 * request in flight, later accesses fault (the device records it and stops
 * the queue pairs, no crash); after a re-map and a driver restart the
 * device works again.
 */
static void
case_unmap(void)
{
    struct acc_gdrv_config cfg = {
        .qp_count = QPS,
        .sq_size = 16,
        .cq_size = 16,
        .eq_size = 64,
        .aeq_size = 16,
    };
    struct host h;
    uint32_t status = 0;

    host_init(&h);
    run_until(&h, 100);
    CHECK(acc_gwork_step(&h.work, &h.drv) >= 0); /* queues full again */
    CHECK(vmig_vfu_client_dma_unmap(h.c, 0, h.mem.size) == 0);
    /* Whether or not the queued work already hit the hole: a bad doorbell
     * makes the device report into its (now unmapped) AEQ. */
    bar_write(&h, ACC_QP_REG(0, ACC_QP_SQ_TAIL), 999);
    for (int i = 0; i < 200; i++) {
        status = bar_read(&h, ACC_REG_STATUS);
        if (status & ACC_STATUS_AEQ_FAULT) {
            break;
        }
        (void)acc_gdrv_wait_irq(h.efd[ACC_IRQ_ERROR], 10);
    }
    CHECK(status & ACC_STATUS_AEQ_FAULT); /* faulted, still answering */
    CHECK(vmig_vfu_client_dma_map(h.c, 0, h.mem.size,
                                  VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE,
                                  h.mem.fd, 0, h.mem.base) == 0);
    acc_gwork_fini(&h.work);
    CHECK(acc_gdrv_init(&h.drv, h.mem.base, h.mem.size, DRV_GPA, &cfg, &bar_ops,
                        &h) == 0);
    CHECK(acc_gwork_init(&h.work, &h.drv, WORK_GPA, 300, 8192, 9) == 0);
    run_until(&h, ~0ull);
    CHECK(acc_gwork_verify(&h.work) == 0);
    printf("unmapped under load: faulted cleanly (status %#x), recovered "
           "after re-map and driver restart\n",
           status);
    host_fini(&h);
}

/* The vmig-acc program itself: --fd=N, argument errors, clean exit. */
static void
case_tool(const char *prog)
{
    struct host h;
    uint32_t id = 0, qps = 0;
    int sv[2], st = 0;
    pid_t pid;

    memset(&h, 0, sizeof(h));
    CHECK(vmig_ctx_new("host", vmig_log_stderr, NULL, &h.ctx) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        execl(prog, prog, "--frobnicate", (char *)NULL);
        _exit(127);
    }
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 2);

    /* CLOEXEC: the program keeps only fd 3 (dup2 clears the flag). */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (dup2(sv[1], 3) < 0) {
            _exit(127);
        }
        execl(prog, prog, "--fd=3", "--qps=3", "--isolation=device",
              (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    CHECK(vmig_vfu_client_adopt(h.ctx, sv[0], 0, &h.c) == 0);
    CHECK(vmig_vfu_client_region_read(h.c, ACC_VFU_CONFIG, 0, &id, 4) == 0);
    CHECK(id == (ACC_PCI_DEVICE_ID << 16 | ACC_PCI_VENDOR_ID));
    qps = bar_read(&h, ACC_REG_QP_NUM);
    CHECK(qps == 3);
    CHECK(bar_read(&h, ACC_REG_ISOLATION) == ACC_ISO_DEVICE);
    reap_child(h.c, pid);
    vmig_ctx_free(h.ctx);
    printf("vmig-acc: --fd served, 3 queue pairs, device isolation\n");
}

int
main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc == 3 && strcmp(argv[1], "tool") == 0) {
        case_tool(argv[2]);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: test_acc_vfu migrate|refuse|reset|unmap|"
                        "tool PROG\n");
        return 2;
    }
    if (strcmp(argv[1], "migrate") == 0) {
        case_migrate();
    } else if (strcmp(argv[1], "refuse") == 0) {
        case_refuse();
    } else if (strcmp(argv[1], "reset") == 0) {
        case_reset();
    } else if (strcmp(argv[1], "unmap") == 0) {
        case_unmap();
    } else {
        return 2;
    }
    return 0;
}
