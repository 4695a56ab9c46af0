/* SPDX-License-Identifier: MIT */
/*
 * stream_load.c - libFuzzer harness for the envelope loader.
 *
 * The first input byte picks the configuration (inspection mode or a
 * device with rules, and a small or large record limit) and how the rest is
 * split into writes; the rest is the stream.  Invariants checked: the
 * sink's commit only happens when finish() returns 0, abort and commit are
 * each called at most once and never both, and data reaches the sink only
 * inside begin/end.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/stream.h>

static const uint32_t produced[] = {1, 2};
static const uint32_t accepted[] = {2};
static const struct vmig_compat_bad bad[] = {
    {1, "EQ/AEQ addresses saved wrongly"},
};
static const struct vmig_compat_kv params[] = {
    {"qp-count", "16"},
    {"isolation", "none"},
};
static const struct vmig_compat_desc local = {
    .vendor_id = VMIG_VENDOR_PCI(0x19e5),
    .device_type = 0xa256,
    .generation = 3,
    .mig_flags = VMIG_MIGF_STOP_COPY | VMIG_MIGF_PRE_COPY,
    .compat_flags = VMIG_COMPATF_ACCEPT_OLDER_GEN,
    .stream_version = 2,
    .vendor_version = "golden-device 1.0",
    .produced = produced,
    .n_produced = 2,
    .accepted = accepted,
    .n_accepted = 1,
    .known_bad = bad,
    .n_known_bad = 1,
    .params = params,
    .n_params = 2,
};
static const struct vmig_stream_rule rules[] = {
    {0x100, VMIG_RULE_REQUIRED, 64},
    {0x200, VMIG_RULE_MULTI, 0},
    {0x300, VMIG_RULE_MULTI | VMIG_RULE_REQUIRED, 0},
};

struct sink {
    int in_rec;
    uint64_t left;
    int commits;
    int aborts;
};

static int
s_begin(void *opaque, const struct vmig_stream_record *rec)
{
    struct sink *k = opaque;

    if (k->in_rec || k->commits || k->aborts) {
        abort();
    }
    k->in_rec = 1;
    k->left = rec->len;
    return 0;
}

static int
s_data(void *opaque, const void *buf, size_t n)
{
    struct sink *k = opaque;
    volatile uint8_t sink = 0;

    if (!k->in_rec || n > k->left) {
        abort();
    }
    sink = ((const uint8_t *)buf)[0] ^ ((const uint8_t *)buf)[n - 1];
    (void)sink;
    k->left -= n;
    return 0;
}

static int
s_end(void *opaque, const struct vmig_stream_record *rec)
{
    struct sink *k = opaque;

    (void)rec;
    if (!k->in_rec || k->left != 0) {
        abort();
    }
    k->in_rec = 0;
    return 0;
}

static int
s_commit(void *opaque)
{
    struct sink *k = opaque;

    if (k->commits || k->aborts || k->in_rec) {
        abort();
    }
    k->commits++;
    return 0;
}

static void
s_abort(void *opaque)
{
    struct sink *k = opaque;

    if (k->commits || k->aborts) {
        abort();
    }
    k->aborts++;
}

static const struct vmig_stream_sink_ops ops = {s_begin, s_data, s_end,
                                                s_commit, s_abort};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sink k = {0};
    struct vmig_stream_loader_cfg cfg = {
        .rules = rules,
        .n_rules = 3,
        .sink = &ops,
        .sink_opaque = &k,
    };
    struct vmig_stream_loader *l;
    size_t off = 1, step;
    uint8_t mode;
    int ret = 0;

    if (size == 0) {
        return 0;
    }
    mode = data[0];
    cfg.local = (mode & 1) ? NULL : &local;
    cfg.max_record_len = (mode & 2) ? 4096 : 0;
    step = (mode >> 2) == 0 ? size : (size_t)(mode >> 2);
    if (vmig_stream_loader_new(NULL, &cfg, &l) < 0) {
        return 0;
    }
    while (off < size && ret == 0) {
        size_t c = size - off < step ? size - off : step;

        ret = vmig_stream_loader_write(l, data + off, c);
        off += c;
    }
    if (ret == 0) {
        ret = vmig_stream_loader_finish(l);
    }
    if ((ret == 0) != (k.commits == 1)) {
        abort();
    }
    (void)vmig_stream_loader_error(l, NULL);
    vmig_stream_loader_free(l);
    if (k.commits + k.aborts != 1) {
        abort();
    }
    return 0;
}
