/* SPDX-License-Identifier: MIT */
/*
 * vfu_func_hostile.c - test_vfu_func's hostile case: a raw client sends
 * what vmig's client never would (malformed, out-of-range and out-of-order
 * messages), and the test device server refuses each and keeps serving.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vmig/vfu_client.h>
#include <vmig/vfu_server.h>
#include "../fdpass.h"
#include "vfu_testdev.h"
#include "func_check.h"
#include "vfu_func.h"

/* ----------------------------------------------------------- hostile */

static int
raw_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

/* Send a raw message; returns the reply's error (0 ok, > 0 errno), -1
 * when the server closed the connection. */
static int
raw_xact(int fd, uint16_t cmd, const void *p, size_t l, int sfd)
{
    struct vmig_vfu_hdr h = {.id = 7, .cmd = cmd, .size = (uint32_t)(16 + l)};
    struct iovec iov[2] = {{&h, 16}, {(void *)p, l}};
    uint8_t rb[4096];
    ssize_t n;

    if (fdpass_send(fd, iov, l ? 2 : 1, &sfd, sfd >= 0 ? 1 : 0) < 0) {
        return -1;
    }
    n = recv(fd, rb, 16, MSG_WAITALL);
    if (n != 16) {
        return -1;
    }
    memcpy(&h, rb, 16);
    if (h.size > 16 && h.size - 16 <= sizeof(rb)) {
        (void)!recv(fd, rb, h.size - 16, MSG_WAITALL);
    }
    return (h.flags & VMIG_VFU_F_ERROR) ? (int)h.error : 0;
}

static int
raw_version(int fd)
{
    uint8_t b[64] = {0};
    const char *j = "{\"capabilities\":{\"migration\":{\"pgsize\":4096}}}";

    memcpy(b + 4, j, strlen(j) + 1);
    return raw_xact(fd, VMIG_VFU_CMD_VERSION, b, 4 + strlen(j) + 1, -1);
}

void
case_hostile(void)
{
    struct vmig_vfu_client *c = NULL;
    struct vmig_vfu_device_info di;
    char path[300];
    uint8_t junk[8192];
    int fd, mfd;
    pid_t k;
    uint64_t x = 88172645463325252ull;

    /* listen never replaces a file that is not a socket */
    {
        static const struct vmig_vfu_dev_ops noops = {0};
        struct vmig_vfu_server *s = NULL;
        char fpath[300];
        FILE *fp;

        snprintf(fpath, sizeof(fpath), "%s/precious.txt", dir);
        fp = fopen(fpath, "w");
        CHECK(fp != NULL);
        fclose(fp);
        CHECK_RC(vmig_vfu_server_new(ctx, &noops, NULL, NULL, &s), 0);
        CHECK_RC(vmig_vfu_server_listen(s, fpath), -EEXIST);
        CHECK(access(fpath, F_OK) == 0);
        vmig_vfu_server_free(s);
    }
    sock_path(path, sizeof(path), "hostile");
    k = spawn(path, 4, 1 << 20);
    CHECK(k > 0);
    CHECK_RC(connect_retry(ctx, path, 0, &c), 0); /* wait for listen */
    vmig_vfu_client_free(c);
    c = NULL;

    /* garbage: random bytes; the server drops us or answers errors */
    for (size_t i = 0; i < sizeof(junk); i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        junk[i] = (uint8_t)x;
    }
    fd = raw_connect(path);
    CHECK(fd >= 0);
    (void)!send(fd, junk, sizeof(junk), MSG_NOSIGNAL);
    close(fd);

    /* a command before VERSION */
    fd = raw_connect(path);
    CHECK(fd >= 0);
    CHECK_RC(raw_xact(fd, VMIG_VFU_CMD_DEVICE_RESET, NULL, 0, -1), EPROTO);
    /* legacy migration capability accepted */
    CHECK_RC(raw_version(fd), 0);
    CHECK_RC(raw_version(fd), EBUSY);
    /* unknown command, lying sizes */
    CHECK_RC(raw_xact(fd, 14, NULL, 0, -1), ENOSYS);
    {
        struct vmig_vfu_region_rw rw = {0, 0, 1u << 30};

        CHECK_RC(raw_xact(fd, VMIG_VFU_CMD_REGION_WRITE, &rw, sizeof(rw), -1),
                 E2BIG);
        rw.count = 100;
        CHECK_RC(raw_xact(fd, VMIG_VFU_CMD_REGION_WRITE, &rw, sizeof(rw), -1),
                 EPROTO);
    }
    /* overlapping and absurd DMA maps */
    mfd = memfd_create("small", MFD_CLOEXEC);
    CHECK(mfd >= 0 && ftruncate(mfd, 1 << 16) == 0);
    {
        struct vmig_vfu_dma_map m = {32, 3, 0, 1 << 20, 1 << 16};

        CHECK_RC(raw_xact(fd, VMIG_VFU_CMD_DMA_MAP, &m, sizeof(m), mfd), 0);
        m.addr += 4096;
        CHECK_RC(raw_xact(fd, VMIG_VFU_CMD_DMA_MAP, &m, sizeof(m), mfd),
                 EEXIST);
        m.addr = (1 << 20) - 4096;
        m.size = 8192;
        CHECK_RC(raw_xact(fd, VMIG_VFU_CMD_DMA_MAP, &m, sizeof(m), mfd),
                 EEXIST);
        /* larger than the file: would SIGBUS the server on access */
        m.addr = 1ull << 40;
        m.size = 1ull << 30;
        CHECK_RC(raw_xact(fd, VMIG_VFU_CMD_DMA_MAP, &m, sizeof(m), mfd),
                 EINVAL);
        m.size = UINT64_MAX;
        CHECK_RC(raw_xact(fd, VMIG_VFU_CMD_DMA_MAP, &m, sizeof(m), -1), EINVAL);
        m.size = 0;
        CHECK_RC(raw_xact(fd, VMIG_VFU_CMD_DMA_MAP, &m, sizeof(m), -1), EINVAL);
        /* a pipe is not memory */
        {
            int pp[2];

            CHECK(pipe(pp) == 0);
            m.size = 4096;
            CHECK_RC(raw_xact(fd, VMIG_VFU_CMD_DMA_MAP, &m, sizeof(m), pp[0]),
                     EINVAL);
            close(pp[0]);
            close(pp[1]);
        }
    }
    /* a bad SET_IRQS and a bad feature */
    {
        struct vmig_vfu_irq_set is = {20, 0x1 | 0x20, 5, 0, 1};
        struct vmig_vfu_feature f = {8, 0xabcd | VMIG_VFU_FEATURE_GET};

        CHECK_RC(
            raw_xact(fd, VMIG_VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), -1),
            EINVAL);
        CHECK_RC(raw_xact(fd, VMIG_VFU_CMD_DEVICE_FEATURE, &f, sizeof(f), -1),
                 EOPNOTSUPP);
        /* MIG_DATA_READ while RUNNING */
        {
            struct vmig_vfu_mig_data md = {8, 16};

            CHECK_RC(
                raw_xact(fd, VMIG_VFU_CMD_MIG_DATA_READ, &md, sizeof(md), -1),
                EBUSY);
        }
    }
    /* flood of refused messages: disconnected, not a crash */
    {
        int r = 0;

        for (int i = 0; i < 200 && r >= 0; i++) {
            r = raw_xact(fd, 14, NULL, 0, -1);
        }
        CHECK(r == -1);
    }
    close(fd);
    close(mfd);

    /* msg_size below the header, and far above any limit */
    fd = raw_connect(path);
    CHECK(fd >= 0);
    {
        struct vmig_vfu_hdr h = {.id = 1, .cmd = 1, .size = 8};

        (void)!send(fd, &h, sizeof(h), MSG_NOSIGNAL);
        CHECK(recv(fd, junk, 1, 0) == 0); /* closed */
    }
    close(fd);
    fd = raw_connect(path);
    CHECK(fd >= 0);
    {
        struct vmig_vfu_hdr h = {.id = 1, .cmd = 1, .size = 0xffffffffu};

        (void)!send(fd, &h, sizeof(h), MSG_NOSIGNAL);
        CHECK(recv(fd, junk, 1, 0) == 0);
    }
    close(fd);
    /* disconnect mid-message */
    fd = raw_connect(path);
    CHECK(fd >= 0);
    {
        struct vmig_vfu_hdr h = {.id = 1, .cmd = 1, .size = 1000};

        (void)!send(fd, &h, sizeof(h), MSG_NOSIGNAL);
        (void)!send(fd, junk, 100, MSG_NOSIGNAL);
    }
    close(fd);

    /* the socket is private to its owner */
    {
        struct stat st;

        CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    }
    /* after all that, a proper client is served */
    CHECK_RC(connect_retry(ctx, path, VMIG_VFU_EXT__ALL, &c), 0);
    CHECK_RC(vmig_vfu_client_device_info(c, &di), 0);
    CHECK(di.num_regions == 2);
    vmig_vfu_client_free(c);
    CHECK_RC(testdev_stop(k), 0);
}

/* The vfu-testdev program on an inherited socket (--fd), as a VMM
 * would start a vfio-user backend. */
