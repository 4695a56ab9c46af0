/* SPDX-License-Identifier: MIT */
/*
 * vmig-acc - the emulated accelerator (docs/acc.md) as a vfio-user device
 * server, following the spec's backend conventions: --socket-path=PATH or
 * --fd=FDNUM, no daemonizing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/log.h>
#include "acc_model.h"
#include "acc_server.h"

static int
usage(void)
{
    fprintf(stderr,
            "usage: vmig-acc (--socket-path=PATH | --fd=FDNUM)\n"
            "                [--qps=N] [--isolation=device|queue-pair] [-v]\n");
    return 2;
}

int
main(int argc, char **argv)
{
    struct acc_server_cfg cfg = {
        .fd = -1,
        .qp_count = 4,
        .isolation = ACC_ISO_QP,
        .log = vmig_log_stderr,
        .level = VMIG_LOG_INFO,
    };
    int ret;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strncmp(a, "--socket-path=", 14) == 0) {
            cfg.path = a + 14;
        } else if (strncmp(a, "--fd=", 5) == 0) {
            cfg.fd = atoi(a + 5);
        } else if (strncmp(a, "--qps=", 6) == 0) {
            cfg.qp_count = (uint32_t)strtoul(a + 6, NULL, 0);
        } else if (strcmp(a, "--isolation=device") == 0) {
            cfg.isolation = ACC_ISO_DEVICE;
        } else if (strcmp(a, "--isolation=queue-pair") == 0) {
            cfg.isolation = ACC_ISO_QP;
        } else if (strcmp(a, "-v") == 0) {
            cfg.level = VMIG_LOG_DEBUG;
        } else {
            return usage();
        }
    }
    if ((cfg.path == NULL) == (cfg.fd < 0) || cfg.qp_count == 0 ||
        cfg.qp_count > ACC_QP_MAX) {
        return usage();
    }
    ret = acc_serve(&cfg);
    if (ret < 0) {
        fprintf(stderr, "vmig-acc: %s\n", strerror(-ret));
        return 1;
    }
    return 0;
}
