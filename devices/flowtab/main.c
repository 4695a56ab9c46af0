/* SPDX-License-Identifier: MIT */
/*
 * vmig-flowtab - the flowtab device (docs/flowtab.md) as a vfio-user
 * server program, following the spec's backend conventions:
 * --socket-path=PATH or --fd=FDNUM, no daemonizing, SIGTERM ends it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/log.h>
#include "flowtab_server.h"

static int
usage(void)
{
    fprintf(
        stderr,
        "usage: vmig-flowtab (--socket-path=PATH | --fd=FDNUM)\n"
        "                    [--state=MiB] [--chunk=KiB] [--id=N]\n"
        "                    [--peer=PATH] [--no-p2p] [--no-precopy] [-v]\n");
    return 2;
}

int
main(int argc, char **argv)
{
    struct ft_server_cfg cfg = {0};
    const char *path = NULL;
    unsigned long long mib = 16, kib = 64;
    int fd = -1, level = VMIG_LOG_INFO;

    cfg.model.mig_flags = FT_MIG_FLAGS;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strncmp(a, "--socket-path=", 14) == 0) {
            path = a + 14;
        } else if (strncmp(a, "--fd=", 5) == 0) {
            fd = atoi(a + 5);
        } else if (strncmp(a, "--state=", 8) == 0) {
            mib = strtoull(a + 8, NULL, 0);
        } else if (strncmp(a, "--chunk=", 8) == 0) {
            kib = strtoull(a + 8, NULL, 0);
        } else if (strncmp(a, "--id=", 5) == 0) {
            cfg.model.device_id = (uint32_t)strtoul(a + 5, NULL, 0);
        } else if (strncmp(a, "--peer=", 7) == 0) {
            cfg.peer = a + 7;
        } else if (strcmp(a, "--no-p2p") == 0) {
            cfg.model.mig_flags &= ~(uint32_t)VMIG_MIGRATION_P2P;
        } else if (strcmp(a, "--no-precopy") == 0) {
            cfg.model.mig_flags &= ~(uint32_t)VMIG_MIGRATION_PRE_COPY;
        } else if (strcmp(a, "-v") == 0) {
            level = VMIG_LOG_DEBUG;
        } else {
            return usage();
        }
    }
    if ((path == NULL) == (fd < 0) || mib == 0 || mib > 16384 || kib < 4 ||
        kib > 16384) {
        return usage();
    }
    cfg.model.state_bytes = (uint64_t)mib << 20;
    cfg.model.chunk_bytes = (uint32_t)(kib << 10);
    return ft_server_serve(path, fd, &cfg, vmig_log_stderr, level);
}
