/* SPDX-License-Identifier: MIT */
/*
 * cmd_tls.c - `vmig tls-setup`: a CA and certificates for a pair of agents.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cmd.h"

/* ------------------------------------------------------------ tls-setup */

int
cmd_tls_setup(struct opts *o)
{
    char err[512];
    int ret;

    if (o->setup_dir == NULL) {
        fprintf(stderr, "vmig tls-setup: give the directory to write (see "
                        "'vmig tls-setup --help')\n");
        return EXIT_USAGE;
    }
    if (mkdir(o->setup_dir, 0700) < 0 && errno != EEXIST) {
        fprintf(stderr, "vmig tls-setup: %s: %s\n", o->setup_dir,
                strerror(errno));
        return EXIT_FAIL;
    }
    ret = vmig_tls_setup(o->setup_dir, &o->setup, err, sizeof(err));
    if (ret < 0) {
        fprintf(stderr, "vmig tls-setup: %s\n", err);
        return EXIT_FAIL;
    }
    printf("vmig tls-setup: wrote throwaway credentials to %s:\n"
           "  ca-cert.pem ca-key.pem        the CA (keep ca-key.pem off the "
           "hosts for real use)\n"
           "  server-cert.pem server-key.pem the destination, valid for %s\n"
           "  client-cert.pem client-key.pem the source\n"
           "  keys.psk                       PSK identity '%s'\n"
           "use: vmig receive --tls-creds %s ...; vmig run --tls-creds %s ...\n"
           "     (or --tls-psk %s/keys.psk on both)\n",
           o->setup_dir,
           o->setup.hostnames != NULL ? o->setup.hostnames
                                      : "localhost,127.0.0.1,::1",
           o->setup.psk_identity != NULL ? o->setup.psk_identity
                                         : VMIG_TLS_DEFAULT_IDENTITY,
           o->setup_dir, o->setup_dir, o->setup_dir);
    return EXIT_OK;
}
