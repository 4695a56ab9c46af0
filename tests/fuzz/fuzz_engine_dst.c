/* SPDX-License-Identifier: MIT */
/*
 * fuzz_engine_dst.c - the destination engine's frame handling on arbitrary
 * frames.  The harness plays a source that gets past the preamble, HELLO
 * and SETUP correctly and then sends the input as frames, each with a
 * valid header, sequence number and checksum (so the fuzzer reaches the
 * RAM, device, vCPU and switchover parsers instead of the checksum).
 *
 * Input: records {u8 type, u8 flags, u16 length (LE), payload}.
 * Everything is written into a socketpair before the engine runs, so the
 * harness is single-threaded and deterministic.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vmig/engine.h>
#include <vmig_testkit/memdev.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM (64u << 10)
#define MAX_INPUT (48u << 10)

static int
nop(void *o)
{
    (void)o;
    return 0;
}

static const struct vmig_engine_vm_ops ops = {.vcpu_pause = nop,
                                              .vcpu_resume = nop};

static struct vmig_engine *eng;
static struct vmig_memdev *dev;
static uint8_t *ram;

static void
init(void)
{
    struct vmig_engine_region rg = {.name = "ram0", .size = RAM};
    struct vmig_memdev_params p = {.state_size = 4096,
                                   .flags = VMIG_MIGRATION_STOP_COPY,
                                   .seed = 9,
                                   .revision = 1};
    struct vmig_engine_params ep = {.timeout_ms = 1000};

    ram = calloc(1, RAM);
    rg.host = ram;
    if (ram == NULL || vmig_engine_new(NULL, &rg, 1, &ops, NULL, &eng) < 0 ||
        vmig_memdev_new(NULL, &p, &dev) < 0 ||
        vmig_engine_add_device(eng, "dev0", vmig_memdev_ops(), dev) < 0) {
        abort();
    }
    vmig_engine_set_params(eng, &ep);
}

static int
prologue(int fd, struct vmig_mp_conn *c)
{
    struct vmig_mp_hello h;
    uint8_t buf[1024], desc[128], pre[VMIG_MP_PREAMBLE_LEN], setup[16] = {0};
    ssize_t n;

    memset(&h, 0, sizeof(h));
    h.version_min = 1;
    h.version_max = 1;
    h.features = VMIG_MP_FEAT_ZERO_PAGES | VMIG_MP_FEAT_PRECOPY |
                 VMIG_MP_FEAT_SWITCHOVER_ACK;
    h.page_size = 4096;
    h.nregions = 1;
    strcpy(h.region[0].name, "ram0");
    h.region[0].size = RAM;
    h.ndevices = 1;
    strcpy(h.dev[0].name, "dev0");
    h.dev[0].mig_flags = VMIG_MIGRATION_STOP_COPY;
    n = vmig_memdev_ops()->describe(dev, &h.dev[0].ids, desc, sizeof(desc));
    if (n < 0) {
        return -1;
    }
    h.dev[0].desc = desc;
    h.dev[0].desc_len = (uint32_t)n;
    n = vmig_mp_hello_encode(&h, buf, sizeof(buf));
    vmig_mp_preamble(pre);
    /* the preamble goes raw: the connection's handshake would wait for
     * the peer's, which only comes once the engine runs */
    if (n < 0 || write(fd, pre, sizeof(pre)) != (ssize_t)sizeof(pre) ||
        vmig_mp_send1(c, VMIG_MP_HELLO, 0, buf, (size_t)n) < 0 ||
        vmig_mp_send1(c, VMIG_MP_SETUP, 0, setup, sizeof(setup)) < 0) {
        return -1;
    }
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vmig_mp_conn *c = NULL;
    int sv[2], bufsz = 4 << 20;
    size_t off = 0;

    if (eng == NULL) {
        init();
    }
    if (size > MAX_INPUT ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        return 0;
    }
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof(bufsz));
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof(bufsz));
    if (vmig_mp_conn_new(NULL, sv[0], &c) < 0 || prologue(sv[0], c) < 0) {
        goto out;
    }
    while (size - off >= 4) {
        unsigned int type = data[off], flags = data[off + 1] & 1;
        size_t len = (size_t)data[off + 2] | (size_t)data[off + 3] << 8;

        off += 4;
        if (len > size - off) {
            len = size - off;
        }
        if (vmig_mp_send1(c, type, flags, data + off, len) < 0) {
            break;
        }
        off += len;
    }
    shutdown(sv[0], SHUT_WR);
    /* any outcome is fine as long as nothing crashes, leaks or hangs */
    if (vmig_engine_incoming(eng, sv[1]) == 0) {
        /* a complete valid stream: make the device reusable */
        (void)vmig_memdev_state(dev);
    }
out:
    vmig_mp_conn_free(c);
    close(sv[0]);
    close(sv[1]);
    return 0;
}
