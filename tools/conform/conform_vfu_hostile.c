/* SPDX-License-Identifier: MIT */
/*
 * conform_vfu_hostile.c - hostile vfio-user inputs (--hostile): malformed
 * and out-of-range messages sent on raw connections (conform_vfu_raw.c);
 * each must be refused and leave the device answering, RUNNING.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "conform_vfu.h"

static const char c_hostile[] =
    "vfio-user Security Considerations: clients should not trust servers, "
    "and vice versa - a malformed or out-of-range message is refused (an "
    "error reply, or the connection closed) and the device keeps answering";

enum h_kind { H_RAW, H_MSG, H_MSG_FD };

struct hostile {
    const char *name;
    bool before_version; /* sent before VERSION */
    enum h_kind kind;
    uint16_t cmd;
    uint8_t p[48];
    size_t len;
    uint32_t hdr_size; /* H_RAW: a header claiming this msg_size */
    unsigned int repeat;
};

/* clang-format off */
static const struct hostile hostiles[] = {
    {"garbage bytes", true, H_RAW, 0, {0}, 0, 0, 0},
    {"msg_size below the header", true, H_RAW, 1, {0}, 0, 8, 0},
    {"msg_size 4 GiB", true, H_RAW, 1, {0}, 0, 0xffffffffu, 0},
    {"a message cut short", true, H_RAW, 1, {0}, 0, 1000, 0},
    {"a command before VERSION", true, H_MSG, VMIG_VFU_CMD_DEVICE_RESET,
     {0}, 0, 0, 0},
    {"VERSION twice", false, H_MSG, VMIG_VFU_CMD_VERSION,
     {0, 0, 1, 0}, 4, 0, 0},
    {"an unknown command (14)", false, H_MSG, 14, {0}, 0, 0, 0},
    {"an unknown command (0xffff)", false, H_MSG, 0xffff, {0}, 0, 0, 0},
    {"REGION_WRITE count above max_data_xfer_size", false, H_MSG,
     VMIG_VFU_CMD_REGION_WRITE, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
     0, 0, 0, 0x40}, 16, 0, 0},
    {"REGION_WRITE count without the data", false, H_MSG,
     VMIG_VFU_CMD_REGION_WRITE, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
     100, 0, 0, 0}, 16, 0, 0},
    {"REGION_READ of region 0xffff", false, H_MSG, VMIG_VFU_CMD_REGION_READ,
     {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 4, 0, 0, 0}, 16, 0, 0},
    {"REGION_READ past the end of region 0", false, H_MSG,
     VMIG_VFU_CMD_REGION_READ, {0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0,
     4, 0, 0, 0}, 16, 0, 0},
    {"DMA_MAP of size 0", false, H_MSG, VMIG_VFU_CMD_DMA_MAP,
     {32, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
      0, 0, 0x10, 0, 0, 0, 0, 0}, 32, 0, 0},
    {"DMA_MAP wrapping the address space", false, H_MSG, VMIG_VFU_CMD_DMA_MAP,
     {32, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
      0, 0, 0, 0, 0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x02}, 32, 0, 0},
    {"DMA_MAP overlapping a mapping", false, H_MSG_FD, VMIG_VFU_CMD_DMA_MAP,
     {32, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
      0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0}, 32, 0, 0},
    {"DMA_UNMAP of a range never mapped", false, H_MSG,
     VMIG_VFU_CMD_DMA_UNMAP, {24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0, 0,
     0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0}, 24, 0, 0},
    {"SET_IRQS with two data types", false, H_MSG,
     VMIG_VFU_CMD_DEVICE_SET_IRQS, {20, 0, 0, 0, 0x23, 0, 0, 0, 0, 0, 0, 0,
     0, 0, 0, 0, 1, 0, 0, 0}, 20, 0, 0},
    {"SET_IRQS on IRQ index 0xffff", false, H_MSG,
     VMIG_VFU_CMD_DEVICE_SET_IRQS, {20, 0, 0, 0, 0x21, 0, 0, 0, 0xff, 0xff,
     0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, 20, 0, 0},
    {"DEVICE_FEATURE with GET and SET", false, H_MSG,
     VMIG_VFU_CMD_DEVICE_FEATURE, {16, 0, 0, 0, 2, 0, 3, 0}, 8, 0, 0},
    {"MIG_DATA_READ in RUNNING", false, H_MSG, VMIG_VFU_CMD_MIG_DATA_READ,
     {8, 0, 0, 0, 0, 0x10, 0, 0}, 8, 0, 0},
    {"MIG_DATA_WRITE in RUNNING", false, H_MSG, VMIG_VFU_CMD_MIG_DATA_WRITE,
     {12, 0, 0, 0, 4, 0, 0, 0, 1, 2, 3, 4}, 12, 0, 0},
    {"200 refused messages in a row", false, H_MSG, 14, {0}, 0, 0, 200},
};
/* clang-format on */

/* Does the device still answer a new client, RUNNING? */
static int
answers(struct cf_vfu *t, char *why, size_t wl)
{
    struct cf_raw *r = calloc(1, sizeof(*r));
    uint32_t st = 99;
    int ret;

    if (r == NULL) {
        return -ENOMEM;
    }
    ret = cf_raw_connect(t, r);
    if (ret == 0) {
        ret = cf_raw_version(r, 0, 1, NULL);
    }
    if (ret == 0) {
        struct vmig_vfu_device_info di = {.argsz = sizeof(di)};

        ret = cf_raw_xact(r, VMIG_VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), -1);
    }
    if (ret == 0) {
        ret = cf_raw_state(r, &st);
    }
    cf_raw_close(r);
    free(r);
    if (ret != 0) {
        snprintf(why, wl, "afterwards the device does not answer: %s",
                 strerror(ret > 0 ? ret : -ret));
        return -EIO;
    }
    if (st != VMIG_STATE_RUNNING) {
        snprintf(why, wl, "afterwards the device is in %s",
                 vmig_state_name(st));
        return -EIO;
    }
    return 0;
}

static void
hostile_one(struct cf *cf, struct cf_vfu *t, const struct hostile *h)
{
    struct cf_raw *r = calloc(1, sizeof(*r));
    char rule[96], why[200] = "";
    int ret;

    if (r == NULL) {
        return;
    }
    snprintf(rule, sizeof(rule), "hostile: %s", h->name);
    ret = cf_raw_connect(t, r);
    if (ret == 0 && !h->before_version) {
        ret = cf_raw_version(r, 0, 1, NULL);
    }
    if (ret != 0) {
        cf_row(cf, rule, c_hostile, CF_FAIL, "no session: %s",
               strerror(ret > 0 ? ret : -ret));
        cf_raw_close(r);
        free(r);
        return;
    }
    if (h->kind == H_RAW) {
        uint8_t junk[4096];
        struct vmig_vfu_hdr hd = {.id = 1, .cmd = h->cmd, .size = h->hdr_size};
        uint64_t x = 88172645463325252ull;

        for (size_t i = 0; i < sizeof(junk); i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            junk[i] = (uint8_t)x;
        }
        if (h->hdr_size != 0) {
            memcpy(junk, &hd, sizeof(hd));
        }
        (void)cf_raw_send(r, junk, h->hdr_size == 1000 ? 100 : sizeof(junk),
                          -1);
        ret = 1; /* no reply expected: the device must only survive it */
    } else {
        unsigned int n = h->repeat ? h->repeat : 1;

        if (h->kind == H_MSG_FD) {
            /* a first mapping for the overlapping one to hit */
            uint8_t m[32] = {32, 0, 0, 0, 3, 0, 0, 0};
            uint64_t a = 0x100000, s = 0x100000;

            memcpy(m + 16, &a, 8);
            memcpy(m + 24, &s, 8);
            (void)cf_raw_xact(r, VMIG_VFU_CMD_DMA_MAP, m, 32, t->memfd);
        }
        for (unsigned int i = 0; i < n; i++) {
            ret = cf_raw_xact(r, h->cmd, h->p, h->len,
                              h->kind == H_MSG_FD ? t->memfd : -1);
            if (ret <= 0) {
                break;
            }
        }
    }
    cf_raw_close(r);
    free(r);
    if (ret == 0) {
        cf_row(cf, rule, c_hostile, CF_FAIL, "accepted");
    } else if (answers(t, why, sizeof(why)) < 0) {
        cf_row(cf, rule, c_hostile, CF_FAIL, "%s", why);
    } else {
        cf_row(cf, rule, c_hostile, CF_PASS, "%s; the device answers",
               h->kind == H_RAW    ? "sent"
               : ret > 0           ? strerror(ret)
               : ret == -ENOTCONN  ? "connection closed"
               : ret == -ETIMEDOUT ? "no reply (5 s)"
                                   : strerror(-ret));
    }
}

void
cf_vfu_hostile_rules(struct cf *cf, void *o)
{
    for (size_t i = 0; i < sizeof(hostiles) / sizeof(hostiles[0]); i++) {
        hostile_one(cf, o, &hostiles[i]);
    }
}
