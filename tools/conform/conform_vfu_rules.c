/* SPDX-License-Identifier: MIT */
/*
 * conform_vfu_rules.c - the rules of the vfio-user transport itself:
 * VERSION negotiation, device, region and IRQ info, and DEVICE_FEATURE
 * flag checking, partly on raw connections (conform_vfu_raw.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vmig/proto_reply.h>
#include "conform_vfu.h"

static const char c_version[] =
    "vfio-user VERSION: the reply has the proposed major, a minor no higher "
    "than proposed, and optional JSON capabilities (with its NUL)";
static const char c_minor[] =
    "vfio-user VERSION: the minor version in the reply must be equal to or "
    "less than the minor version proposed; the version data is optional";
static const char c_subset[] =
    "vfio-user VERSION: the capability list must be a subset of those "
    "proposed (vmig's x-vmig is answered only when offered)";
static const char c_devinfo[] =
    "vfio-user DEVICE_GET_INFO: argsz, flags (RESET, PCI: this version of "
    "the protocol only supports PCI devices), num_regions, num_irqs";
static const char c_reginfo[] =
    "vfio-user DEVICE_GET_REGION_INFO: every region index below "
    "num_regions answers with its own index; MMAP comes with an fd; a "
    "capability chain stays inside the reply, sparse areas inside the region";
static const char c_irqinfo[] =
    "vfio-user DEVICE_GET_IRQ_INFO: every index below num_irqs answers with "
    "its own index and count";
static const char c_featbits[] =
    "vfio-user DEVICE_FEATURE: flags are a feature index (bits 0-15) and "
    "GET/SET/PROBE (16-18); uAPI: unknown bits are refused, nothing changes";
static const char c_featidx[] =
    "vfio-user DEVICE_FEATURE: only the migration features (1, 2, 6, 7, 8) "
    "are defined; another index fails";

static void
version_rules(struct cf *cf, struct cf_vfu *t)
{
    struct vmig_vfu_caps caps;
    struct vmig_vfu_version asked = {0, 0}, v;
    struct vmig_vfu_reject why;
    struct cf_raw *r = calloc(1, sizeof(*r));
    int ret;

    if (r == NULL) {
        return;
    }
    /* 0.0, no JSON */
    ret = cf_raw_connect(t, r);
    if (ret == 0) {
        ret = cf_raw_version(r, 0, 0, NULL);
    }
    if (ret == 0) {
        ret =
            vmig_vfu_reply_version(&r->m, &asked, &v, &caps, &why) < 0 ? -1 : 0;
        if (ret < 0) {
            cf_row(cf, "VERSION 0.0 without capabilities", c_minor, CF_FAIL,
                   "%s (%s)", why.seen, why.rule);
        } else {
            cf_row(cf, "VERSION 0.0 without capabilities", c_minor, CF_PASS,
                   "answered %u.%u", v.major, v.minor);
        }
    } else {
        cf_row(cf, "VERSION 0.0 without capabilities", c_minor, CF_FAIL, "%s",
               ret > 0 ? strerror(ret) : strerror(-ret));
    }
    cf_raw_close(r);
    /* 0.1 with the spec's capabilities only: no x-vmig in the answer */
    asked.minor = 1;
    ret = cf_raw_connect(t, r);
    if (ret == 0) {
        ret = cf_raw_version(r, 0, 1,
                             "{\"capabilities\":{\"max_msg_fds\":8,"
                             "\"max_data_xfer_size\":1048576}}");
    }
    if (ret == 0 &&
        vmig_vfu_reply_version(&r->m, &asked, &v, &caps, &why) == 0) {
        cf_row(cf, "VERSION: no extension unless offered", c_subset,
               caps.ext == 0 ? CF_PASS : CF_FAIL, "%s",
               caps.ext == 0 ? "no x-vmig in the reply"
                             : "x-vmig answered although not offered");
    } else {
        cf_row(cf, "VERSION: no extension unless offered", c_subset, CF_FAIL,
               "%s", ret != 0 ? strerror(ret > 0 ? ret : -ret) : why.seen);
    }
    cf_raw_close(r);
    free(r);
}

static void
feature_rules(struct cf *cf, struct cf_vfu *t)
{
    struct cf_raw *r = calloc(1, sizeof(*r));
    uint32_t st = 99, to = VMIG_STATE_STOP;
    int ret, ret2, ret3;

    if (r == NULL) {
        return;
    }
    ret = cf_raw_connect(t, r);
    if (ret == 0) {
        ret = cf_raw_version(r, 0, 1, NULL);
    }
    if (ret != 0) {
        cf_row(cf, "DEVICE_FEATURE: unknown flag bits refused", c_featbits,
               CF_FAIL, "no session: %s", strerror(ret > 0 ? ret : -ret));
        cf_raw_close(r);
        free(r);
        return;
    }
    ret = cf_raw_feature(
        r, VMIG_VFU_FEAT_MIG_DEVICE_STATE | VMIG_VFU_FEATURE_GET | (1u << 20),
        NULL, 0);
    ret2 = cf_raw_feature(
        r, VMIG_VFU_FEAT_MIG_DEVICE_STATE | VMIG_VFU_FEATURE_SET | (1u << 21),
        &to, sizeof(to));
    if (ret2 >= 0) {
        ret3 = cf_raw_state(r, &st);
    } else {
        ret3 = ret2;
    }
    if (ret > 0 && ret2 > 0 && ret3 == 0 && st == VMIG_STATE_RUNNING) {
        cf_row(cf, "DEVICE_FEATURE: unknown flag bits refused", c_featbits,
               CF_PASS, "GET|bit 20: %s; SET STOP|bit 21: %s; still RUNNING",
               strerror(ret), strerror(ret2));
    } else {
        cf_row(cf, "DEVICE_FEATURE: unknown flag bits refused", c_featbits,
               CF_FAIL, "GET|bit 20: %s; SET STOP|bit 21: %s; then %s %s",
               ret == 0 ? "accepted" : strerror(ret < 0 ? -ret : ret),
               ret2 == 0 ? "accepted" : strerror(ret2 < 0 ? -ret2 : ret2),
               ret3 == 0 ? "the device is in" : "GET failed:",
               ret3 == 0 ? vmig_state_name(st) : strerror(-ret3));
    }
    ret = cf_raw_feature(r, 0xabcd | VMIG_VFU_FEATURE_GET, NULL, 0);
    cf_row(cf, "DEVICE_FEATURE: an undefined feature refused", c_featidx,
           ret > 0 ? CF_PASS : CF_FAIL, "feature 0xabcd GET: %s",
           ret == 0  ? "answered"
           : ret > 0 ? strerror(ret)
                     : strerror(-ret));
    /* leave it RUNNING whatever happened */
    if (ret2 == 0 && st != VMIG_STATE_RUNNING) {
        to = VMIG_STATE_RUNNING;
        (void)cf_raw_feature(
            r, VMIG_VFU_FEAT_MIG_DEVICE_STATE | VMIG_VFU_FEATURE_SET, &to,
            sizeof(to));
    }
    cf_raw_close(r);
    free(r);
}

static void
info_rules(struct cf *cf, struct cf_vfu *t)
{
    char sum[400] = "", bad[300] = "";
    int ret = cf_vfu_open(t);

    if (ret < 0) {
        cf_row(cf, "VERSION negotiation", c_version, CF_FAIL, "no session: %s",
               strerror(-ret));
        return;
    }
    {
        struct vmig_vfu_caps caps;

        vmig_vfu_client_caps(t->c, &caps);
        cf_row(cf, "VERSION negotiation", c_version, CF_PASS,
               "max_data_xfer_size %u, max_msg_fds %u, x-vmig %s",
               caps.max_data_xfer_size, caps.max_msg_fds,
               caps.ext ? "precopy_info" : "none");
    }
    cf_row(cf, "device info", c_devinfo,
           (t->di.flags & VMIG_VFU_DEV_PCI) ? CF_PASS : CF_FAIL,
           "flags %s%s, %u regions, %u IRQ types",
           (t->di.flags & VMIG_VFU_DEV_PCI) ? "PCI" : "not PCI",
           (t->di.flags & VMIG_VFU_DEV_RESET) ? "|RESET" : "",
           t->di.num_regions, t->di.num_irqs);
    for (unsigned int i = 0; i < t->di.num_regions; i++) {
        struct vmig_vfu_region_info ri;
        size_t u = strlen(sum), ub = strlen(bad);
        int fd = -1, ns = 0;

        ret = vmig_vfu_client_region_info(t->c, i, &ri, &fd);
        if (ret == 0 && (ri.flags & VMIG_VFU_REGION_CAPS)) {
            ns = vmig_vfu_client_region_sparse(t->c, i, NULL, 0);
        }
        if (fd >= 0) {
            close(fd);
        }
        if (ret < 0 || ns < 0 ||
            ((ri.flags & VMIG_VFU_REGION_MMAP) && fd < 0)) {
            snprintf(bad + ub, sizeof(bad) - ub, "%sregion %u: %s",
                     ub ? "; " : "", i,
                     ret < 0  ? strerror(-ret)
                     : ns < 0 ? "capability chain refused"
                              : "MMAP without an fd");
            continue;
        }
        if (ri.size > 0) {
            snprintf(sum + u, sizeof(sum) - u, "%s%u: %llu B %s%s%s%s",
                     u ? ", " : "", i, (unsigned long long)ri.size,
                     (ri.flags & VMIG_VFU_REGION_READ) ? "r" : "",
                     (ri.flags & VMIG_VFU_REGION_WRITE) ? "w" : "",
                     (ri.flags & VMIG_VFU_REGION_MMAP) ? " mmap" : "",
                     ns > 0 ? " sparse" : "");
        }
    }
    if (bad[0] != '\0') {
        cf_row(cf, "region info", c_reginfo, CF_FAIL, "%s", bad);
    } else {
        cf_row(cf, "region info", c_reginfo, CF_PASS, "%s",
               sum[0] ? sum : "no region with a size");
    }
    sum[0] = bad[0] = '\0';
    for (unsigned int i = 0; i < t->di.num_irqs; i++) {
        struct vmig_vfu_irq_info ii;
        size_t u = strlen(sum), ub = strlen(bad);

        ret = vmig_vfu_client_irq_info(t->c, i, &ii);
        if (ret < 0) {
            snprintf(bad + ub, sizeof(bad) - ub, "%sindex %u: %s",
                     ub ? "; " : "", i, strerror(-ret));
        } else if (ii.count > 0) {
            snprintf(sum + u, sizeof(sum) - u, "%s%u: %u", u ? ", " : "", i,
                     ii.count);
        }
    }
    if (bad[0] != '\0') {
        cf_row(cf, "IRQ info", c_irqinfo, CF_FAIL, "%s", bad);
    } else {
        cf_row(cf, "IRQ info", c_irqinfo, CF_PASS, "%s",
               sum[0] ? sum : "no interrupts");
    }
    cf_vfu_close(t);
}

void
cf_vfu_transport_rules(struct cf *cf, void *o)
{
    struct cf_vfu *t = o;

    info_rules(cf, t);
    version_rules(cf, t);
    feature_rules(cf, t);
}
