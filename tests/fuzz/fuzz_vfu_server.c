/* SPDX-License-Identifier: MIT */
/*
 * fuzz_vfu_server.c - libFuzzer harness over the vfio-user server's
 * message handling (decode, state checks, every handler, DMA table,
 * IRQs, migration data, dirty logging).
 *
 * Input: a sequence of chunks, each = one control byte + one message.
 *   control bit 0: pass a 64 KiB memfd with the message
 *   control bit 1: pass two eventfds with the message
 * The message's length is its header's msg_size, clipped to what is left
 * (and written back, so the fuzzer need not get sizes exactly right).
 * A VERSION offering every extension is sent first unless the first byte
 * of the input is 0xff, so later messages reach the handlers.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <vmig/vfu_server.h>
#include "vfu_priv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fdev {
    struct vmig_vfu_server *srv;
    struct vmig_dev *dev;
    uint8_t regs[256];
    uint8_t state[4096];
    size_t rd, wr;
};

static int
f_access(void *opaque, unsigned int region, uint64_t off, void *buf,
         uint32_t len, bool wr)
{
    struct fdev *d = opaque;
    uint8_t tmp[32];
    uint64_t iova;

    if (region != 0 || off >= sizeof(d->regs) || len > sizeof(d->regs) - off) {
        return -EINVAL;
    }
    if (!wr) {
        memcpy(buf, d->regs + off, len);
        return 0;
    }
    memcpy(d->regs + off, buf, len);
    if (off == 0 && len >= 8) {
        /* a "doorbell": DMA at the iova written, then an IRQ */
        memcpy(&iova, buf, 8);
        if (vmig_vfu_dma_read(d->srv, iova, tmp, sizeof(tmp)) == 0) {
            (void)!vmig_vfu_dma_write(d->srv, iova + 7, tmp, sizeof(tmp));
        }
        (void)!vmig_vfu_irq_trigger(d->srv, 0, (unsigned int)(iova % 4));
    }
    if (off == 8 && len >= 1 && ((const uint8_t *)buf)[0] == 0x5a) {
        vmig_vfu_server_device_reset(d->srv);
    }
    return 0;
}

static void
f_reset(void *opaque, enum vmig_reset_cause cause)
{
    struct fdev *d = opaque;

    (void)cause;
    memset(d->regs, 0, sizeof(d->regs));
    d->rd = d->wr = 0;
}

static int
f_step(void *opaque, enum vmig_state from, enum vmig_state to, bool *broken)
{
    struct fdev *d = opaque;

    d->rd = 0;
    if (from == VMIG_STATE_RESUMING && d->wr % 7 == 3) {
        return -EINVAL;
    }
    if (to == VMIG_STATE_RESUMING) {
        d->wr = 0;
    }
    *broken = from == VMIG_STATE_RESUMING && d->wr == 13;
    return 0;
}

static ssize_t
f_read(void *opaque, enum vmig_state state, void *buf, size_t len)
{
    struct fdev *d = opaque;
    bool stopcopy = state == VMIG_STATE_STOP_COPY;
    size_t n = sizeof(d->state) - d->rd;

    if (n == 0) {
        return stopcopy ? 0 : -ENOMSG;
    }
    n = n < len ? n : len;
    n = n > 1000 ? 1000 : n;
    memcpy(buf, d->state + d->rd, n);
    d->rd += n;
    return (ssize_t)n;
}

static int
f_write(void *opaque, const void *buf, size_t len)
{
    struct fdev *d = opaque;
    size_t n = len < sizeof(d->state) ? len : sizeof(d->state);

    memcpy(d->state, buf, n);
    d->wr += len;
    return 0;
}

static int
f_size(void *opaque, uint64_t *bytes)
{
    struct fdev *d = opaque;

    *bytes = sizeof(d->state) - d->rd;
    return 0;
}

static int
f_precopy(void *opaque, uint64_t *initial, uint64_t *dirty)
{
    struct fdev *d = opaque;

    *initial = sizeof(d->state) - d->rd;
    *dirty = 0;
    return 0;
}

static const struct vmig_vfu_dev_ops fops = {
    .region_access = f_access,
};

static const struct vmig_dev_ops fmig = {
    .step = f_step,
    .save = f_read,
    .load = f_write,
    .reset = f_reset,
    .data_size = f_size,
    .precopy_info = f_precopy,
};

static void
feed_version(struct vmig_vfu_server *s)
{
    static const char j[] = "{\"capabilities\":{\"max_msg_fds\":8,"
                            "\"max_data_xfer_size\":65536,"
                            "\"x-vmig\":{\"precopy_info\":true,"
                            "\"bulk_data\":true}}}";
    uint8_t b[16 + 4 + sizeof(j)];
    struct vmig_vfu_hdr h = {.id = 1, .cmd = VMIG_VFU_CMD_VERSION};

    h.size = sizeof(b);
    memcpy(b, &h, 16);
    memset(b + 16, 0, 4);
    b[18] = 1; /* minor 1 */
    memcpy(b + 20, j, sizeof(j));
    (void)vmig__vfu_server_feed(s, b, sizeof(b), NULL, 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fdev d;
    struct vmig_vfu_server *s;
    size_t pos = 0;
    int mfd;

    memset(&d, 0, sizeof(d));
    for (size_t i = 0; i < sizeof(d.state); i++) {
        d.state[i] = (uint8_t)i;
    }
    if (vmig_dev_new(NULL, VMIG_MIGRATION__ALL, &fmig, &d, &d.dev) < 0) {
        return 0;
    }
    if (vmig_vfu_server_new(NULL, &fops, &d, d.dev, &s) < 0) {
        vmig_dev_free(d.dev);
        return 0;
    }
    d.srv = s;
    mfd = memfd_create("fuzz-bar1", MFD_CLOEXEC);
    if (mfd < 0 || ftruncate(mfd, 8192) < 0 ||
        vmig_vfu_server_add_region(s, 0, 256,
                                   VMIG_VFU_REGION_READ | VMIG_VFU_REGION_WRITE,
                                   -1, 0) < 0 ||
        vmig_vfu_server_add_region(s, 1, 8192, VMIG_VFU_REGION_READ, mfd, 0) <
            0 ||
        vmig_vfu_server_add_irq(s, 0, 4) < 0) {
        abort();
    }
    {
        const struct vmig_vfu_sparse_area sp = {4096, 4096};

        if (vmig_vfu_server_set_sparse(s, 1, &sp, 1) < 0) {
            abort();
        }
    }
    close(mfd);
    if (size == 0 || data[0] != 0xff) {
        feed_version(s);
    }
    while (pos + 1 + 16 <= size) {
        uint8_t ctl = data[pos++];
        uint32_t msz;
        size_t len;
        uint8_t *m;
        int fds[2];
        unsigned int nfds = 0;

        memcpy(&msz, data + pos + 4, 4);
        len = size - pos;
        if (msz >= 16 && msz < len) {
            len = msz;
        }
        m = malloc(len);
        if (m == NULL) {
            break;
        }
        memcpy(m, data + pos, len);
        msz = (uint32_t)len;
        memcpy(m + 4, &msz, 4);
        pos += len;
        if (ctl & 1) {
            fds[nfds] = memfd_create("fuzz-ram", MFD_CLOEXEC);
            if (fds[nfds] >= 0 && ftruncate(fds[nfds], 65536) == 0) {
                nfds++;
            } else if (fds[nfds] >= 0) {
                close(fds[nfds]);
            }
        }
        if ((ctl & 2) && nfds == 0) {
            fds[0] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            fds[1] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            nfds = (fds[0] >= 0) + (fds[1] >= 0 && fds[0] >= 0);
        }
        if (vmig__vfu_server_feed(s, m, len, fds, nfds) < 0) {
            /* disconnected: start a new "connection" */
            feed_version(s);
        }
        free(m);
    }
    vmig_vfu_server_free(s);
    vmig_dev_free(d.dev);
    return 0;
}
