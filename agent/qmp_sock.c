/* SPDX-License-Identifier: MIT */
/*
 * qmp_sock.c - the QMP socket on disk and who may use it.  Whoever can
 * talk to it can migrate, cancel or quit the VM, so:
 *
 * - the socket is created mode 0600 whatever the process umask;
 * - its directory must belong to us (or root) and, when others may write
 *   to it, be sticky (like /tmp): otherwise another user could replace
 *   our socket with theirs and read what our clients send;
 * - a path where a live agent answers is refused ("in use by pid N"): two
 *   agents on one socket would silently split their clients; a socket
 *   nobody answers on is stale (its agent died) and is replaced;
 * - each connection's peer credentials (SO_PEERCRED) are checked: only
 *   our own uid or root may issue commands.
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "qmp.h"

/* The directory that will hold the socket may not let others swap it. */
static int
check_dir(const char *path, char *err, size_t len)
{
    char copy[sizeof(((struct sockaddr_un *)0)->sun_path)];
    const char *dir;
    struct stat st;

    snprintf(copy, sizeof(copy), "%s", path);
    dir = dirname(copy);
    if (stat(dir, &st) < 0) {
        int e = errno;

        snprintf(err, len, "cannot use directory %s for the QMP socket: %s",
                 dir, strerror(e));
        return -e;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, len, "%s is not a directory", dir);
        return -ENOTDIR;
    }
    if (st.st_uid != geteuid() && st.st_uid != 0) {
        snprintf(err, len,
                 "directory %s belongs to uid %u, not to us (uid %u) or "
                 "root: its owner could replace the QMP socket; put it in a "
                 "directory of your own (e.g. $XDG_RUNTIME_DIR)",
                 dir, (unsigned int)st.st_uid, (unsigned int)geteuid());
        return -EPERM;
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 &&
        (st.st_mode & S_ISVTX) == 0) {
        snprintf(err, len,
                 "directory %s is writable by other users and not sticky: "
                 "they could replace the QMP socket; put it in a directory "
                 "of your own (e.g. $XDG_RUNTIME_DIR) or make this one "
                 "chmod o-w",
                 dir);
        return -EPERM;
    }
    return 0;
}

/*
 * Something exists at @path: a live agent's socket (refused), a stale
 * socket (removed) or something else (refused).
 */
static int
check_existing(const char *path, char *err, size_t len)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    struct stat st;
    int fd, ret;

    if (lstat(path, &st) < 0) {
        return errno == ENOENT ? 0 : -errno;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, len,
                 "%s exists and is not a socket: remove it or give another "
                 "--qmp path",
                 path);
        return -EEXIST;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -errno;
    }
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    ret = connect(fd, (struct sockaddr *)&a, sizeof(a));
    if (ret == 0 || errno == EAGAIN) {
        struct ucred cr = {0};
        socklen_t cl = sizeof(cr);

        if (ret == 0 &&
            getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0 &&
            cr.pid > 0) {
            snprintf(err, len,
                     "QMP socket %s is in use by pid %d (another vmig "
                     "agent?): stop it or give another --qmp path",
                     path, (int)cr.pid);
        } else {
            snprintf(err, len,
                     "QMP socket %s is in use (a server answers on it): "
                     "stop it or give another --qmp path",
                     path);
        }
        close(fd);
        return -EADDRINUSE;
    }
    ret = errno;
    close(fd);
    if (ret != ECONNREFUSED) {
        snprintf(err, len, "cannot tell whether %s is in use: %s", path,
                 strerror(ret));
        return -ret;
    }
    /* nobody listens: its agent died without removing it */
    if (unlink(path) < 0 && errno != ENOENT) {
        ret = errno;
        snprintf(err, len, "cannot remove the stale socket %s: %s", path,
                 strerror(ret));
        return -ret;
    }
    return 1;
}

int
qmp_sock_listen(const char *path, int *out, bool *stale, char *err, size_t len)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    mode_t old;
    int fd, ret;

    *stale = false;
    if (strlen(path) >= sizeof(a.sun_path)) {
        snprintf(err, len, "QMP socket path too long (at most %zu bytes)",
                 sizeof(a.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    ret = check_dir(path, err, len);
    if (ret < 0) {
        return ret;
    }
    ret = check_existing(path, err, len);
    if (ret < 0) {
        return ret;
    }
    *stale = ret == 1;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        ret = -errno;
        snprintf(err, len, "socket: %s", strerror(-ret));
        return ret;
    }
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    /* created 0600 whatever the umask: never a moment with more */
    old = umask(0177);
    ret = bind(fd, (struct sockaddr *)&a, sizeof(a));
    umask(old);
    if (ret < 0 || chmod(path, 0600) < 0 || listen(fd, 16) < 0) {
        ret = -errno;
        snprintf(err, len, "cannot serve QMP on %s: %s", path, strerror(-ret));
        close(fd);
        return ret;
    }
    *out = fd;
    return 0;
}

int
qmp_sock_peer(int fd, struct ucred *cr)
{
    socklen_t cl = sizeof(*cr);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cr, &cl) < 0) {
        return -errno;
    }
    return cr->uid == geteuid() || cr->uid == 0 ? 0 : -EPERM;
}
