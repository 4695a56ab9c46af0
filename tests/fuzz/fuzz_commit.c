/* SPDX-License-Identifier: MIT */
/*
 * fuzz_commit.c - the commit protocol's frames (READY, GO, CONFIRM, DONE,
 * RECOVER, RECOVER_REPLY, ERROR, ABORT) from a hostile peer, at both
 * ends.  Nothing may crash, leak or hang (under ASan and the fuzzer's
 * timeout), and a bad frame must end the migration cleanly: the engine
 * returns, a source left with the outcome unknown takes the operator's
 * override (vmig_engine_resume_source()), and a destination holding a
 * loaded VM discards it at the end of its window.
 *
 * Input: byte 0 picks the side (even: a destination, odd: a source);
 * then records {u8 type, u8 flags, u16 length (LE), payload}, each sent
 * as one frame with a valid header, sequence number and checksum.  Flag
 * bit 0 is the frame's OPTIONAL flag; bit 1 puts the migration's id in
 * the payload's first 8 bytes (so GO, DONE and RECOVER can name the right
 * migration).  A record of type 0xff separates the first connection's
 * frames from the recovery connection's.
 *
 * Destination: the harness plays a source that gets to READY (HELLO with
 * the commit feature, SETUP, the one RAM page, SWITCHOVER), then sends the
 * first connection's records and hangs up; then, on a new connection, the
 * recovery connection's records (the id taken from the READY it got).
 * Source: the harness plays a destination whose HELLO_REPLY and SETUP_ACK
 * are right and, once the source sent SWITCHOVER (a thread reads its
 * stream), sends the first connection's records on the return path; the
 * source's reconnect hook gets one recovery connection carrying the rest
 * (the id: the first READY record's).  Everything else is written into
 * socketpairs before the engine runs.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vmig/chan.h>
#include <vmig/engine.h>
#include <vmig/migproto.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PAGE 4096u
#define MAX_INPUT (32u << 10)
#define SEPARATOR 0xffu
#define F_ID 2u

static uint8_t ram[PAGE];

static int
nop(void *o)
{
    (void)o;
    return 0;
}

/* The source's recovery connection: built once per input. */
struct rec {
    const uint8_t *data;
    size_t size, off; /* the recovery records */
    uint64_t id;
    int used;
    int peer_fd; /* our end, open until the source lets go */
};

static struct rec rec;

static int
send_records(struct vmig_mp_conn *c, const uint8_t *data, size_t size,
             size_t *off, uint64_t id)
{
    static uint8_t pl[1u << 16];

    while (size - *off >= 4) {
        unsigned int type = data[*off], flags = data[*off + 1];
        size_t len = (size_t)data[*off + 2] | (size_t)data[*off + 3] << 8;

        *off += 4;
        if (type == SEPARATOR) {
            return 1;
        }
        if (len > size - *off) {
            len = size - *off;
        }
        memcpy(pl, data + *off, len);
        *off += len;
        if ((flags & F_ID) && len >= 8) {
            for (int i = 0; i < 8; i++) {
                pl[i] = (uint8_t)(id >> (8 * i));
            }
        }
        if (vmig_mp_send1(c, type, flags & 1u, pl, len) < 0) {
            return -1;
        }
    }
    return 0;
}

/* A socketpair with room for everything either side writes unread. */
static int
pair(int sv[2])
{
    int sz = 4 << 20;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        return -1;
    }
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    return 0;
}

/* Our preamble goes raw: the handshake would wait for the engine's. */
static int
preamble(int fd)
{
    uint8_t pre[VMIG_MP_PREAMBLE_LEN];

    vmig_mp_preamble(pre);
    return write(fd, pre, sizeof(pre)) == (ssize_t)sizeof(pre) ? 0 : -1;
}

/* ------------------------------------------------ a hostile source */

static int
dst_prologue(struct vmig_mp_conn *c)
{
    struct vmig_mp_hello h;
    struct vmig_mp_msg m;
    uint8_t buf[1024];
    ssize_t n;

    memset(&h, 0, sizeof(h));
    h.version_min = 1;
    h.version_max = 1;
    h.features = VMIG_MP_FEAT_ZERO_PAGES | VMIG_MP_FEAT_COMMIT;
    h.page_size = PAGE;
    h.nregions = 1;
    strcpy(h.region[0].name, "ram0");
    h.region[0].size = PAGE;
    n = vmig_mp_hello_encode(&h, buf, sizeof(buf));
    if (n < 0 || vmig_mp_send1(c, VMIG_MP_HELLO, 0, buf, (size_t)n) < 0) {
        return -1;
    }
    memset(&m, 0, sizeof(m));
    m.type = VMIG_MP_SETUP;
    m.setup.ram_bytes = PAGE;
    if (vmig_mp_send_msg(c, &m) < 0) {
        return -1;
    }
    memset(&m, 0, sizeof(m));
    m.type = VMIG_MP_RAM;
    m.ram.npages = 1;
    m.ram.pass = 1;
    m.ram.flags = VMIG_MP_RAM_ZERO;
    if (vmig_mp_send_msg(c, &m) < 0) {
        return -1;
    }
    memset(&m, 0, sizeof(m));
    m.type = VMIG_MP_SWITCHOVER;
    m.switchover.ram_bytes = PAGE;
    return vmig_mp_send_msg(c, &m);
}

/* The id of the READY the destination sent on @c, or 0. */
static uint64_t
ready_id(struct vmig_mp_conn *c)
{
    struct vmig_mp_frame f;
    struct vmig_mp_msg m;

    vmig_mp_conn_set_timeout(c, 1);
    while (vmig_mp_recv(c, &f) == 0) {
        if (f.hdr.type == VMIG_MP_READY && vmig_mp_frame_decode(&f, &m) == 0) {
            return m.ready.id;
        }
    }
    return 0;
}

static void
fuzz_destination(const uint8_t *data, size_t size)
{
    struct vmig_engine_region rg = {.name = "ram0", .host = ram, .size = PAGE};
    static const struct vmig_engine_vm_ops ops = {.vcpu_pause = nop,
                                                  .vcpu_resume = nop};
    struct vmig_engine_params ep = {.timeout_ms = 1000,
                                    .recover_timeout_ms = 60000};
    struct vmig_engine *eng;
    struct vmig_mp_conn *c = NULL;
    uint8_t pre[VMIG_MP_PREAMBLE_LEN];
    size_t off = 0;
    uint64_t id = 0;
    int sv[2], more = 0;

    if (vmig_engine_new(NULL, &rg, 1, &ops, NULL, &eng) < 0) {
        abort();
    }
    vmig_engine_set_params(eng, &ep);
    if (pair(sv) < 0) {
        vmig_engine_free(eng);
        return;
    }
    if (vmig_mp_conn_new(NULL, sv[0], &c) == 0 && preamble(sv[0]) == 0 &&
        dst_prologue(c) == 0) {
        more = send_records(c, data, size, &off, 0);
        shutdown(sv[0], SHUT_WR);
        if (vmig_engine_incoming(eng, sv[1]) < 0) {
            /* refused or failed: any outcome will do, no crash, no hang */
        }
        /* what the destination said, as its source would read it: the
         * preamble first, then its frames */
        if (read(sv[0], pre, sizeof(pre)) == (ssize_t)sizeof(pre) &&
            vmig_mp_preamble_check(pre) == 0) {
            id = ready_id(c);
        }
    }
    vmig_mp_conn_free(c);
    close(sv[0]);
    close(sv[1]);
    /* a recovery connection, asking about the migration it held */
    if (more == 1 && pair(sv) == 0) {
        c = NULL;
        if (vmig_mp_conn_new(NULL, sv[0], &c) == 0 && preamble(sv[0]) == 0 &&
            send_records(c, data, size, &off, id) >= 0) {
            shutdown(sv[0], SHUT_WR);
            if (vmig_engine_incoming(eng, sv[1]) < 0) {
                /* as above */
            }
        }
        vmig_mp_conn_free(c);
        close(sv[0]);
        close(sv[1]);
    }
    /* whatever it holds is discarded at the end of its window */
    if (vmig_engine_recovery_expire(eng) < 0) {
        abort();
    }
    vmig_engine_free(eng);
}

/* ------------------------------------------- a hostile destination */

static int
src_reconnect(void *o, struct vmig_chan **out, char *why, size_t len)
{
    struct vmig_mp_conn *c = NULL;
    int sv[2], ret = -ECONNREFUSED;

    (void)o;
    (void)why;
    (void)len;
    if (rec.used++ != 0 || pair(sv) < 0) {
        return -ECONNREFUSED;
    }
    if (vmig_mp_conn_new(NULL, sv[0], &c) == 0 && preamble(sv[0]) == 0 &&
        send_records(c, rec.data, rec.size, &rec.off, rec.id) >= 0) {
        shutdown(sv[0], SHUT_WR);
        ret = vmig_chan_plain(NULL, sv[1], out);
    }
    vmig_mp_conn_free(c);
    if (ret < 0) {
        close(sv[0]);
        close(sv[1]);
    } else {
        rec.peer_fd = sv[0];
    }
    return ret;
}

static void
src_disconnect(void *o, struct vmig_chan *ch)
{
    int fd = vmig_chan_fd(ch);

    (void)o;
    vmig_chan_free(ch);
    close(fd);
    close(rec.peer_fd);
}

static int
src_prologue(struct vmig_mp_conn *c)
{
    struct vmig_mp_hello_reply r;
    struct vmig_mp_msg m;
    uint8_t buf[1024];
    ssize_t n;

    memset(&r, 0, sizeof(r));
    r.version = 1;
    r.features = VMIG_MP_FEAT_ZERO_PAGES | VMIG_MP_FEAT_COMMIT;
    n = vmig_mp_reply_encode(&r, buf, sizeof(buf));
    if (n < 0 || vmig_mp_send1(c, VMIG_MP_HELLO_REPLY, 0, buf, (size_t)n) < 0) {
        return -1;
    }
    memset(&m, 0, sizeof(m));
    m.type = VMIG_MP_SETUP_ACK;
    return vmig_mp_send_msg(c, &m);
}

/* The id in the first READY record: what the source will commit to. */
static uint64_t
first_ready_id(const uint8_t *data, size_t size)
{
    for (size_t off = 0; size - off >= 4;) {
        size_t len = (size_t)data[off + 2] | (size_t)data[off + 3] << 8;
        uint64_t id = 0;

        if (data[off] == SEPARATOR) {
            break;
        }
        off += 4;
        if (len > size - off) {
            len = size - off;
        }
        if (data[off - 4] == VMIG_MP_READY && len >= 8) {
            for (int i = 7; i >= 0; i--) {
                id = id << 8 | data[off + (size_t)i];
            }
            return id;
        }
        off += len;
    }
    return 0;
}

/* The destination's side of the first connection: the records go out
 * once the source sent SWITCHOVER (earlier, the source would rightly call
 * them out of turn); then it drains whatever else comes. */
struct peer {
    struct vmig_mp_conn *c;
    int fd;
    const uint8_t *data;
    size_t size, off;
    int sent; /* send_records()'s result */
};

static void *
peer_main(void *arg)
{
    struct peer *p = arg;
    uint8_t pre[VMIG_MP_PREAMBLE_LEN];
    struct vmig_mp_frame f;

    p->sent = -1;
    if (read(p->fd, pre, sizeof(pre)) != (ssize_t)sizeof(pre)) {
        return NULL;
    }
    while (vmig_mp_recv(p->c, &f) == 0) {
        if (f.hdr.type == VMIG_MP_SWITCHOVER && p->sent < 0) {
            p->sent = send_records(p->c, p->data, p->size, &p->off,
                                   first_ready_id(p->data, p->size));
            shutdown(p->fd, SHUT_WR);
        }
    }
    return NULL;
}

static void
fuzz_source(const uint8_t *data, size_t size)
{
    struct vmig_engine_region rg = {.name = "ram0", .host = ram, .size = PAGE};
    static const struct vmig_engine_vm_ops ops = {.vcpu_pause = nop,
                                                  .vcpu_resume = nop,
                                                  .reconnect = src_reconnect,
                                                  .disconnect = src_disconnect};
    struct vmig_engine_params ep = {.timeout_ms = 1000,
                                    .recover_timeout_ms = 1};
    struct vmig_engine *eng;
    struct peer p = {.data = data, .size = size};
    pthread_t th;
    int sv[2];

    if (vmig_engine_new(NULL, &rg, 1, &ops, NULL, &eng) < 0) {
        abort();
    }
    vmig_engine_set_params(eng, &ep);
    /* the recovery connection's records: after the separator, if any */
    rec = (struct rec){.data = data, .size = size, .used = 1};
    for (size_t off = 0; size - off >= 4;) {
        size_t len = (size_t)data[off + 2] | (size_t)data[off + 3] << 8;

        if (data[off] == SEPARATOR) {
            rec.off = off + 4;
            rec.id = first_ready_id(data, size);
            rec.used = 0;
            break;
        }
        off += 4 + (len < size - off - 4 ? len : size - off - 4);
    }
    if (pair(sv) < 0) {
        vmig_engine_free(eng);
        return;
    }
    p.fd = sv[0];
    if (vmig_mp_conn_new(NULL, sv[0], &p.c) == 0 && preamble(sv[0]) == 0 &&
        src_prologue(p.c) == 0 &&
        pthread_create(&th, NULL, peer_main, &p) == 0) {
        int ret = vmig_engine_migrate(eng, sv[1]);

        shutdown(sv[1], SHUT_WR); /* the peer thread sees the end */
        pthread_join(th, NULL);
        if (ret == -EINPROGRESS) {
            /* the outcome unknown: the operator's override */
            if (vmig_engine_resume_source(eng) != 0) {
                abort();
            }
        }
    }
    vmig_mp_conn_free(p.c);
    close(sv[0]);
    close(sv[1]);
    vmig_engine_free(eng);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool once;

    if (!once) {
        /* a peer that hung up must be an error, never a signal */
        signal(SIGPIPE, SIG_IGN);
        once = true;
    }
    if (size < 1 || size > MAX_INPUT) {
        return 0;
    }
    if (data[0] & 1) {
        fuzz_source(data + 1, size - 1);
    } else {
        fuzz_destination(data + 1, size - 1);
    }
    return 0;
}
