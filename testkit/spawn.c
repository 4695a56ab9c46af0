/* SPDX-License-Identifier: MIT */
/*
 * spawn.c - a device server in a child process, waited for until it
 * listens (spawn.h).
 */
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vmig_testkit/spawn.h>

pid_t
vmig_tk_spawn_server(const char *path, int (*serve)(void *arg), void *arg,
                     unsigned int timeout_ms)
{
    pid_t parent = getpid();
    pid_t pid;

    (void)unlink(path);
    pid = fork();
    if (pid < 0) {
        return -errno;
    }
    if (pid == 0) {
        /* the server dies with the thread that spawned it: a test or a
         * benchmark that exits without stopping it (a failed check, a
         * setup error) must not leave it idle for ever, holding the
         * caller's output pipe open so whoever reads it waits too */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent) {
            _exit(1);
        }
        _exit(serve(arg));
    }
    for (unsigned int ms = 0; ms < timeout_ms; ms += 10) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        struct stat st;
        int status;

        if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
            return pid;
        }
        if (waitpid(pid, &status, WNOHANG) == pid) {
            return -ECHILD;
        }
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -ETIMEDOUT;
}
