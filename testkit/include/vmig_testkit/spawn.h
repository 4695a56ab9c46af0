/* SPDX-License-Identifier: MIT */
/*
 * spawn.h - start a device server in a child process for a test or a
 * benchmark, and wait until it listens.
 */
#ifndef VMIG_TESTKIT_SPAWN_H
#define VMIG_TESTKIT_SPAWN_H

#include <sys/types.h>

/**
 * vmig_tk_spawn_server() - Fork a child that runs @serve(@arg) and exits
 * with what it returns; wait until @path (removed first) is a socket,
 * for as long as the child lives and at most @timeout_ms.  The child is
 * killed (SIGKILL) when the thread that called this ends, so a caller that
 * exits without stopping it leaves no server behind: call it from a thread
 * that outlives the server.
 * @path:       the UNIX socket the child's server listens on.
 * @serve:      the server; its return value is the child's exit status.
 * @arg:        passed to @serve.
 * @timeout_ms: how long the child may take to listen (a loaded machine or
 *              a sanitizer build starts slowly: be generous).
 *
 * Return: the child's pid; -ECHILD when it exited before listening,
 * -ETIMEDOUT when it did not listen in time (it is killed and reaped), or
 * -errno from fork().
 */
pid_t vmig_tk_spawn_server(const char *path, int (*serve)(void *arg), void *arg,
                           unsigned int timeout_ms);

#endif /* VMIG_TESTKIT_SPAWN_H */
