/* SPDX-License-Identifier: MIT */
/*
 * vmig-faultproxy - a TCP relay that injects faults between a migration
 * source and its destination (see fp.h and rules.c for the rules).
 *
 *   vmig-faultproxy --listen HOST:PORT --to HOST:PORT [--control PATH]
 *                   [--port-file PATH] [--arm RULE]... [-v]
 *
 * The control socket (UNIX, one command per line, one reply line each):
 *   arm RULE          -> "ok ID"                 add a rule
 *   wait ID [MS]      -> "fired ID conn=C dir=D offset=O ms=T" | "timeout ID"
 *   release [DIR]     -> "ok"                    end holds and stalls
 *   clear             -> "ok"                    drop rules, holds, limits
 *   status            -> "conn C fwd=OUT/IN back=OUT/IN STATE..." lines, "end"
 *   quit              -> "ok", then the proxy exits
 * ms= is CLOCK_MONOTONIC in milliseconds, so a test can time what follows
 * a fault.  SIGUSR1 cuts every connection, SIGUSR2 releases every hold.
 *
 * One thread, one poll loop (this file: options, signals, the loop); up
 * to FP_MAX_CONN connections at once, each relayed through a bounded
 * buffer per direction (so a hold or a throttle pushes back on the sender
 * as a slow network would) by relay.c, which also fires the rules;
 * control.c serves the control socket; frames.c classifies the stream,
 * rules.c parses rules; util.c holds the shared state (proxy.h).
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

static volatile sig_atomic_t sig_cut, sig_release, sig_quit;

/* ------------------------------------------------------------ main */

static void
on_signal(int sig)
{
    if (sig == SIGUSR1) {
        sig_cut = 1;
    } else if (sig == SIGUSR2) {
        sig_release = 1;
    } else {
        sig_quit = 1;
    }
}

static void
usage(FILE *f)
{
    fprintf(
        f,
        "usage: vmig-faultproxy --listen HOST:PORT --to HOST:PORT\n"
        "                       [--control PATH] [--port-file PATH]\n"
        "                       [--arm RULE]... [-v]\n"
        "Relays TCP from --listen to --to, injecting faults.\n"
        "RULE: [conn=N] DIR WHEN ACTION [ARG [ARG2]]\n"
        "  DIR     fwd | back | both (both: only with now)\n"
        "  WHEN    now | at=OFFSET | frame=TYPE[:COND...][|TYPE...]\n"
        "          COND: pass=N pass>=N last precopy stopcopy nth=N\n"
        "  ACTION  hold | cut | reset | truncate [AFTER] | flip [OFF [BIT]] |\n"
        "          stall MS | throttle BYTES/S | latency MS\n"
        "Control socket commands: arm RULE, wait ID [MS], release "
        "[DIR],\n"
        "  clear, status, quit.  SIGUSR1 cuts every connection, SIGUSR2\n"
        "  releases every hold.  Port 0 picks a free port (printed).\n"
        "Exit codes: 0 success, 1 failure, 2 usage error.\n");
}

static void
loop_once(int lfd, int cfd)
{
    struct pollfd pfd[2 + FP_MAX_CTL + FP_MAX_CONN * 2];
    int who[2 + FP_MAX_CTL + FP_MAX_CONN * 2]; /* index into conns*2+dir... */
    uint64_t now = vmig__mono_ms(), wake = now + 1000;
    nfds_t n = 0;
    int timeout;

    fp_fire_now_rules(now);
    pfd[n] = (struct pollfd){.fd = lfd, .events = POLLIN};
    who[n++] = -1;
    if (cfd >= 0) {
        pfd[n] = (struct pollfd){.fd = cfd, .events = POLLIN};
        who[n++] = -2;
    }
    for (int i = 0; i < FP_MAX_CTL; i++) {
        if (ctls[i].fd >= 0) {
            pfd[n] = (struct pollfd){.fd = ctls[i].fd, .events = POLLIN};
            who[n++] = -10 - i;
            if (ctls[i].wait_rule != 0 && ctls[i].wait_until < wake) {
                wake = ctls[i].wait_until;
            }
        }
    }
    for (unsigned int k = 0; k < FP_MAX_CONN; k++) {
        struct conn *c = &conns[k];
        short ev[2] = {0, 0};

        if (!c->used) {
            continue;
        }
        for (int d = 0; d < FP__DIR_COUNT && c->used; d++) {
            struct pipe *p = &c->p[d];
            uint64_t lim;

            fp_refill(p, now);
            lim = fp_gate(c, p, now);
            while (lim == p->off_out && c->used) {
                uint64_t before = lim;

                if (!fp_check_triggers(c, p, now)) {
                    break;
                }
                lim = fp_gate(c, p, now);
                if (lim == before) {
                    break;
                }
            }
            if (!c->used) {
                break;
            }
            if (!p->in_eof &&
                (p->truncated || p->end - p->start < FP_BUF_SIZE)) {
                ev[d == FP_FWD ? 0 : 1] |= POLLIN;
            }
            if (lim > p->off_out) {
                ev[d == FP_FWD ? 1 : 0] |= POLLOUT;
            }
            if (p->stall_until > now && p->stall_until < wake) {
                wake = p->stall_until;
            }
            if (p->latency > 0 && p->st_n > 0 && lim == p->off_out) {
                uint64_t t = p->st[p->st_head].t + p->latency;

                wake = t > now && t < wake ? t : wake;
            }
            if (p->bps > 0 && p->off_in > p->off_out && lim == p->off_out) {
                wake = now + 5 < wake ? now + 5 : wake;
            }
        }
        if (!c->used) {
            continue;
        }
        fp_conn_settle(c);
        if (!c->used) {
            continue;
        }
        for (int i = 0; i < 2; i++) {
            /* nothing wanted: ignored (a hung-up socket would wake us) */
            pfd[n] = (struct pollfd){.fd = ev[i] != 0 ? c->fd[i] : -1,
                                     .events = ev[i]};
            who[n++] = (int)(k * 2 + (unsigned int)i);
        }
    }
    timeout = wake > now ? (int)(wake - now) : 0;
    if (poll(pfd, n, timeout) < 0 && errno != EINTR) {
        return;
    }
    now = vmig__mono_ms();
    for (nfds_t i = 0; i < n; i++) {
        short re = pfd[i].revents;

        if (re == 0) {
            continue;
        }
        if (who[i] == -1) {
            fp_conn_accept(lfd);
        } else if (who[i] == -2) {
            int fd = accept4(cfd, NULL, NULL, SOCK_CLOEXEC);

            for (int j = 0; fd >= 0 && j < FP_MAX_CTL; j++) {
                if (ctls[j].fd < 0) {
                    memset(&ctls[j], 0, sizeof(ctls[j]));
                    ctls[j].fd = fd;
                    fd = -1;
                }
            }
            if (fd >= 0) {
                close(fd);
            }
        } else if (who[i] <= -10) {
            fp_ctl_read(&ctls[-10 - who[i]], now);
        } else if (who[i] >= 0) {
            struct conn *c = &conns[who[i] / 2];
            int side = who[i] % 2; /* 0 client, 1 target */
            struct pipe *rp = &c->p[side == 0 ? FP_FWD : FP_BACK];
            struct pipe *wp = &c->p[side == 0 ? FP_BACK : FP_FWD];

            if (!c->used) {
                continue;
            }
            if (re & (POLLIN | POLLHUP | POLLERR)) {
                (void)fp_pipe_read(c, rp, now);
            }
            if ((re & POLLOUT) && c->used) {
                fp_refill(wp, now);
                if (fp_pipe_write(c, wp, fp_gate(c, wp, now)) < 0) {
                    fp_conn_close(c, true);
                }
            }
        }
    }
    for (int i = 0; i < FP_MAX_CTL; i++) {
        struct ctl *k = &ctls[i];
        struct fp_rule *r;

        if (k->fd < 0 || k->wait_rule == 0) {
            continue;
        }
        r = fp_rule_find(k->wait_rule);
        if (r == NULL) {
            fp_ctl_reply(k, "error rule %u cleared", k->wait_rule);
            k->wait_rule = 0;
        } else if (r->fired) {
            fp_ctl_wait_done(k, r);
        } else if (now >= k->wait_until) {
            fp_ctl_reply(k, "timeout %u", k->wait_rule);
            k->wait_rule = 0;
        }
        if (k->wait_rule == 0 && k->len > 0) {
            fp_ctl_read(k, now); /* commands queued behind the wait */
        }
    }
}

int
main(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"to", required_argument, NULL, 't'},
        {"control", required_argument, NULL, 'c'},
        {"port-file", required_argument, NULL, 'p'},
        {"arm", required_argument, NULL, 'a'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *listen_at = NULL, *to = NULL, *ctl_path = NULL;
    const char *port_file = NULL;
    const char *arms[FP_MAX_RULES];
    unsigned int narm = 0;
    struct sigaction sa = {.sa_handler = on_signal};
    int opt, lfd, cfd = -1, port = 0;
    char err[256];

    while ((opt = getopt_long(argc, argv, "v", lopts, NULL)) != -1) {
        switch (opt) {
        case 'l':
            listen_at = optarg;
            break;
        case 't':
            to = optarg;
            break;
        case 'c':
            ctl_path = optarg;
            break;
        case 'p':
            port_file = optarg;
            break;
        case 'a':
            if (narm == FP_MAX_RULES) {
                fprintf(stderr, "vmig-faultproxy: too many --arm\n");
                return 2;
            }
            arms[narm++] = optarg;
            break;
        case 'v':
            verbose++;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (listen_at == NULL || to == NULL || optind != argc ||
        fp_split_hostport(to, target_host, sizeof(target_host), target_port,
                          sizeof(target_port)) < 0) {
        usage(stderr);
        return 2;
    }
    for (unsigned int i = 0; i < narm; i++) {
        if (fp_rule_add(arms[i], err, sizeof(err)) < 0) {
            fprintf(stderr, "vmig-faultproxy: --arm '%s': %s\n", arms[i], err);
            return 2;
        }
    }
    for (int i = 0; i < FP_MAX_CTL; i++) {
        ctls[i].fd = -1;
    }
    signal(SIGPIPE, SIG_IGN);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    lfd = fp_tcp_listen(listen_at, &port);
    if (lfd < 0) {
        fprintf(stderr, "vmig-faultproxy: cannot listen on %s: %s\n", listen_at,
                strerror(-lfd));
        return 1;
    }
    if (ctl_path != NULL) {
        cfd = fp_ctl_listen(ctl_path);
        if (cfd < 0) {
            fprintf(stderr, "vmig-faultproxy: control socket %s: %s\n",
                    ctl_path, strerror(-cfd));
            return 1;
        }
    }
    if (port_file != NULL) {
        char tmp[4096];
        FILE *f;

        /* written whole, then renamed: a reader never sees half of it */
        snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
        f = fopen(tmp, "w");
        if (f == NULL || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 ||
            rename(tmp, port_file) < 0) {
            fprintf(stderr, "vmig-faultproxy: cannot write %s\n", port_file);
            return 1;
        }
    }
    printf("vmig-faultproxy: listening on port %d, relaying to %s\n", port, to);
    fflush(stdout);
    while (!quitting && !sig_quit) {
        if (sig_cut) {
            sig_cut = 0;
            for (unsigned int k = 0; k < FP_MAX_CONN; k++) {
                if (conns[k].used) {
                    fp_conn_close(&conns[k], false);
                }
            }
        }
        if (sig_release) {
            sig_release = 0;
            fp_release_all(-1);
        }
        loop_once(lfd, cfd);
    }
    for (unsigned int k = 0; k < FP_MAX_CONN; k++) {
        if (conns[k].used) {
            fp_conn_close(&conns[k], false);
        }
    }
    for (int i = 0; i < FP_MAX_CTL; i++) {
        if (ctls[i].fd >= 0) {
            close(ctls[i].fd);
        }
    }
    close(lfd);
    if (cfd >= 0) {
        close(cfd);
        (void)unlink(ctl_path);
    }
    return 0;
}
