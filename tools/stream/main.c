/* SPDX-License-Identifier: MIT */
/*
 * vmig-stream - inspect and verify device-state envelopes
 * (docs/stream-format.md).  Public API only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmig/compat.h>
#include <vmig/ctx.h>
#include <vmig/stream.h>

enum { EXIT_OK = 0, EXIT_BAD = 1, EXIT_USAGE = 2 };

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: vmig-stream [-v] COMMAND ARGS\n"
            "\n"
            "commands:\n"
            "  dump FILE        print the header, the source descriptor and\n"
            "                   every record (type, flags, length, offset,\n"
            "                   checksum), then verify the END digest\n"
            "  verify FILE      verify silently; the exit status says it all\n"
            "  desc FILE        print the stream's source descriptor as JSON\n"
            "  check DST SRC    IS_COMPATIBLE: can a device described by SRC\n"
            "                   migrate onto one described by DST?  DST is a\n"
            "                   descriptor JSON file; SRC is one too, or a\n"
            "                   stream file whose descriptor is used (and\n"
            "                   whose stream version is then the one judged)\n"
            "\n"
            "options:\n"
            "  -v               also print library debug messages\n"
            "  -h, --help       this text\n"
            "\n"
            "exit status:\n"
            "  0  the stream is valid (check: compatible)\n"
            "  1  the stream is invalid or truncated (check: incompatible);\n"
            "     the message names the problem and its stream offset\n"
            "  2  usage error, or a file could not be read or parsed\n"
            "\n"
            "FILE may be - for standard input.\n");
}

struct dump {
    int print;
    int printed_desc;
    uint64_t seq;
    uint64_t start;
    const struct vmig_stream_loader *l;
};

static void
flags_str(uint32_t flags, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s",
             (flags & VMIG_RECF_MANDATORY) ? "mandatory" : "optional",
             (flags & VMIG_RECF_MULTI) ? ",multi" : "");
}

static void print_head(struct dump *d);

static int
d_begin(void *opaque, const struct vmig_stream_record *rec)
{
    struct dump *d = opaque;
    struct vmig_stream_info info;

    print_head(d);
    vmig_stream_loader_info(d->l, &info);
    d->start = info.offset - VMIG_STREAM_REC_HEADER_SIZE;
    (void)rec;
    return 0;
}

static int
d_end(void *opaque, const struct vmig_stream_record *rec)
{
    struct dump *d = opaque;
    char fl[32];

    d->seq++;
    if (d->print) {
        flags_str(rec->flags, fl, sizeof(fl));
        printf("record %-4llu type 0x%04x  flags %-15s len %-10llu "
               "offset %-10llu checksum ok\n",
               (unsigned long long)d->seq, rec->type, fl,
               (unsigned long long)rec->len, (unsigned long long)d->start);
    }
    return 0;
}

static const struct vmig_stream_sink_ops dump_ops = {
    .begin = d_begin,
    .end = d_end,
};

static void
print_desc(const struct vmig_compat_desc *s)
{
    char vendor[32];

    if (s->vendor_id & VMIG_VENDOR_PCI_FLAG) {
        snprintf(vendor, sizeof(vendor), "0x%08x (PCI vendor 0x%04x)",
                 s->vendor_id, s->vendor_id & VMIG_VENDOR_PCI_MASK);
    } else {
        snprintf(vendor, sizeof(vendor), "0x%08x", s->vendor_id);
    }
    printf("descriptor:\n");
    printf("  vendor id       %s\n", vendor);
    printf("  device type     0x%x\n", s->device_type);
    printf("  generation      %u\n", s->generation);
    printf("  vendor version  \"%s\"\n",
           s->vendor_version ? s->vendor_version : "");
    printf("  stream version  %u\n", s->stream_version);
    printf("  produces       ");
    for (size_t i = 0; i < s->n_produced; i++) {
        printf(" %u", s->produced[i]);
    }
    printf(s->n_produced ? "\n" : " %u\n", s->stream_version);
    printf("  accepts        ");
    for (size_t i = 0; i < s->n_accepted; i++) {
        printf(" %u", s->accepted[i]);
    }
    printf(s->n_accepted ? "\n" : " %u\n", s->stream_version);
    for (size_t i = 0; i < s->n_known_bad; i++) {
        printf("  known bad       %u: %s\n", s->known_bad[i].version,
               s->known_bad[i].reason);
    }
    printf("  migration flags 0x%x%s%s%s\n", s->mig_flags,
           (s->mig_flags & VMIG_MIGF_STOP_COPY) ? " stop-copy" : "",
           (s->mig_flags & VMIG_MIGF_P2P) ? " p2p" : "",
           (s->mig_flags & VMIG_MIGF_PRE_COPY) ? " pre-copy" : "");
    printf("  compat flags    0x%x%s\n", s->compat_flags,
           (s->compat_flags & VMIG_COMPATF_ACCEPT_OLDER_GEN)
               ? " accept-older-generations"
               : "");
    for (size_t i = 0; i < s->n_params; i++) {
        printf("  param           %s = \"%s\"\n", s->params[i].key,
               s->params[i].value);
    }
}

/* Header and DESCRIPTOR, printed once, as soon as they were accepted. */
static void
print_head(struct dump *d)
{
    const struct vmig_compat_desc *src = vmig_stream_loader_source(d->l);
    struct vmig_stream_info info;
    int dlen;

    if (!d->print || d->printed_desc || src == NULL) {
        return;
    }
    d->printed_desc = 1;
    vmig_stream_loader_info(d->l, &info);
    dlen = vmig_compat_desc_to_bin(src, NULL, 0);
    printf("header: format %u, vendor 0x%08x, device type 0x%x, stream "
           "version %u, checksum ok\n",
           info.format, info.vendor_id, info.device_type, info.stream_version);
    printf("record 0    type 0x0001  flags mandatory       len %-10d "
           "offset %-10d checksum ok (DESCRIPTOR)\n",
           dlen, VMIG_STREAM_HEADER_SIZE);
    print_desc(src);
}

static FILE *
open_in(const char *path)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");

    if (f == NULL) {
        fprintf(stderr, "vmig-stream: %s: %s\n", path, strerror(errno));
    }
    return f;
}

/*
 * Load @path in inspection mode.  @mode: 0 verify, 1 dump, 2 descriptor
 * only (stops once the descriptor arrived and copies it to @desc_out).
 */
static int
run_load(vmig_ctx_t *ctx, const char *path, int mode,
         struct vmig_compat_desc **desc_out, uint32_t *version_out)
{
    struct dump d = {.print = mode == 1};
    struct vmig_stream_loader_cfg cfg = {.sink = &dump_ops, .sink_opaque = &d};
    struct vmig_stream_loader *l;
    struct vmig_stream_info info;
    static uint8_t buf[1 << 16];
    int printed_desc = 0, ret = 0, rc = EXIT_OK;
    FILE *f = open_in(path);
    size_t n;

    if (f == NULL) {
        return EXIT_USAGE;
    }
    if (vmig_stream_loader_new(ctx, &cfg, &l) < 0) {
        fprintf(stderr, "vmig-stream: out of memory\n");
        return EXIT_USAGE;
    }
    d.l = l;
    while (ret == 0 && (n = fread(buf, 1, sizeof(buf), f)) > 0) {
        ret = vmig_stream_loader_write(l, buf, n);
        if (!printed_desc && vmig_stream_loader_compat_state(l) == 1) {
            printed_desc = 1;
            print_head(&d);
            if (mode == 2) {
                vmig_stream_loader_info(l, &info);
                if (version_out != NULL) {
                    *version_out = info.stream_version;
                }
                ret = vmig_compat_desc_dup(vmig_stream_loader_source(l),
                                           desc_out);
                if (ret < 0) {
                    fprintf(stderr,
                            "vmig-stream: %s: cannot copy the "
                            "descriptor: %s\n",
                            path, strerror(-ret));
                    rc = EXIT_USAGE;
                }
                break;
            }
        }
    }
    if (ferror(f)) {
        fprintf(stderr, "vmig-stream: %s: read error\n", path);
        rc = EXIT_USAGE;
    } else if (mode == 2 && !printed_desc) {
        if (ret == 0) {
            ret = vmig_stream_loader_finish(l);
        }
        fprintf(stderr, "vmig-stream: %s: no usable descriptor: %s\n", path,
                vmig_stream_loader_error(l, NULL));
        rc = EXIT_BAD;
    } else if (mode != 2) {
        if (ret == 0) {
            ret = vmig_stream_loader_finish(l);
        }
        vmig_stream_loader_info(l, &info);
        if (ret < 0) {
            enum vmig_stream_err kind;
            const char *msg = vmig_stream_loader_error(l, &kind);

            fprintf(stderr, "vmig-stream: %s: INVALID (%s, %s): %s\n", path,
                    vmig_stream_err_name(kind), strerror(-ret), msg);
            rc = EXIT_BAD;
        } else if (mode == 1) {
            printf("end: %llu records, %llu bytes, digest 0x%016llx ok\n",
                   (unsigned long long)info.records,
                   (unsigned long long)info.offset,
                   (unsigned long long)info.digest);
            printf("stream OK\n");
        }
    }
    vmig_stream_loader_free(l);
    if (f != stdin) {
        fclose(f);
    }
    return rc;
}

static int
read_text(const char *path, char **out)
{
    FILE *f = open_in(path);
    size_t cap = 4096, len = 0, n;
    char *buf;

    if (f == NULL) {
        return -1;
    }
    buf = malloc(cap);
    while (buf != NULL && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            char *nb = cap > (1u << 20) ? NULL : realloc(buf, cap * 2);

            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (f != stdin) {
        fclose(f);
    }
    if (buf == NULL) {
        fprintf(stderr, "vmig-stream: %s: too large or out of memory\n", path);
        return -1;
    }
    buf[len] = '\0';
    *out = buf;
    return (int)len;
}

/* A descriptor from a JSON file, or from a stream's DESCRIPTOR record. */
static int
load_desc(vmig_ctx_t *ctx, const char *path, struct vmig_compat_desc **out,
          uint32_t *stream_version)
{
    char *text, err[200], magic[7];
    int ret;

    if (strcmp(path, "-") != 0) {
        FILE *f = fopen(path, "rb");

        if (f != NULL) {
            size_t n = fread(magic, 1, sizeof(magic), f);

            fclose(f);
            if (n == sizeof(magic) && memcmp(magic, "VMIGDEV", 7) == 0) {
                return run_load(ctx, path, 2, out, stream_version);
            }
        }
    }
    if (read_text(path, &text) < 0) {
        return EXIT_USAGE;
    }
    ret = vmig_compat_desc_from_json(text, out, err, sizeof(err));
    free(text);
    if (ret < 0) {
        fprintf(stderr, "vmig-stream: %s: %s\n", path, err);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

static int
cmd_desc(vmig_ctx_t *ctx, const char *path)
{
    struct vmig_compat_desc *d = NULL;
    char *json;
    int rc = run_load(ctx, path, 2, &d, NULL);

    if (rc != EXIT_OK) {
        return rc;
    }
    if (vmig_compat_desc_to_json(d, &json) < 0) {
        vmig_compat_desc_free(d);
        return EXIT_USAGE;
    }
    printf("%s\n", json);
    free(json);
    vmig_compat_desc_free(d);
    return EXIT_OK;
}

static int
cmd_check(vmig_ctx_t *ctx, const char *dst_path, const char *src_path)
{
    struct vmig_compat_desc *dst = NULL, *src = NULL;
    struct vmig_compat_result res;
    uint32_t version = 0;
    int rc, ret;

    rc = load_desc(ctx, dst_path, &dst, NULL);
    if (rc != EXIT_OK) {
        return rc;
    }
    rc = load_desc(ctx, src_path, &src, &version);
    if (rc != EXIT_OK) {
        vmig_compat_desc_free(dst);
        return rc;
    }
    if (version != 0) {
        /* A stream in hand: judge the version it actually carries. */
        struct vmig_compat_desc pinned = *src;

        pinned.stream_version = version;
        pinned.produced = &version;
        pinned.n_produced = 1;
        ret = vmig_compat_check(dst, &pinned, NULL, NULL, &res);
    } else {
        ret = vmig_compat_check(dst, src, NULL, NULL, &res);
    }
    if (ret == 1) {
        printf("%s\n", res.reason); /* "compatible: ..." */
    } else {
        printf("NOT compatible: %s\n", res.reason);
    }
    vmig_compat_desc_free(dst);
    vmig_compat_desc_free(src);
    return ret == 1 ? EXIT_OK : ret == 0 ? EXIT_BAD : EXIT_USAGE;
}

int
main(int argc, char **argv)
{
    vmig_ctx_t *ctx;
    int verbose = 0, i = 1, rc;
    const char *cmd;

    for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
        if (strcmp(argv[i], "-v") == 0) {
            verbose = 1;
        } else if (strcmp(argv[i], "-h") == 0 ||
                   strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return EXIT_OK;
        } else {
            fprintf(stderr, "vmig-stream: unknown option %s\n", argv[i]);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    cmd = argv[i++];
    if (vmig_ctx_new("vmig-stream", verbose ? vmig_log_stderr : NULL, NULL,
                     &ctx) < 0) {
        return EXIT_USAGE;
    }
    vmig_ctx_set_level(ctx, verbose ? VMIG_LOG_DEBUG : VMIG_LOG_ERR);
    if (strcmp(cmd, "dump") == 0 && argc - i == 1) {
        rc = run_load(ctx, argv[i], 1, NULL, NULL);
    } else if (strcmp(cmd, "verify") == 0 && argc - i == 1) {
        rc = run_load(ctx, argv[i], 0, NULL, NULL);
    } else if (strcmp(cmd, "desc") == 0 && argc - i == 1) {
        rc = cmd_desc(ctx, argv[i]);
    } else if (strcmp(cmd, "check") == 0 && argc - i == 2) {
        rc = cmd_check(ctx, argv[i], argv[i + 1]);
    } else {
        fprintf(stderr,
                "vmig-stream: unknown command or wrong arguments: "
                "%s\n",
                cmd);
        usage(stderr);
        rc = EXIT_USAGE;
    }
    vmig_ctx_free(ctx);
    return rc;
}
