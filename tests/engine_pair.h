/* SPDX-License-Identifier: MIT */
/*
 * engine_pair.h - the destination half of a test migration: a thread that
 * accepts one connection on a listening socket and runs
 * vmig_engine_incoming() on it.  Header-only, for tests.
 */
#ifndef VMIG_TESTS_ENGINE_PAIR_H
#define VMIG_TESTS_ENGINE_PAIR_H

#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vmig/engine.h>

/* @eng and @lfd in; @ret out (the incoming result, or -errno of accept). */
struct ep_dst {
    struct vmig_engine *eng;
    int lfd;
    int ret;
    pthread_t th;
};

static inline void *
ep_dst_main(void *arg)
{
    struct ep_dst *j = arg;
    int fd = accept(j->lfd, NULL, NULL);

    if (fd < 0) {
        j->ret = -errno;
        return NULL;
    }
    j->ret = vmig_engine_incoming(j->eng, fd);
    close(fd);
    return NULL;
}

#endif /* VMIG_TESTS_ENGINE_PAIR_H */
