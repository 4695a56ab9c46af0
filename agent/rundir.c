/* SPDX-License-Identifier: MIT */
/*
 * rundir.c - the agent's private runtime directory for the sockets of the
 * device servers it spawns: $TMPDIR/vmig-dev-<pid>-XXXXXX, mode 0700, so
 * no other user can reach a device (whoever talks to a device server can
 * read and write guest memory through it).
 *
 * An agent killed with SIGKILL cannot remove its directory; the next
 * agent to start does: a vmig-dev-<pid>-* directory of ours whose process
 * is gone is removed with the sockets in it.  Directories of
 * other users, of live agents, and anything that does not look like ours
 * are left alone.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vmig/log.h>
#include "agent.h"

#define PREFIX "vmig-dev-"

static const char *
tmpdir(void)
{
    const char *t = getenv("TMPDIR");

    return t != NULL && t[0] == '/' ? t : "/tmp";
}

/*
 * Whether process @pid still exists.  Its name is no proof of anything
 * (an agent started through /proc/self/exe, as `vmig demo` does, is
 * called "exe"), so any live process keeps the directory: a pid reused
 * by another program only delays the cleanup until that one ends.
 */
static bool
alive(long pid)
{
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* Remove @name in @dfd: its entries (sockets, no subdirectories), then it. */
static int
remove_dir(int dfd, const char *name)
{
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d;
    struct dirent *e;

    if (fd < 0) {
        return -errno;
    }
    d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return -errno;
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            (void)unlinkat(fd, e->d_name, 0);
        }
    }
    closedir(d);
    return unlinkat(dfd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

int
rundir_remove(const char *path)
{
    char parent[PATH_MAX];
    const char *slash = strrchr(path, '/');
    int dfd, ret;

    if (slash == NULL || slash == path ||
        (size_t)(slash - path) >= sizeof(parent)) {
        return -EINVAL;
    }
    memcpy(parent, path, (size_t)(slash - path));
    parent[slash - path] = '\0';
    dfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        return -errno;
    }
    ret = remove_dir(dfd, slash + 1);
    close(dfd);
    return ret;
}

int
rundir_clean_stale(vmig_ctx_t *ctx)
{
    const char *t = tmpdir();
    DIR *d = opendir(t);
    struct dirent *e;
    int n = 0;

    if (d == NULL) {
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        char *end;
        long pid;

        if (strncmp(e->d_name, PREFIX, strlen(PREFIX)) != 0) {
            continue;
        }
        pid = strtol(e->d_name + strlen(PREFIX), &end, 10);
        if (end == e->d_name + strlen(PREFIX) || *end != '-' || pid <= 0 ||
            fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISDIR(st.st_mode) || st.st_uid != geteuid() || alive(pid)) {
            continue;
        }
        if (remove_dir(dirfd(d), e->d_name) == 0) {
            vmig_log(ctx, VMIG_LOG_NOTICE,
                     "removed %s/%s, left by agent pid %ld that is gone", t,
                     e->d_name, pid);
            n++;
        }
    }
    closedir(d);
    return n;
}

int
rundir_create(char *out, size_t len)
{
    if (snprintf(out, len, "%s/" PREFIX "%ld-XXXXXX", tmpdir(),
                 (long)getpid()) >= (int)len) {
        out[0] = '\0';
        return -ENAMETOOLONG;
    }
    if (mkdtemp(out) == NULL) { /* mode 0700 */
        int ret = -errno;

        out[0] = '\0';
        return ret;
    }
    return 0;
}

/*
 * A directory left by an agent killed with SIGKILL (its device servers
 * die with it: PR_SET_PDEATHSIG) would wait for the next agent's stale
 * clean-up.  So a watcher process holds the read end of a pipe whose
 * write end only this agent has: when the agent is gone, however it
 * ended, the read returns end of file and the watcher removes the
 * directory.  It runs this program again (RUNDIR_REAPER_CMD), so nothing
 * of the agent's threads is inherited.
 */
int
rundir_watch(const char *dir)
{
    int p[2];
    pid_t pid;

    if (pipe2(p, O_CLOEXEC) < 0) {
        return -errno;
    }
    pid = fork();
    if (pid < 0) {
        int ret = -errno;

        close(p[0]);
        close(p[1]);
        return ret;
    }
    if (pid == 0) {
        char fd[16];

        /* its own session: a signal to the agent's group is not for it */
        (void)setsid();
        close(p[1]);
        snprintf(fd, sizeof(fd), "%d", p[0]);
        (void)fcntl(p[0], F_SETFD, 0);
        execl("/proc/self/exe", "vmig", RUNDIR_REAPER_CMD, fd, dir,
              (char *)NULL);
        _exit(127);
    }
    close(p[0]); /* p[1] stays open (close-on-exec) for the agent's life */
    return 0;
}

int
rundir_reaper_main(int argc, char **argv)
{
    char c;
    ssize_t n;
    int fd;

    if (argc != 4) {
        return 2;
    }
    fd = atoi(argv[2]);
    do {
        n = read(fd, &c, 1);
    } while (n < 0 && errno == EINTR);
    /* the agent is gone (or closed its end at exit, having removed the
     * directory itself: then this finds nothing) */
    (void)rundir_remove(argv[3]);
    return 0;
}
