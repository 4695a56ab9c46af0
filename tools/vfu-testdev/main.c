/* SPDX-License-Identifier: MIT */
/*
 * vfu-testdev - the vfio-user test device (tests/func/vfu_testdev.h) as a
 * program, following the spec's backend conventions: --socket-path=PATH
 * or --fd=FDNUM, no daemonizing, SIGTERM ends it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/log.h>
#include "vfu_testdev.h"

static int
usage(void)
{
    fprintf(stderr,
            "usage: vfu-testdev (--socket-path=PATH | --fd=FDNUM)\n"
            "                   [--seed=N] [--size=MiB] [--no-dma-log] [-v]\n");
    return 2;
}

int
main(int argc, char **argv)
{
    const char *path = NULL;
    unsigned long long seed = 1, mib = 4;
    int fd = -1, level = VMIG_LOG_INFO;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strncmp(a, "--socket-path=", 14) == 0) {
            path = a + 14;
        } else if (strncmp(a, "--fd=", 5) == 0) {
            fd = atoi(a + 5);
        } else if (strncmp(a, "--seed=", 7) == 0) {
            seed = strtoull(a + 7, NULL, 0);
        } else if (strncmp(a, "--size=", 7) == 0) {
            mib = strtoull(a + 7, NULL, 0);
        } else if (strcmp(a, "--no-dma-log") == 0) {
            testdev_no_dma_log = true;
        } else if (strcmp(a, "-v") == 0) {
            level = VMIG_LOG_DEBUG;
        } else {
            return usage();
        }
    }
    if ((path == NULL) == (fd < 0) || mib == 0 || mib > 4096) {
        return usage();
    }
    return testdev_serve(path, fd, seed, (size_t)mib << 20, vmig_log_stderr,
                         level);
}
