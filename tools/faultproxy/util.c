/* SPDX-License-Identifier: MIT */
/*
 * util.c - vmig-faultproxy's shared state (connections, rules, control
 * clients) and small helpers: the verbose log, host:port.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "proxy.h"

struct conn conns[FP_MAX_CONN];
struct fp_rule rules[FP_MAX_RULES];
struct ctl ctls[FP_MAX_CTL];
unsigned int next_conn_id = 1, next_rule_id = 1;
int verbose;
bool quitting;
char target_host[256], target_port[16];

void
fp_say(const char *fmt, ...)
{
    va_list ap;

    if (!verbose) {
        return;
    }
    fprintf(stderr, "faultproxy: [%llu] ", (unsigned long long)vmig__mono_ms());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int
fp_split_hostport(const char *s, char *host, size_t hl, char *port, size_t pl)
{
    const char *colon = strrchr(s, ':');

    if (colon == NULL || colon == s || (size_t)(colon - s) >= hl ||
        strlen(colon + 1) == 0 || strlen(colon + 1) >= pl) {
        return -EINVAL;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    snprintf(port, pl, "%s", colon + 1);
    return 0;
}

void
fp_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl >= 0) {
        (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    }
}
