/* SPDX-License-Identifier: MIT */
/*
 * engine_refuse.c - a destination that cannot take a migration now (it is
 * already receiving one) says so at once: the preamble exchange, then an
 * ERROR frame with the reason, instead of leaving a second source waiting
 * for a HELLO_REPLY until its peer timeout.  No engine is involved, so
 * the migration under way is not touched.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <vmig/engine.h>
#include <vmig/migproto.h>
#include "chan_priv.h"
#include "engine_priv.h"

/*
 * Closing with the source's HELLO unread would make TCP send a reset that
 * can destroy the ERROR before the source reads it: stop writing, discard
 * what it still sends until it hangs up, for at most @ms.
 */
static void
refuse_linger(struct vmig_chan *ch, unsigned int ms)
{
    uint64_t end = vmig__mono_ns() + (uint64_t)ms * 1000000ull;
    int fd = vmig_chan_fd(ch);
    static __thread char sink[16384];

    vmig__chan_shutdown_wr(ch);
    while (vmig__mono_ns() < end) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (poll(&pfd, 1, 100) <= 0) {
            continue;
        }
        n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            return;
        }
    }
}

int
vmig_engine_refuse_chan(vmig_ctx_t *ctx, struct vmig_chan *ch, int err,
                        const char *reason, unsigned int timeout_ms)
{
    struct vmig_mp_msg m = {.type = VMIG_MP_ERROR};
    struct vmig_mp_conn *c;
    int ret;

    if (ch == NULL || err >= 0 || reason == NULL) {
        return -EINVAL;
    }
    ret = vmig_mp_conn_new_chan(ctx, ch, &c);
    if (ret < 0) {
        return ret;
    }
    vmig_mp_conn_set_timeout(c, timeout_ms);
    ret = vmig_mp_handshake(c);
    if (ret == 0) {
        m.error.err = (uint32_t)-err;
        m.error.dev = VMIG_MP_NO_DEVICE;
        snprintf(m.error.reason, sizeof(m.error.reason), "%s", reason);
        ret = vmig_mp_send_msg(c, &m);
    }
    vmig_mp_conn_free(c);
    if (ret == 0) {
        refuse_linger(ch, timeout_ms);
    }
    return ret;
}
