/* SPDX-License-Identifier: MIT */
/*
 * vmig-showcase - what libvmig can do today, shown on a simulated device.
 *
 * 1. The transition tables a device's feature set gives (kernel-exact).
 * 2. A live save -> resume cycle: a simulated device with a 16 MiB table
 *    keeps changing while PRE_COPY streams its initial data; STOP_COPY
 *    sends only what changed; a second device loads the stream, validates
 *    it on RESUMING -> STOP and ends byte-identical (xxh3 compared).
 * 3. What goes wrong on purpose: a flipped byte refused at validation with
 *    the destination untouched; a reset during PRE_COPY ending the session
 *    with ENODEV for the reader, never a silent end of data; STOP_COPY ->
 *    PRE_COPY refused.
 *
 * The simulated device is a plain user of the device-side framework
 * (<vmig/device.h>): it supplies a step per arc, save and load; the
 * framework walks the transitions and owns the sessions.
 *
 * Exit status 0 only when every outcome is the expected one.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <vmig/vmig.h>

#define TABLE_BYTES (16u << 20)
#define CHUNK (4u << 10)
#define NCHUNKS (TABLE_BYTES / CHUNK)
#define RECORD (4 + CHUNK)

static int quiet;

#define say(...)                                                               \
    do {                                                                       \
        if (!quiet) {                                                          \
            printf(__VA_ARGS__);                                               \
        }                                                                      \
    } while (0)

/*
 * The simulated device: a table of counters that changes while RUNNING,
 * with per-chunk dirty bits so precopy can send only what changed.  Its
 * session stream is a sequence of records of RECORD bytes: {u32 chunk,
 * payload}, and a final {u32 0xffffffff, u64 xxh3 of the whole table}
 * (padded).  It hands out whole records only, so it is read with a
 * buffer of RECORD bytes.
 */
struct sim {
    const char *name;
    uint8_t *table;
    uint8_t *staging; /* destination: loaded here, committed on validate */
    uint8_t dirty[NCHUNKS];
    struct vmig_dev *dev;
    vmig_ctx_t *ctx;
    /* saving session cursor */
    uint32_t next_chunk;
    int sent_end;
    uint64_t staged_digest;
    int staged_end;
};

#define END_MARK 0xffffffffu

static int
sim_step(void *opaque, enum vmig_state from, enum vmig_state to, bool *broken)
{
    struct sim *s = opaque;

    (void)broken;
    switch (vmig_arc_classify(from, to)) {
    case VMIG_ARC_OPEN_SAVE:
        memset(s->dirty, 1, sizeof(s->dirty));
        s->next_chunk = 0;
        s->sent_end = 0;
        break;
    case VMIG_ARC_OPEN_RESUME:
        memcpy(s->staging, s->table, TABLE_BYTES);
        s->staged_end = 0;
        break;
    case VMIG_ARC_END_RESUME:
        /* validate everything before anything reaches the device */
        if (!s->staged_end ||
            XXH3_64bits(s->staging, TABLE_BYTES) != s->staged_digest) {
            return -EBADMSG;
        }
        memcpy(s->table, s->staging, TABLE_BYTES);
        break;
    default:
        break;
    }
    return 0;
}

/* The guest keeps using the device: touch a few counters. */
static void
sim_run(struct sim *s, unsigned int touches, uint64_t seed)
{
    for (unsigned int i = 0; i < touches; i++) {
        uint64_t x = XXH3_64bits_withSeed(&i, sizeof(i), seed);
        uint32_t off = (uint32_t)(x % (TABLE_BYTES / 8)) * 8;
        uint64_t v;

        memcpy(&v, s->table + off, 8);
        v += x | 1;
        memcpy(s->table + off, &v, 8);
        s->dirty[off / CHUNK] = 1;
    }
}

/*
 * The framework's save: the next record of the saving session; 0 when
 * nothing is left (the end in STOP_COPY, "no more for now" in PRE_COPY).
 */
static ssize_t
sim_save(void *opaque, enum vmig_state state, void *out, size_t len)
{
    struct sim *s = opaque;
    uint8_t *buf = out;

    if (len < RECORD) {
        return -EINVAL; /* read with a buffer of RECORD bytes */
    }
    for (; s->next_chunk < NCHUNKS; s->next_chunk++) {
        uint32_t c = s->next_chunk;

        if (s->dirty[c]) {
            s->dirty[c] = 0;
            memcpy(buf, &c, 4);
            memcpy(buf + 4, s->table + (size_t)c * CHUNK, CHUNK);
            s->next_chunk++;
            return RECORD;
        }
    }
    if (state != VMIG_STATE_STOP_COPY) {
        s->next_chunk = 0; /* next pass sends what changed meanwhile */
        return 0;
    }
    if (s->sent_end) {
        return 0;
    }
    {
        uint32_t m = END_MARK;
        uint64_t d = XXH3_64bits(s->table, TABLE_BYTES);

        memset(buf, 0, RECORD);
        memcpy(buf, &m, 4);
        memcpy(buf + 4, &d, 8);
        s->sent_end = 1;
        return RECORD;
    }
}

/* The framework's load: one record (the transfer writes what it read). */
static int
sim_load(void *opaque, const void *in, size_t len)
{
    struct sim *s = opaque;
    const uint8_t *buf = in;
    uint32_t c;

    if (len != RECORD) {
        return -EBADMSG;
    }
    memcpy(&c, buf, 4);
    if (c == END_MARK) {
        memcpy(&s->staged_digest, buf + 4, 8);
        s->staged_end = 1;
        return 0;
    }
    if (c >= NCHUNKS) {
        return -EBADMSG;
    }
    memcpy(s->staging + (size_t)c * CHUNK, buf + 4, CHUNK);
    return 0;
}

static const struct vmig_dev_ops sim_ops = {
    .step = sim_step,
    .save = sim_save,
    .load = sim_load,
};

static int
sim_init(struct sim *s, const char *name, uint64_t flags)
{
    memset(s, 0, sizeof(*s));
    s->name = name;
    s->table = calloc(1, TABLE_BYTES);
    s->staging = calloc(1, TABLE_BYTES);
    if (s->table == NULL || s->staging == NULL ||
        vmig_ctx_new(name, quiet ? NULL : vmig_log_stderr, NULL, &s->ctx) < 0 ||
        vmig_dev_new(s->ctx, flags, &sim_ops, s, &s->dev) < 0) {
        return -ENOMEM;
    }
    vmig_ctx_set_level(s->ctx, VMIG_LOG_WARNING);
    return 0;
}

static void
sim_fini(struct sim *s)
{
    vmig_dev_free(s->dev);
    vmig_ctx_free(s->ctx);
    free(s->table);
    free(s->staging);
}

static int failures;

static void
verdict(int ok, const char *what)
{
    say("  [%s] %s\n", ok ? " ok " : "FAIL", what);
    failures += !ok;
}

static void
show_move(struct sim *s, unsigned int target)
{
    struct vmig_fsm_path p;
    char buf[256];
    int rc;

    if (vmig_fsm_path(vmig_dev_flags(s->dev), vmig_dev_state(s->dev), target,
                      &p) == 0) {
        say("  %s: %s\n", s->name, vmig_fsm_path_format(&p, buf, sizeof(buf)));
    }
    rc = vmig_dev_set_state(s->dev, target);
    if (rc < 0) {
        say("  %s: -> %s failed: %s (now in %s)\n", s->name,
            vmig_state_name(target), strerror(-rc),
            vmig_state_name(vmig_dev_state(s->dev)));
    }
}

/* Stream a whole saving session from src into dst, like a VMM would. */
static ssize_t
transfer(struct sim *src, struct sim *dst, uint8_t *buf, size_t *bytes,
         int flip_byte)
{
    ssize_t n;

    while ((n = vmig_dev_read(src->dev, buf, RECORD, NULL)) > 0) {
        if (flip_byte && n > 100) {
            buf[100] ^= 0x01;
            flip_byte = 0;
        }
        if (vmig_dev_write(dst->dev, buf, (size_t)n) < 0) {
            return -EBADMSG;
        }
        *bytes += (size_t)n;
    }
    return n;
}

static void
print_tables(void)
{
    static const struct {
        uint64_t flags;
        const char *who;
    } sets[] = {
        {VMIG_MIGRATION__ALL, "a NIC-like device (mlx5): STOP_COPY|P2P|"
                              "PRE_COPY"},
        {VMIG_MIGRATION_STOP_COPY, "an accelerator (hisi_acc): STOP_COPY "
                                   "only"},
    };

    for (size_t i = 0; i < 2; i++) {
        say("\n== transitions for %s\n", sets[i].who);
        for (unsigned int c = 1; c < VMIG_STATE__COUNT; c++) {
            for (unsigned int t = 1; t < VMIG_STATE__COUNT; t++) {
                struct vmig_fsm_path p;
                char buf[256];

                if (c == t || !vmig_state_supported(sets[i].flags, c) ||
                    !vmig_state_supported(sets[i].flags, t)) {
                    continue;
                }
                if (vmig_fsm_path(sets[i].flags, c, t, &p) < 0) {
                    say("  %-12s -> %-12s  refused: EINVAL\n",
                        vmig_state_name(c), vmig_state_name(t));
                } else {
                    say("  %-12s -> %-12s  %s\n", vmig_state_name(c),
                        vmig_state_name(t),
                        vmig_fsm_path_format(&p, buf, sizeof(buf)));
                }
            }
        }
    }
}

int
main(int argc, char **argv)
{
    struct sim src, dst;
    uint8_t *buf;
    size_t pre_bytes = 0, stop_bytes = 0;
    uint64_t before;
    ssize_t rc;

    setvbuf(stdout, NULL, _IOLBF, 0);
    quiet = argc > 1 && strcmp(argv[1], "--quiet") == 0;
    if (argc > 1 && !quiet) {
        printf("usage: vmig-showcase [--quiet]\n"
               "Shows the VFIO migration state machine and a simulated "
               "device's save/resume cycle.\nExit 0 when every outcome "
               "is as expected, 1 otherwise.\n");
        return strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    buf = malloc(RECORD);
    say("vmig %s demo: the VFIO migration v2 state machine, kernel-exact\n",
        vmig_version());
    print_tables();
    if (buf == NULL || sim_init(&src, "sim-src", VMIG_MIGRATION__ALL) < 0 ||
        sim_init(&dst, "sim-dst", VMIG_MIGRATION__ALL) < 0) {
        fprintf(stderr, "vmig-showcase: out of memory\n");
        free(buf);
        return 1;
    }

    say("\n== live save -> resume of a device with a %u MiB table\n",
        TABLE_BYTES >> 20);
    sim_run(&src, 200000, 1);
    show_move(&dst, VMIG_STATE_RESUMING);
    show_move(&src, VMIG_STATE_PRE_COPY);
    rc = transfer(&src, &dst, buf, &pre_bytes, 0);
    verdict(rc == -ENOMSG, "PRE_COPY: initial data sent, then 'no more for "
                           "now' (ENOMSG)");
    sim_run(&src, 100, 2); /* the device keeps running meanwhile */
    show_move(&src, VMIG_STATE_STOP_COPY);
    rc = transfer(&src, &dst, buf, &stop_bytes, 0);
    verdict(rc == 0, "STOP_COPY: dirty chunks sent, then the end (read 0)");
    say("  precopy moved %zu KiB while running; stop-copy only %zu KiB\n",
        pre_bytes >> 10, stop_bytes >> 10);
    show_move(&dst, VMIG_STATE_RUNNING);
    verdict(vmig_dev_state(dst.dev) == VMIG_STATE_RUNNING,
            "destination validated the stream and runs");
    verdict(XXH3_64bits(src.table, TABLE_BYTES) ==
                XXH3_64bits(dst.table, TABLE_BYTES),
            "device state byte-identical (xxh3)");
    show_move(&src, VMIG_STATE_RUNNING);

    say("\n== a flipped byte is refused at RESUMING -> STOP\n");
    sim_run(&src, 1000, 3);
    before = XXH3_64bits(dst.table, TABLE_BYTES);
    show_move(&src, VMIG_STATE_STOP_COPY);
    show_move(&dst, VMIG_STATE_RESUMING);
    stop_bytes = 0;
    rc = transfer(&src, &dst, buf, &stop_bytes, 1);
    show_move(&dst, VMIG_STATE_RUNNING);
    verdict(vmig_dev_state(dst.dev) == VMIG_STATE_RESUMING,
            "validation failed (EBADMSG); destination still RESUMING");
    verdict(XXH3_64bits(dst.table, TABLE_BYTES) == before,
            "destination device untouched");
    show_move(&src, VMIG_STATE_RUNNING);

    say("\n== a device reset during PRE_COPY\n");
    show_move(&src, VMIG_STATE_PRE_COPY);
    rc = vmig_dev_read(src.dev, buf, RECORD, NULL);
    verdict(rc > 0, "reader gets initial data");
    vmig_dev_reset(src.dev, VMIG_RESET_HOST);
    rc = vmig_dev_read(src.dev, buf, RECORD, NULL);
    verdict(rc == -ENODEV, "after the reset the reader gets ENODEV, not a "
                           "silent end");
    verdict(vmig_dev_state(src.dev) == VMIG_STATE_RUNNING,
            "device back in RUNNING");

    say("\n== STOP_COPY -> PRE_COPY (the kernel looped here until 2026)\n");
    show_move(&src, VMIG_STATE_STOP_COPY);
    rc = vmig_dev_set_state(src.dev, VMIG_STATE_PRE_COPY);
    verdict(rc == -EINVAL && vmig_dev_state(src.dev) == VMIG_STATE_STOP_COPY,
            "refused with EINVAL at once; device stays in STOP_COPY");

    sim_fini(&src);
    sim_fini(&dst);
    free(buf);
    say("\n%s: %d unexpected outcome(s)\n", failures ? "FAILED" : "PASSED",
        failures);
    return failures ? 1 : 0;
}
