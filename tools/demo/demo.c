/* SPDX-License-Identifier: MIT */
/*
 * demo.c - `make demo`: runs `vmig demo` from the build tree with the
 * arguments given (see `vmig demo --help`).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
    char *args[32] = {"vmig", "demo"};
    int n = 2;

    for (int i = 1; i < argc && n < 31; i++) {
        args[n++] = argv[i];
    }
    args[n] = NULL;
    execv(VMIG_AGENT_PATH, args);
    perror("vmig-demo: " VMIG_AGENT_PATH);
    return 1;
}
