/* SPDX-License-Identifier: MIT */
/*
 * fuzz_vfu_client.c - libFuzzer harness for the vfio-user client against
 * a hostile server: the input is written, as is, to the client's socket
 * (then the socket is closed) while the client negotiates and runs a
 * fixed sequence of calls.  Request ids are 1, 2, 3, ... in call order, so
 * a seed can answer them; DMA_READ/DMA_WRITE commands in the input are
 * served from a small mapped window.  Nothing may crash, hang or leak.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vmig/vfu_client.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct feed {
    int fd;
    const uint8_t *data;
    size_t size;
};

static void *
feeder(void *arg)
{
    struct feed *f = arg;
    size_t off = 0;

    while (off < f->size) {
        ssize_t n = send(f->fd, f->data + off, f->size - off, MSG_NOSIGNAL);

        if (n <= 0) {
            break;
        }
        off += (size_t)n;
    }
    /* EOF after the script: every later wait ends at once */
    shutdown(f->fd, SHUT_WR);
    return NULL;
}

/* Drain what the client sends so its writes never block. */
static void *
drainer(void *arg)
{
    int fd = *(int *)arg;
    char b[65536];

    while (recv(fd, b, sizeof(b), 0) > 0) {
    }
    return NULL;
}

static int
sink(void *opaque, const void *buf, size_t len)
{
    (void)opaque;
    (void)buf;
    (void)len;
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t window[8192];
    struct vmig_vfu_client *c = NULL;
    struct feed f = {.data = data, .size = size};
    pthread_t th1, th2;
    int sv[2], srv;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        return 0;
    }
    srv = sv[1];
    f.fd = srv;
    if (pthread_create(&th1, NULL, feeder, &f) != 0) {
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    if (pthread_create(&th2, NULL, drainer, &srv) != 0) {
        abort();
    }
    if (vmig_vfu_client_adopt(NULL, sv[0], VMIG_VFU_EXT__ALL, &c) == 0) {
        struct vmig_vfu_device_info di;
        struct vmig_vfu_region_info ri;
        struct vmig_vfu_irq_info ii;
        struct vmig_vfu_sparse_area sp[4];
        uint64_t v, bm[4];
        enum vmig_state st;
        uint8_t buf[64];
        int rfd = -1;

        (void)!vmig_vfu_client_dma_map(c, 0x10000, sizeof(window), 3, -1, 0,
                                       window);
        (void)!vmig_vfu_client_device_info(c, &di);
        (void)!vmig_vfu_client_region_info(c, 0, &ri, &rfd);
        if (rfd >= 0) {
            close(rfd);
        }
        (void)!vmig_vfu_client_region_sparse(c, 1, sp, 4);
        (void)!vmig_vfu_client_irq_info(c, 0, &ii);
        (void)!vmig_vfu_client_region_read(c, 0, 0, buf, sizeof(buf));
        (void)!vmig_vfu_client_region_write(c, 0, 0, buf, 8);
        (void)!vmig_vfu_client_mig_flags(c, &v);
        (void)!vmig_vfu_client_get_state(c, &st);
        (void)!vmig_vfu_client_set_state(c, VMIG_STATE_STOP_COPY);
        (void)!vmig_vfu_client_precopy_info(c, &v, &v);
        (void)!vmig_vfu_client_mig_read(c, buf, sizeof(buf));
        (void)!vmig_vfu_client_mig_save(c, sink, NULL, &v);
        (void)!vmig_vfu_client_mig_write(c, buf, sizeof(buf));
        (void)!vmig_vfu_client_log_report(c, 0x10000, 8192, 4096, bm);
        (void)!vmig_vfu_client_service(c, 0);
        vmig_vfu_client_free(c);
    }
    /* the client's end is closed (by free or a failed adopt): the
     * drainer sees EOF */
    pthread_join(th1, NULL);
    pthread_join(th2, NULL);
    close(srv);
    return 0;
}
