/* SPDX-License-Identifier: MIT */
/*
 * control.c - vmig-faultproxy's control socket (one command per line:
 * arm, wait, release, clear, status, quit) and its listening sockets.
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

/* ------------------------------------------------------------ control */

void
fp_ctl_reply(struct ctl *k, const char *fmt, ...)
{
    char line[CTL_LINE + 64];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n > sizeof(line) - 2) {
        n = (int)sizeof(line) - 2;
    }
    line[n++] = '\n';
    (void)send(k->fd, line, (size_t)n, MSG_NOSIGNAL);
}

struct fp_rule *
fp_rule_find(unsigned int id)
{
    for (unsigned int i = 0; i < FP_MAX_RULES; i++) {
        if (rules[i].used && rules[i].id == id) {
            return &rules[i];
        }
    }
    return NULL;
}

int
fp_rule_add(const char *spec, char *err, size_t errlen)
{
    struct fp_rule *slot = NULL;

    for (unsigned int i = 0; i < FP_MAX_RULES; i++) {
        if (!rules[i].used) {
            slot = &rules[i];
            break;
        }
    }
    if (slot == NULL) {
        snprintf(err, errlen, "too many rules (clear some)");
        return -1;
    }
    if (fp_rule_parse(spec, slot, err, errlen) < 0) {
        memset(slot, 0, sizeof(*slot));
        return -1;
    }
    slot->id = next_rule_id++;
    fp_rule_scan_recent(slot);
    fp_say("rule %u: %s", slot->id, spec);
    return (int)slot->id;
}

void
fp_release_all(int dir)
{
    for (unsigned int k = 0; k < FP_MAX_CONN; k++) {
        for (int d = 0; d < FP__DIR_COUNT && conns[k].used; d++) {
            if (dir < 0 || dir == d) {
                conns[k].p[d].hold = false;
                conns[k].p[d].stall_until = 0;
            }
        }
    }
}

static void
clear_all(void)
{
    memset(rules, 0, sizeof(rules));
    for (unsigned int k = 0; k < FP_MAX_CONN; k++) {
        for (int d = 0; d < FP__DIR_COUNT && conns[k].used; d++) {
            struct pipe *p = &conns[k].p[d];

            p->hold = false;
            p->stall_until = 0;
            p->bps = 0;
            p->latency = 0;
            p->nflip = 0;
        }
    }
}

void
fp_ctl_wait_done(struct ctl *k, const struct fp_rule *r)
{
    fp_ctl_reply(k, "fired %u conn=%u dir=%s offset=%llu ms=%llu", r->id,
                 r->fired_conn, fp_dir_name(r->fired_dir),
                 (unsigned long long)r->fired_off,
                 (unsigned long long)r->fired_ms);
    k->wait_rule = 0;
}

static void
ctl_status(struct ctl *k, uint64_t now)
{
    for (unsigned int i = 0; i < FP_MAX_CONN; i++) {
        const struct conn *c = &conns[i];
        char st[2][96];

        if (!c->used) {
            continue;
        }
        for (int d = 0; d < FP__DIR_COUNT; d++) {
            const struct pipe *p = &c->p[d];

            snprintf(
                st[d], sizeof(st[d]), "%llu/%llu%s%s%s%s last=%s",
                (unsigned long long)p->off_out, (unsigned long long)p->off_in,
                p->hold ? ",held" : "", p->stall_until > now ? ",stalled" : "",
                p->truncated ? ",truncated" : "", p->in_eof ? ",eof" : "",
                p->parser.frames > 0 ? fp_frame_type_name(p->parser.last_type)
                                     : "-");
        }
        fp_ctl_reply(k, "conn %u fwd=%s back=%s", c->id, st[0], st[1]);
    }
    fp_ctl_reply(k, "end");
}

static void
ctl_command(struct ctl *k, char *line, uint64_t now)
{
    char err[256] = "";
    char *arg;

    line[strcspn(line, "\r\n")] = '\0';
    arg = strchr(line, ' ');
    if (arg != NULL) {
        *arg++ = '\0';
    }
    if (strcmp(line, "arm") == 0 && arg != NULL) {
        int id = fp_rule_add(arg, err, sizeof(err));

        if (id < 0) {
            fp_ctl_reply(k, "error %s", err);
        } else {
            fp_fire_now_rules(now);
            fp_ctl_reply(k, "ok %d", id);
        }
    } else if (strcmp(line, "wait") == 0 && arg != NULL) {
        unsigned int id = (unsigned int)strtoul(arg, &arg, 10);
        unsigned long ms = strtoul(arg, NULL, 10);
        struct fp_rule *r = fp_rule_find(id);

        if (r == NULL) {
            fp_ctl_reply(k, "error no rule %u", id);
        } else if (r->fired) {
            fp_ctl_wait_done(k, r);
        } else {
            k->wait_rule = id;
            k->wait_until = now + (ms > 0 ? ms : 60000);
        }
    } else if (strcmp(line, "release") == 0) {
        int dir = -1;

        if (arg != NULL) {
            dir = strcmp(arg, "fwd") == 0    ? FP_FWD
                  : strcmp(arg, "back") == 0 ? FP_BACK
                                             : -1;
        }
        fp_release_all(dir);
        fp_ctl_reply(k, "ok");
    } else if (strcmp(line, "clear") == 0) {
        clear_all();
        fp_ctl_reply(k, "ok");
    } else if (strcmp(line, "status") == 0) {
        ctl_status(k, now);
    } else if (strcmp(line, "quit") == 0) {
        fp_ctl_reply(k, "ok");
        quitting = true;
    } else {
        fp_ctl_reply(k,
                     "error unknown command '%s' (arm, wait, release, "
                     "clear, status, quit)",
                     line);
    }
}

void
fp_ctl_read(struct ctl *k, uint64_t now)
{
    ssize_t n = recv(k->fd, k->line + k->len, sizeof(k->line) - 1 - k->len,
                     MSG_DONTWAIT);
    char *nl;

    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        close(k->fd);
        k->fd = -1;
        return;
    }
    k->len += (size_t)n;
    k->line[k->len] = '\0';
    while (k->wait_rule == 0 && (nl = strchr(k->line, '\n')) != NULL) {
        size_t used = (size_t)(nl - k->line) + 1;
        char cmd[CTL_LINE];

        memcpy(cmd, k->line, used);
        cmd[used] = '\0';
        memmove(k->line, k->line + used, k->len - used + 1);
        k->len -= used;
        ctl_command(k, cmd, now);
    }
    if (k->len == sizeof(k->line) - 1) {
        fp_ctl_reply(k, "error line too long");
        k->len = 0;
    }
}

int
fp_ctl_listen(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(a.sun_path)) {
        return -ENAMETOOLONG;
    }
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    (void)unlink(path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4) < 0) {
        int ret = -errno;

        close(fd);
        return ret;
    }
    return fd;
}

int
fp_tcp_listen(const char *spec, int *port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *ai;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[256], ps[16];
    int fd, one = 1, rcvbuf = FP_SOCK_RCVBUF;

    if (fp_split_hostport(spec, host, sizeof(host), ps, sizeof(ps)) < 0 ||
        getaddrinfo(host, ps, &hints, &ai) != 0) {
        return -EINVAL;
    }
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 16) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        int ret = -errno;

        if (fd >= 0) {
            close(fd);
        }
        freeaddrinfo(ai);
        return ret;
    }
    freeaddrinfo(ai);
    *port =
        ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                       : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}
