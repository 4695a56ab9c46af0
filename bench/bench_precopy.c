/* SPDX-License-Identifier: MIT */
/*
 * bench_precopy - downtime of a live migration vs device state size and
 * dirty rate, with precopy and with stop-and-copy only (engine
 * params.no_precopy), between two engines in this process over loopback
 * TCP (source in the main thread, destination in another thread).
 *
 * The VM: RAM_MiB of guest RAM (pseudo-random contents, so no zero
 * pages) and one flowtab device (devices/flowtab, a NIC-like flow table of
 * the given state size, worker thread) behind the engine through
 * devices/flowtab/ft_engine_dev.c.  A vCPU thread drives the guest: every
 * millisecond it posts packets over 65536 flows to the device's ring (each
 * packet updates one 64-byte flow entry, so it dirties one 64 KiB chunk of
 * device state) and scribbles on random guest RAM pages, at the dirty
 * rate of the case.  Guest RAM writes (the vCPU's and the device's DMA)
 * are tracked by <vmig/ramdirty.h> behind the engine's dirty hooks.  The
 * engine's vcpu_pause stops the vCPU and waits until the device has
 * finished what was posted, so after the migration the destination's
 * device state and RAM must equal the source's: the bench checks both and
 * fails loudly otherwise.
 *
 * Per case one table row: state size, dirty rate, mode, the engine's
 * expected downtime when it switched over (precopy), downtime (the
 * engine's, whole ms, and measured here from vcpu_pause on the source to
 * vcpu_resume on the destination), the bytes moved while paused
 * (stats.stopcopy_bytes), the ideal downtime (those bytes at the plain
 * TCP loopback bandwidth measured in this run), the ratio of the measured
 * downtime to that ideal, precopy iterations and bytes, total time.  The
 * table also goes to precopy.dat and, when gnuplot is installed, a plot to
 * precopy.svg (downtime, ratio and precopy bytes vs state size, one line
 * per mode x dirty rate).  No assertions on timing.
 *
 * usage: bench_precopy [quick | size=MiB] [limit=MS] [cap=MS] [ram=MiB]
 *                      [runs=N] [channels=N] [quiet-ram] [out=DIR]
 *   quick     64 and 128 MiB of device state only (default: 64 .. 1024)
 *   size=MiB  only this device state size
 *   limit=MS  the engine's downtime limit (default 50)
 *   cap=MS    the engine's precopy time cap, then stop-copy (default 4000)
 *   ram=MiB   guest RAM (default 256)
 *   runs=N    runs per case; the run with the median downtime is shown
 *             (the upper one for an even N; the best run would favour
 *             runs where the vCPU was starved of CPU and dirtied less)
 *             (default 1)
 *   channels=N connections per migration (parallel channels; default 1):
 *             the device's stop-copy data goes on an extra one while the
 *             last RAM pass uses the main one
 *   quiet-ram the guest driver's rings sit in guest memory outside the
 *             migrated RAM region and the vCPU writes no RAM: only the
 *             device state changes while the VM runs
 *   out=DIR   where precopy.dat / precopy.svg go (default: the build's
 *             bench directory)
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <vmig/chan.h>
#include <vmig/engine.h>
#include <vmig/engine_chan.h>
#include <vmig/ramdirty.h>
#include "../devices/flowtab/flowtab_model.h"
#include "../devices/flowtab/ft_guest.h"
#include "../devices/flowtab/ft_engine_dev.h"
#include "../tests/loopback.h"
#include "precopy_bench.h"

#ifndef BENCH_OUT_DIR
#define BENCH_OUT_DIR "."
#endif

#define PAGE 4096u
#define AREA 0x10000u /* the guest driver's area in guest RAM */
#define RING 256u
#define NFLOWS (1u << 16)
#define CHUNK (64u << 10)
#define TICK_NS 1000000L
#define MAX_CASES 64

/* clang-format off */
const struct profile profiles[] = {
    {"idle", 0, 0},
    {"low", 2000, 2000},
    {"mid", 10000, 8000},
    {"high", 40000, 20000},
};
/* clang-format on */
const size_t nprofiles = sizeof(profiles) / sizeof(profiles[0]);

static vmig_ctx_t *ctx;
static double t_origin;

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *what)
{
    fprintf(stderr, "bench_precopy: FAILED: %s\n", what);
    exit(1);
}

static int
listen_any(int *port)
{
    int fd = lb_listen(port);

    if (fd < 0) {
        die("cannot listen on loopback TCP");
    }
    return fd;
}

static int
connect_to(int port)
{
    int fd = lb_connect(port);

    if (fd < 0) {
        die("cannot connect over loopback TCP");
    }
    return fd;
}

/* ------------------------------------------------------ plain TCP copy */

/* Bytes per second of one plain TCP loopback copy of @len bytes. */
static double
tcp_copy(const uint8_t *src, uint8_t *dst, size_t len)
{
    double secs = lb_tcp_copy(src, dst, len);

    if (secs <= 0) {
        die("plain TCP copy failed");
    }
    return (double)len / secs;
}

static double
tcp_bandwidth(const uint8_t *src, uint8_t *dst, size_t len, int tries)
{
    double best = 0;

    for (int i = 0; i < tries; i++) {
        double bw = tcp_copy(src, dst, len);

        best = bw > best ? bw : best;
    }
    return best;
}

/* ------------------------------------------------------ the guest */

/* Guest memory as the device sees it: RAM, then the I/O area. */
struct gmem {
    uint8_t *base;
    size_t len;
};

static void *
ram_translate(void *opaque, uint64_t iova, size_t len, bool write)
{
    struct gmem *m = opaque;

    (void)write;
    if (iova > m->len || len > m->len - iova) {
        return NULL;
    }
    return m->base + iova;
}

static const struct ft_dma_ops ram_dma = {.translate = ram_translate};

static int
reg_read(void *opaque, uint32_t off, uint32_t *val)
{
    return ft_model_reg_read(opaque, off, val);
}

static int
reg_write(void *opaque, uint32_t off, uint32_t val)
{
    return ft_model_reg_write(opaque, off, val);
}

/* The source VM: guest RAM, the device, the vCPU thread, dirty tracking. */
struct vm {
    struct vmig_engine_region ram;
    struct gmem mem;
    uint64_t free_off;      /* first RAM byte past the driver area */
    unsigned int page_rate; /* RAM pages written per second */
    struct ft_model *dev;
    struct ft_guest g;
    const struct profile *p;
    pthread_t th;
    bool running;
    int stop;
    long err;
    uint64_t rng;
    uint64_t pkts;
    uint64_t pages;
    struct vmig_ramdirty *rd;
    double t_start; /* the vCPU first ran */
    double t_pause;
    double pause_ms; /* vcpu_pause took (the vCPU stopped, the device idle) */
};

/* The destination VM: only the time it resumed. */
struct dvm {
    double t_resume;
};

static uint64_t
xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void *
vcpu_main(void *arg)
{
    struct vm *vm = arg;
    uint64_t npages = (vm->ram.size - vm->free_off) / PAGE;
    uint64_t pk = 0, pg = 0;
    struct timespec next;
    double t0 = now_s();

    clock_gettime(CLOCK_MONOTONIC, &next);
    while (!__atomic_load_n(&vm->stop, __ATOMIC_ACQUIRE)) {
        double el = now_s() - t0;
        uint64_t want_pk = (uint64_t)(el * vm->p->pkts);
        uint64_t want_pg = (uint64_t)(el * vm->page_rate);
        long r = 0;

        if (want_pk > pk) {
            r = ft_guest_post(
                &vm->g, want_pk - pk < RING ? (unsigned)(want_pk - pk) : RING,
                0);
            pk += r > 0 ? (uint64_t)r : 0;
        }
        if (r >= 0) {
            r = ft_guest_reap(&vm->g);
        }
        if (r < 0 && vm->err == 0) {
            vm->err = r;
        }
        for (; pg < want_pg; pg++) {
            uint64_t x = xorshift(&vm->rng);

            /* a paused vCPU stops at once (KVM kicks it out of the
             * guest), not after the writes a starved thread owes */
            if (pg % 64 == 0 && __atomic_load_n(&vm->stop, __ATOMIC_ACQUIRE)) {
                break;
            }
            uint64_t *w = (uint64_t *)((uint8_t *)vm->ram.host + vm->free_off +
                                       (x % npages) * PAGE);

            w[(x >> 40) % (PAGE / 8)] = x;
        }
        next.tv_nsec += TICK_NS;
        if (next.tv_nsec >= 1000000000L) {
            next.tv_sec++;
            next.tv_nsec -= 1000000000L;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    vm->pkts += pk;
    vm->pages += pg;
    return NULL;
}

static int
vcpu_start(struct vm *vm)
{
    if (vm->t_start == 0) {
        vm->t_start = now_s();
    }
    __atomic_store_n(&vm->stop, 0, __ATOMIC_RELEASE);
    if (pthread_create(&vm->th, NULL, vcpu_main, vm) != 0) {
        return -EAGAIN;
    }
    vm->running = true;
    return 0;
}

/* Reap until the device has done all that was posted (bounded). */
static int
drain(struct vm *vm)
{
    for (int i = 0; i < 5000; i++) {
        long r = ft_guest_reap(&vm->g);

        if (r < 0) {
            return (int)r;
        }
        if (ft_guest_outstanding(&vm->g) == 0) {
            return ft_model_wait_idle(vm->dev, 5000);
        }
        usleep(100);
    }
    return -ETIMEDOUT;
}

static int
src_pause(void *opaque)
{
    struct vm *vm = opaque;
    int ret;

    vm->t_pause = now_s();
    if (vm->running) {
        __atomic_store_n(&vm->stop, 1, __ATOMIC_RELEASE);
        pthread_join(vm->th, NULL);
        vm->running = false;
    }
    ret = drain(vm);
    vm->pause_ms = (now_s() - vm->t_pause) * 1e3;
    return ret;
}

static int
src_resume(void *opaque)
{
    return vcpu_start(opaque);
}

static void
dirty_release(struct vm *vm)
{
    vmig_ramdirty_free(vm->rd);
    vm->rd = NULL;
}

static int
src_dirty_start(void *opaque)
{
    struct vm *vm = opaque;
    int ret;

    dirty_release(vm); /* a tracker left by an earlier attempt */
    ret = vmig_ramdirty_new(ctx, VMIG_DIRTY_AUTO, &vm->rd);

    if (ret == 0) {
        ret = vmig_ramdirty_add_region(vm->rd, 0, vm->ram.host, vm->ram.size);
        ret = ret < 0 ? ret : vmig_ramdirty_start(vm->rd);
    }
    if (ret < 0) {
        vmig_ramdirty_free(vm->rd);
        vm->rd = NULL;
    }
    return ret;
}

static long
src_dirty_collect(void *opaque, unsigned int region, uint64_t *bitmap,
                  size_t nbits)
{
    struct vm *vm = opaque;

    if (vm->rd == NULL || region != 0) {
        return -EINVAL;
    }
    return vmig_ramdirty_collect(vm->rd, 0, 0, vm->ram.size, bitmap, nbits);
}

/*
 * Called in the downtime: only stop collecting; unregistering the
 * userfaultfd from the whole region (several ms for 256 MiB) waits until
 * the migration has ended (dirty_release()).
 */
static void
src_dirty_stop(void *opaque)
{
    struct vm *vm = opaque;

    if (vm->rd != NULL && vmig_ramdirty_stop(vm->rd) < 0) {
        fprintf(stderr, "bench_precopy: dirty tracking stop failed\n");
    }
}

static const struct vmig_engine_vm_ops src_ops = {
    .vcpu_pause = src_pause,
    .vcpu_resume = src_resume,
    .dirty_start = src_dirty_start,
    .dirty_collect = src_dirty_collect,
    .dirty_stop = src_dirty_stop,
};

static int
dst_pause(void *opaque)
{
    (void)opaque;
    return 0;
}

static int
dst_resume(void *opaque)
{
    struct dvm *d = opaque;

    d->t_resume = now_s();
    return 0;
}

static const struct vmig_engine_vm_ops dst_ops = {
    .vcpu_pause = dst_pause,
    .vcpu_resume = dst_resume,
};

/* ------------------------------------------------------ one case */

struct incoming {
    struct vmig_engine *eng;
    int lfd;
    int fd;
    int ret;
    int done; /* atomic */
};

static void *
incoming_run(void *arg)
{
    struct incoming *in = arg;

    in->ret = vmig_engine_incoming(in->eng, in->fd);
    __atomic_store_n(&in->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* The destination: the main connection to the engine, every later one
 * (parallel channels) to vmig_engine_accept_chan() until it is done. */
static void *
incoming_main(void *arg)
{
    struct incoming *in = arg;
    pthread_t th;

    in->fd = accept(in->lfd, NULL, NULL);
    if (in->fd < 0 || pthread_create(&th, NULL, incoming_run, in) != 0) {
        in->ret = -EIO;
        return NULL;
    }
    while (!__atomic_load_n(&in->done, __ATOMIC_ACQUIRE)) {
        struct pollfd pf = {.fd = in->lfd, .events = POLLIN};
        struct vmig_chan *ch;
        int fd;

        if (poll(&pf, 1, 20) <= 0 || (fd = accept(in->lfd, NULL, NULL)) < 0) {
            continue;
        }
        if (vmig_chan_plain(ctx, fd, &ch) < 0) {
            close(fd);
        } else if (vmig_engine_accept_chan(in->eng, ch, NULL, 10000) < 0) {
            lb_chan_close(ch);
        }
    }
    pthread_join(th, NULL);
    close(in->fd);
    return NULL;
}

/* Parallel channels on the source: connect to the destination again. */
static int
chan_open(void *opaque, unsigned int index, const int *cancel,
          struct vmig_chan **out)
{
    (void)index;
    (void)cancel;
    return lb_chan_connect(ctx, *(const int *)opaque, out);
}

static void
chan_release(void *opaque, struct vmig_chan *ch)
{
    (void)opaque;
    lb_chan_close(ch);
}

static const struct vmig_engine_chan_ops chan_ops = {.open = chan_open,
                                                     .release = chan_release};

struct knobs {
    uint64_t limit_ms;
    uint64_t cap_ms;
    int runs;
    unsigned int channels; /* 1: one connection */
    bool quiet_ram; /* driver area outside the migrated RAM, no RAM writer */
    size_t io;      /* bytes of the I/O area after the RAM */
};

/* Post 2 packets per flow (synchronously) so the working set exists. */
static int
warm_up(struct vm *vm)
{
    unsigned int left = 2 * NFLOWS;

    while (left > 0) {
        long p = ft_guest_post(&vm->g, left < RING ? left : RING, 0);
        int ret;

        if (p < 0) {
            return (int)p;
        }
        ret = drain(vm);
        if (ret < 0) {
            return ret;
        }
        left -= (unsigned int)p;
    }
    return 0;
}

static void
run_case(uint8_t *sram, uint8_t *dram, size_t ram, uint64_t state,
         unsigned int prof, bool precopy, const struct knobs *k, double bw,
         struct result *res)
{
    struct ft_config cfg = {
        .state_bytes = state, .chunk_bytes = CHUNK, .device_id = 1};
    struct vm vm = {.ram = {.name = "ram0", .host = sram, .size = ram},
                    .mem = {.base = sram, .len = ram + k->io},
                    .p = &profiles[prof],
                    .page_rate = k->quiet_ram ? 0 : profiles[prof].pages,
                    .rng = 0x9e3779b97f4a7c15ull ^ state};
    struct vmig_engine_region dreg = {
        .name = "ram0", .host = dram, .size = ram};
    struct gmem dmem = {.base = dram, .len = ram + k->io};
    uint64_t area = k->quiet_ram ? ram : AREA;
    struct dvm dvm = {0};
    struct ft_model *dst_dev = NULL;
    struct ft_edev se, de;
    struct ft_guest_regs regs = {.read = reg_read, .write = reg_write};
    struct vmig_engine *src = NULL, *dst = NULL;
    struct vmig_engine_params prm;
    struct vmig_engine_stats *st = calloc(1, sizeof(*st));
    struct incoming in = {.ret = -EINPROGRESS};
    pthread_t th;
    uint64_t ah, al, bh, bl;
    int port, fd, ret;
    double t0, t1;

    memset(res, 0, sizeof(*res));
    res->state = state;
    res->prof = prof;
    res->precopy = precopy;
    if (st == NULL || ft_model_new(ctx, &cfg, &ram_dma, &vm.mem, &vm.dev) < 0 ||
        ft_model_new(ctx, &cfg, &ram_dma, &dmem, &dst_dev) < 0) {
        die("cannot create the flowtab devices (memory?)");
    }
    regs.opaque = vm.dev;
    vm.free_off = k->quiet_ram
                      ? 0
                      : (AREA + ft_guest_area_bytes(RING, NFLOWS) + PAGE - 1) /
                            PAGE * PAGE;
    if (vm.free_off >= ram ||
        ft_guest_init(&vm.g, sram, ram + k->io, area, RING, NFLOWS,
                      0x2545f4914f6cdd1dull, &regs) < 0 ||
        warm_up(&vm) < 0) {
        die("guest driver setup");
    }
    ft_edev_init(&se, vm.dev);
    ft_edev_init(&de, dst_dev);
    if (vmig_engine_new(ctx, &vm.ram, 1, &src_ops, &vm, &src) < 0 ||
        vmig_engine_new(ctx, &dreg, 1, &dst_ops, &dvm, &dst) < 0 ||
        vmig_engine_add_device(src, "ft0", ft_edev_ops(), &se) < 0 ||
        vmig_engine_add_device(dst, "ft0", ft_edev_ops(), &de) < 0) {
        die("engine setup");
    }
    vmig_engine_get_params(src, &prm);
    prm.no_precopy = !precopy;
    prm.downtime_limit_ms = k->limit_ms;
    prm.max_precopy_ms = k->cap_ms;
    prm.cap_action = VMIG_ENGINE_CAP_STOP_COPY;
    prm.channels = k->channels;
    vmig_engine_set_params(src, &prm);
    vmig_engine_get_params(dst, &prm);
    prm.channels = k->channels;
    vmig_engine_set_params(dst, &prm);
    if (k->channels > 1 &&
        (vmig_engine_set_chan_ops(src, &chan_ops, &port) < 0 ||
         vmig_engine_set_chan_ops(dst, &chan_ops, &port) < 0)) {
        die("parallel channels");
    }
    memset(dram, 0x5a, ram); /* nothing left from the last case */

    if (vcpu_start(&vm) < 0) {
        die("vCPU thread");
    }
    usleep(20000); /* the guest runs for a moment before the migration */
    in.eng = dst;
    in.lfd = listen_any(&port);
    if (pthread_create(&th, NULL, incoming_main, &in) != 0) {
        die("pthread_create");
    }
    fd = connect_to(port);
    t0 = now_s();
    ret = vmig_engine_migrate(src, fd);
    t1 = now_s();
    close(fd);
    pthread_join(th, NULL);
    close(in.lfd);
    dirty_release(&vm);
    vmig_engine_stats(src, st);
    if (ret < 0 || in.ret < 0) {
        fprintf(stderr,
                "bench_precopy: FAILED: %llu MiB %s %s: migrate %d, "
                "incoming %d: %s\n",
                (unsigned long long)(state >> 20), profiles[prof].name,
                precopy ? "precopy" : "stop-copy", ret, in.ret, st->error);
        exit(1);
    }
    if (vm.running) {
        die("the engine left the source vCPU running after completion");
    }
    if (vm.err != 0) {
        fprintf(stderr, "bench_precopy: FAILED: the guest driver saw %ld\n",
                vm.err);
        exit(1);
    }
    ft_model_digest(vm.dev, &ah, &al);
    ft_model_digest(dst_dev, &bh, &bl);
    if (ah != bh || al != bl) {
        fprintf(stderr,
                "bench_precopy: FAILED: %llu MiB %s %s: destination device "
                "state digest %016llx%016llx != source %016llx%016llx\n",
                (unsigned long long)(state >> 20), profiles[prof].name,
                precopy ? "precopy" : "stop-copy", (unsigned long long)bh,
                (unsigned long long)bl, (unsigned long long)ah,
                (unsigned long long)al);
        exit(1);
    }
    if (memcmp(sram, dram, ram) != 0) {
        fprintf(stderr,
                "bench_precopy: FAILED: %llu MiB %s %s: destination guest "
                "RAM differs from the source\n",
                (unsigned long long)(state >> 20), profiles[prof].name,
                precopy ? "precopy" : "stop-copy");
        exit(1);
    }

    res->down_ms = st->downtime_ms;
    res->exp_ms = st->precopy ? st->expected_downtime_ms : 0;
    res->meas_ms = (dvm.t_resume - vm.t_pause) * 1e3;
    res->sc_bytes = st->stopcopy_bytes;
    if (res->sc_bytes == 0) {
        uint64_t dev = 0;

        for (unsigned int i = 0; i < st->ndevices; i++) {
            dev += st->dev[i].bytes;
        }
        res->sc_bytes = st->ram_transferred + dev - st->precopy_bytes;
        res->sc_derived = true;
    }
    res->bw = bw;
    res->ideal_ms = (double)res->sc_bytes / bw * 1e3;
    res->ratio = res->ideal_ms > 0 ? res->meas_ms / res->ideal_ms : 0;
    res->iters = st->iterations;
    res->pre_bytes = st->precopy_bytes;
    res->est_bytes = st->est_stopcopy_bytes;
    res->dirty_pages = st->precopy ? st->dirty_pages : 0;
    res->total_ms = (t1 - t0) * 1e3;
    res->pkt_rate = (double)vm.pkts / (vm.t_pause - vm.t_start);
    res->pause_ms = vm.pause_ms;
    res->forced = st->forced_switchover;

    vmig_engine_free(src);
    vmig_engine_free(dst);
    ft_model_free(vm.dev);
    ft_model_free(dst_dev);
    free(st);
}

/* ------------------------------------------------------ main */

/* BENCH_PRECOPY_LOG=1: the engines' debug log with timestamps. */
static void
log_sink(void *opaque, int level, const char *msg)
{
    struct timespec ts;

    (void)opaque;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    fprintf(stderr, "%10.3f ms [%d] %s\n",
            ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9 - t_origin) * 1e3,
            level, msg);
}

int
main(int argc, char **argv)
{
    uint64_t sizes[5] = {64ull << 20, 128ull << 20, 256ull << 20, 512ull << 20,
                         1024ull << 20};
    size_t nsizes = 5;
    size_t ram = 256u << 20;
    struct knobs k = {.limit_ms = 50, .cap_ms = 4000, .runs = 1, .channels = 1};
    static struct result runs[99];
    const char *out = BENCH_OUT_DIR;
    static struct result res[MAX_CASES];
    size_t n = 0;
    uint8_t *sram, *dram;
    char dat[4096], png[4096];
    double bw, bw_end, t_start = now_s();

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "quick") == 0) {
            nsizes = 2;
        } else if (strncmp(argv[i], "size=", 5) == 0) {
            sizes[0] = strtoull(argv[i] + 5, NULL, 10) << 20;
            nsizes = 1;
        } else if (strncmp(argv[i], "limit=", 6) == 0) {
            k.limit_ms = strtoull(argv[i] + 6, NULL, 10);
        } else if (strncmp(argv[i], "cap=", 4) == 0) {
            k.cap_ms = strtoull(argv[i] + 4, NULL, 10);
        } else if (strncmp(argv[i], "ram=", 4) == 0) {
            ram = (size_t)strtoull(argv[i] + 4, NULL, 10) << 20;
        } else if (strncmp(argv[i], "channels=", 9) == 0) {
            k.channels = (unsigned int)strtoul(argv[i] + 9, NULL, 10);
        } else if (strcmp(argv[i], "quiet-ram") == 0) {
            k.quiet_ram = true;
        } else if (strncmp(argv[i], "runs=", 5) == 0) {
            k.runs = atoi(argv[i] + 5);
        } else if (strncmp(argv[i], "out=", 4) == 0) {
            out = argv[i] + 4;
        } else {
            fprintf(stderr, "usage: bench_precopy [quick | size=MiB] "
                            "[limit=MS] [cap=MS] [ram=MiB] [runs=N] "
                            "[channels=N] [quiet-ram] [out=DIR]\n");
            return 2;
        }
    }
    if (ram < (16u << 20) || k.limit_ms == 0 || k.runs < 1 || k.runs > 99 ||
        sizes[0] < (1u << 20) || k.channels < 1 || k.channels > 16) {
        fprintf(stderr, "bench_precopy: ram must be >= 16 MiB, size >= 1 "
                        "MiB, limit > 0, runs 1..99, channels 1..16\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    t_origin = now_s();
    if (vmig_ctx_new("bench-precopy",
                     getenv("BENCH_PRECOPY_LOG") != NULL ? log_sink : NULL,
                     NULL, &ctx) < 0) {
        return 1;
    }
    if (getenv("BENCH_PRECOPY_LOG") != NULL) {
        vmig_ctx_set_level(ctx, VMIG_LOG_DEBUG);
    }
    k.io = (ft_guest_area_bytes(RING, NFLOWS) + PAGE - 1) / PAGE * PAGE;
    sram = mmap(NULL, ram + k.io, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    dram = mmap(NULL, ram + k.io, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (sram == MAP_FAILED || dram == MAP_FAILED) {
        die("cannot map guest RAM");
    }
    {
        uint64_t x = 0x2545f4914f6cdd1dull;

        for (size_t i = 0; i < ram / 8; i++) {
            ((uint64_t *)sram)[i] = xorshift(&x);
        }
        memset(dram, 0, ram);
    }
    bw = tcp_bandwidth(sram, dram, ram, 3);

    printf("bench_precopy: %zu MiB guest RAM (random) + one flowtab device "
           "(chunk %u KiB, %u flows), two engines over loopback TCP\n",
           ram >> 20, CHUNK >> 10, NFLOWS);
    printf("dirty rates (packets/s + guest RAM pages/s; a packet dirties "
           "one %u KiB chunk of device state):",
           CHUNK >> 10);
    for (unsigned int p = 0; p < nprofiles; p++) {
        printf(" %s = %u + %u%s", profiles[p].name, profiles[p].pkts,
               profiles[p].pages, p + 1 < nprofiles ? ";" : "\n");
    }
    printf("migration sockets: TCP_NODELAY (set by the engine); %u "
           "connection%s%s\n",
           k.channels, k.channels > 1 ? "s" : "",
           k.channels > 1 ? " (parallel channels: device data on the extra "
                            "ones, overlapping the last RAM pass)"
                          : "");
    if (k.quiet_ram) {
        printf("quiet-ram: the guest driver's rings live outside the "
               "migrated RAM and no RAM pages are written (only the device "
               "state changes while the VM runs)\n");
    }
    printf("engine: downtime limit %llu ms, precopy cap %llu ms then "
           "stop-copy; RAM dirty tracking: %s\n",
           (unsigned long long)k.limit_ms, (unsigned long long)k.cap_ms,
           vmig_dirty_uffd_wp_supported() ? "uffd-wp" : "hash");
    printf("plain TCP loopback copy at the start: %.1f MiB/s (best of 3 x "
           "%zu MiB); each case: the median of %d run%s by measured "
           "downtime\n",
           bw / (1 << 20), ram >> 20, k.runs, k.runs > 1 ? "s" : "");
    printf("columns: pkt/s = packets per second the vCPU achieved; "
           "exp = the engine's expected downtime when it switched over "
           "(precopy); down = engine downtime (whole ms); meas = vcpu_pause "
           "on the source -> vcpu_resume on the destination; stop-copy = "
           "bytes moved while paused (* = derived: the engine did not "
           "report them); est = the engine's last estimate of them; "
           "dirtyp = RAM pages dirty at the final collection (precopy); "
           "tcp = plain TCP loopback copy measured just before the run (best "
           "of 2 x %zu MiB); ideal = the stop-copy "
           "bytes at that speed; ratio = meas / ideal; iters / precopy = "
           "precopy iterations and bytes moved while running; total = "
           "migration wall time\n",
           ram >> 20);
    fputs(table_head, stdout);
    fflush(stdout);
    for (size_t s = 0; s < nsizes; s++) {
        for (unsigned int p = 0; p < nprofiles; p++) {
            for (int pc = 0; pc < 2; pc++) {
                for (int r = 0; r < k.runs; r++) {
                    double b = tcp_bandwidth(sram, dram, ram, 2);

                    run_case(sram, dram, ram, sizes[s], p, pc == 1, &k, b,
                             &runs[r]);
                }
                qsort(runs, (size_t)k.runs, sizeof(runs[0]), by_downtime);
                res[n] = runs[k.runs / 2];
                print_row(stdout, &res[n], false);
                fflush(stdout);
                n++;
            }
        }
    }
    bw_end = tcp_bandwidth(sram, dram, ram, 3);
    printf("plain TCP loopback at the end: %.1f MiB/s (at the start %.1f "
           "MiB/s)\n",
           bw_end / (1 << 20), bw / (1 << 20));
    summary(res, n, k.limit_ms);
    printf("device state digests and guest RAM equal on both sides in "
           "every case; %.0f s in all\n",
           now_s() - t_start);

    snprintf(dat, sizeof(dat), "%s/precopy.dat", out);
    snprintf(png, sizeof(png), "%s/precopy.svg", out);
    if (write_dat(dat, res, n, bw) < 0) {
        fprintf(stderr, "bench_precopy: cannot write %s\n", dat);
        return 1;
    }
    printf("table: %s\n", dat);
    if (!have_gnuplot()) {
        printf("plot skipped: gnuplot is not installed (apt-get install "
               "gnuplot-nox)\n");
    } else if (plot(out, dat, png,
                    k.quiet_ram ? "quiet-ram: only the device state changes"
                                : "device state and guest RAM change") < 0) {
        printf("plot skipped: gnuplot failed on %s/precopy.gp\n", out);
    } else {
        printf("plot: %s\n", png);
    }
    munmap(sram, ram + k.io);
    munmap(dram, ram + k.io);
    vmig_ctx_free(ctx);
    return 0;
}
