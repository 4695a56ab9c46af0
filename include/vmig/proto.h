/* SPDX-License-Identifier: MIT */
/*
 * proto.h - the vfio-user wire format: message structs and a pure codec.
 *
 * Layouts follow the public vfio-user specification (QEMU
 * docs/interop/vfio-user.rst).  All fields are in host byte order, as the
 * spec requires for AF_UNIX transports.  Every payload struct below is
 * appended to the 16-byte header; their sizes are _Static_assert'ed.
 *
 * The decoder is total: any byte string (plus a count of received file
 * descriptors) yields either a message whose sizes, counts and flags have
 * been checked against the command's layout, or a negative errno together
 * with a specific reason (enum vmig_vfu_perr).  It never reads outside the
 * buffer it was given and never trusts a length field.
 *
 * vmig's extensions (negotiated in VERSION capabilities under "x-vmig") are
 * described in docs/vfio-user-extensions.md.
 */
#ifndef VMIG_PROTO_H
#define VMIG_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmig/export.h>

/* Protocol version spoken by vmig (spec "0.1"). */
#define VMIG_VFU_MAJOR 0
#define VMIG_VFU_MINOR 1

/* Defaults the spec assigns to absent capabilities. */
#define VMIG_VFU_DEF_MAX_FDS 1
#define VMIG_VFU_DEF_MAX_DATA_XFER (1u << 20)
#define VMIG_VFU_DEF_MAX_DMA_MAPS 65535
#define VMIG_VFU_DEF_PGSIZES 4096

/*
 * vmig's own hard limits: anything above is refused before a buffer is
 * allocated for it.  A message carries at most one data transfer of
 * VMIG_VFU_MAX_DATA_XFER bytes plus a small fixed part.
 */
#define VMIG_VFU_MAX_DATA_XFER (8u << 20)
#define VMIG_VFU_MAX_MSG_SIZE (VMIG_VFU_MAX_DATA_XFER + 4096)
#define VMIG_VFU_MAX_FDS 16
#define VMIG_VFU_MAX_WRITE_MULTI 200
#define VMIG_VFU_MAX_IRQ_COUNT 2048
#define VMIG_VFU_MAX_LOG_RANGES 256
#define VMIG_VFU_MAX_VERSION_JSON 4096

/* Commands (the "Commands" table of the spec). */
enum vmig_vfu_cmd {
    VMIG_VFU_CMD_VERSION = 1,
    VMIG_VFU_CMD_DMA_MAP = 2,
    VMIG_VFU_CMD_DMA_UNMAP = 3,
    VMIG_VFU_CMD_DEVICE_GET_INFO = 4,
    VMIG_VFU_CMD_DEVICE_GET_REGION_INFO = 5,
    VMIG_VFU_CMD_DEVICE_GET_REGION_IO_FDS = 6,
    VMIG_VFU_CMD_DEVICE_GET_IRQ_INFO = 7,
    VMIG_VFU_CMD_DEVICE_SET_IRQS = 8,
    VMIG_VFU_CMD_REGION_READ = 9,
    VMIG_VFU_CMD_REGION_WRITE = 10,
    VMIG_VFU_CMD_DMA_READ = 11,
    VMIG_VFU_CMD_DMA_WRITE = 12,
    VMIG_VFU_CMD_DEVICE_RESET = 13,
    VMIG_VFU_CMD_REGION_WRITE_MULTI = 15,
    VMIG_VFU_CMD_DEVICE_FEATURE = 16,
    VMIG_VFU_CMD_MIG_DATA_READ = 17,
    VMIG_VFU_CMD_MIG_DATA_WRITE = 18,
    VMIG_VFU_CMD__COUNT
};

/* Header flags. */
#define VMIG_VFU_F_TYPE_MASK 0xfu
#define VMIG_VFU_F_TYPE_COMMAND 0x0u
#define VMIG_VFU_F_TYPE_REPLY 0x1u
#define VMIG_VFU_F_NO_REPLY 0x10u
#define VMIG_VFU_F_ERROR 0x20u

/* struct vmig_vfu_hdr - the 16-byte header of every message. */
struct vmig_vfu_hdr {
    uint16_t id;
    uint16_t cmd;
    uint32_t size; /* whole message, header included */
    uint32_t flags;
    uint32_t error; /* positive errno in error replies */
};
_Static_assert(sizeof(struct vmig_vfu_hdr) == 16, "header");

/* VERSION request and reply; followed by optional NUL-terminated JSON. */
struct vmig_vfu_version {
    uint16_t major;
    uint16_t minor;
};
_Static_assert(sizeof(struct vmig_vfu_version) == 4, "version");

/* DMA_MAP request (reply has no payload). */
#define VMIG_VFU_DMA_READ 0x1u
#define VMIG_VFU_DMA_WRITE 0x2u
struct vmig_vfu_dma_map {
    uint32_t argsz;
    uint32_t flags;
    uint64_t offset; /* file offset in the passed fd, 0 without one */
    uint64_t addr;
    uint64_t size;
};
_Static_assert(sizeof(struct vmig_vfu_dma_map) == 32, "dma_map");

/* DMA_UNMAP request and reply. */
#define VMIG_VFU_DMA_UNMAP_ALL 0x2u /* VFIO_DMA_UNMAP_FLAG_ALL */
struct vmig_vfu_dma_unmap {
    uint32_t argsz;
    uint32_t flags;
    uint64_t addr;
    uint64_t size;
};
_Static_assert(sizeof(struct vmig_vfu_dma_unmap) == 24, "dma_unmap");

/* DEVICE_GET_INFO request and reply. */
#define VMIG_VFU_DEV_RESET 0x1u
#define VMIG_VFU_DEV_PCI 0x2u
struct vmig_vfu_device_info {
    uint32_t argsz;
    uint32_t flags;
    uint32_t num_regions;
    uint32_t num_irqs;
};
_Static_assert(sizeof(struct vmig_vfu_device_info) == 16, "device_info");

/* DEVICE_GET_REGION_INFO request and reply (+ capability chain). */
#define VMIG_VFU_REGION_READ 0x1u
#define VMIG_VFU_REGION_WRITE 0x2u
#define VMIG_VFU_REGION_MMAP 0x4u
#define VMIG_VFU_REGION_CAPS 0x8u
struct vmig_vfu_region_info {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t cap_offset; /* from the start of this struct */
    uint64_t size;
    uint64_t offset; /* mmap offset in the passed fd */
};
_Static_assert(sizeof(struct vmig_vfu_region_info) == 32, "region_info");

struct vmig_vfu_cap_hdr {
    uint16_t id;
    uint16_t version;
    uint32_t next; /* from the start of the region info, 0 ends */
};
_Static_assert(sizeof(struct vmig_vfu_cap_hdr) == 8, "cap_hdr");

#define VMIG_VFU_CAP_SPARSE_MMAP 1
struct vmig_vfu_sparse_mmap {
    struct vmig_vfu_cap_hdr hdr;
    uint32_t nr_areas;
    uint32_t reserved;
    /* followed by nr_areas struct vmig_vfu_sparse_area */
};
_Static_assert(sizeof(struct vmig_vfu_sparse_mmap) == 16, "sparse_mmap");
struct vmig_vfu_sparse_area {
    uint64_t offset;
    uint64_t size;
};
_Static_assert(sizeof(struct vmig_vfu_sparse_area) == 16, "sparse_area");

/* DEVICE_GET_REGION_IO_FDS request (vmig answers EOPNOTSUPP). */
struct vmig_vfu_region_io_fds {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t count;
};
_Static_assert(sizeof(struct vmig_vfu_region_io_fds) == 16, "io_fds");

/* DEVICE_GET_IRQ_INFO request and reply. */
#define VMIG_VFU_IRQ_INFO_EVENTFD 0x1u
#define VMIG_VFU_IRQ_INFO_MASKABLE 0x2u
#define VMIG_VFU_IRQ_INFO_AUTOMASKED 0x4u
#define VMIG_VFU_IRQ_INFO_NORESIZE 0x8u
struct vmig_vfu_irq_info {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t count;
};
_Static_assert(sizeof(struct vmig_vfu_irq_info) == 16, "irq_info");

/* DEVICE_SET_IRQS request (reply has no payload). */
#define VMIG_VFU_IRQ_DATA_NONE 0x1u
#define VMIG_VFU_IRQ_DATA_BOOL 0x2u
#define VMIG_VFU_IRQ_DATA_EVENTFD 0x4u
#define VMIG_VFU_IRQ_ACTION_MASK 0x8u
#define VMIG_VFU_IRQ_ACTION_UNMASK 0x10u
#define VMIG_VFU_IRQ_ACTION_TRIGGER 0x20u
#define VMIG_VFU_IRQ_DATA_MASK 0x7u
#define VMIG_VFU_IRQ_ACTION_MASK_ALL 0x38u
struct vmig_vfu_irq_set {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t start;
    uint32_t count;
    /* DATA_BOOL: count bytes follow; DATA_EVENTFD: fds ride along */
};
_Static_assert(sizeof(struct vmig_vfu_irq_set) == 20, "irq_set");

/* REGION_READ / REGION_WRITE request and reply. */
struct vmig_vfu_region_rw {
    uint64_t offset;
    uint32_t region;
    uint32_t count;
    /* data follows in REGION_WRITE requests and REGION_READ replies */
};
_Static_assert(sizeof(struct vmig_vfu_region_rw) == 16, "region_rw");

/* DMA_READ / DMA_WRITE (server to client) request and reply. */
struct vmig_vfu_dma_rw {
    uint64_t addr;
    uint64_t count;
    /* data follows in DMA_WRITE requests and DMA_READ replies */
};
_Static_assert(sizeof(struct vmig_vfu_dma_rw) == 16, "dma_rw");

/* REGION_WRITE_MULTI request: wr_cnt, then wr_cnt entries; reply wr_cnt. */
struct vmig_vfu_write_multi {
    uint64_t wr_cnt;
};
_Static_assert(sizeof(struct vmig_vfu_write_multi) == 8, "write_multi");
struct vmig_vfu_write_one {
    uint64_t offset;
    uint32_t region;
    uint32_t count; /* 1..8 */
    uint8_t data[8];
};
_Static_assert(sizeof(struct vmig_vfu_write_one) == 24, "write_one");

/* DEVICE_FEATURE request and reply; feature data follows. */
#define VMIG_VFU_FEATURE_MASK 0xffffu
#define VMIG_VFU_FEATURE_GET (1u << 16)
#define VMIG_VFU_FEATURE_SET (1u << 17)
#define VMIG_VFU_FEATURE_PROBE (1u << 18)
struct vmig_vfu_feature {
    uint32_t argsz;
    uint32_t flags;
};
_Static_assert(sizeof(struct vmig_vfu_feature) == 8, "feature");

/* Feature indexes: the kernel's, plus vmig's extensions (0xf00x). */
#define VMIG_VFU_FEAT_MIGRATION 1
#define VMIG_VFU_FEAT_MIG_DEVICE_STATE 2
#define VMIG_VFU_FEAT_DMA_LOGGING_START 6
#define VMIG_VFU_FEAT_DMA_LOGGING_STOP 7
#define VMIG_VFU_FEAT_DMA_LOGGING_REPORT 8
#define VMIG_VFU_FEAT_MIG_DATA_SIZE 9
#define VMIG_VFU_FEAT_X_PRECOPY_INFO 0xf001
#define VMIG_VFU_FEAT_X_BULK_CHANNEL 0xf002
#define VMIG_VFU_FEAT_X_BULK_READ 0xf003
#define VMIG_VFU_FEAT_X_BULK_WRITE 0xf004

struct vmig_vfu_feat_migration {
    uint64_t flags; /* VMIG_MIGRATION_* */
};
_Static_assert(sizeof(struct vmig_vfu_feat_migration) == 8, "f_mig");
struct vmig_vfu_feat_mig_state {
    uint32_t device_state;
    uint32_t data_fd; /* unused in vfio-user */
};
_Static_assert(sizeof(struct vmig_vfu_feat_mig_state) == 8, "f_state");
struct vmig_vfu_feat_log_ctl {
    uint64_t page_size;
    uint32_t num_ranges;
    uint32_t reserved;
    /* num_ranges struct vmig_vfu_log_range follow */
};
_Static_assert(sizeof(struct vmig_vfu_feat_log_ctl) == 16, "f_logctl");
struct vmig_vfu_log_range {
    uint64_t iova;
    uint64_t length;
};
_Static_assert(sizeof(struct vmig_vfu_log_range) == 16, "log_range");
struct vmig_vfu_feat_log_report {
    uint64_t iova;
    uint64_t length;
    uint64_t page_size;
    /* reply: bitmap of u64 follows */
};
_Static_assert(sizeof(struct vmig_vfu_feat_log_report) == 24, "f_report");
struct vmig_vfu_feat_data_size {
    uint64_t stop_copy_length;
};
_Static_assert(sizeof(struct vmig_vfu_feat_data_size) == 8, "f_size");
/* Extension: PRE_COPY sizing (VFIO_MIG_GET_PRECOPY_INFO's numbers). */
struct vmig_vfu_feat_precopy {
    uint64_t initial_bytes;
    uint64_t dirty_bytes;
};
_Static_assert(sizeof(struct vmig_vfu_feat_precopy) == 16, "f_precopy");
/* Extension: bulk read request (SET) and its reply; the bulk write reply
 * uses the same struct (max_bytes = bytes received, status 0). */
struct vmig_vfu_feat_bulk_read {
    uint64_t max_bytes; /* request: stop after this many; reply: sent */
    int32_t status;     /* reply: 0 end, ENOMSG no more for now, errno */
    uint32_t reserved;
};
_Static_assert(sizeof(struct vmig_vfu_feat_bulk_read) == 16, "f_bulk");
/* Extension: frame header on the bulk channel; frames carry at most
 * VMIG_VFU_BULK_FRAME_MAX data bytes. */
#define VMIG_VFU_BULK_FRAME_MAX (4u << 20)
struct vmig_vfu_bulk_frame {
    uint32_t len;   /* data bytes following; 0 ends the burst */
    int32_t status; /* with len 0: 0 end, ENOMSG, EAGAIN, or errno */
};
_Static_assert(sizeof(struct vmig_vfu_bulk_frame) == 8, "bulk_frame");

/* MIG_DATA_READ request / reply and MIG_DATA_WRITE request. */
struct vmig_vfu_mig_data {
    uint32_t argsz;
    uint32_t size;
    /* data follows in READ replies and WRITE requests */
};
_Static_assert(sizeof(struct vmig_vfu_mig_data) == 8, "mig_data");

/* Why a message was refused by the decoder. */
enum vmig_vfu_perr {
    VMIG_VFU_PERR_NONE = 0,
    VMIG_VFU_PERR_SHORT_HEADER,  /* fewer than 16 bytes */
    VMIG_VFU_PERR_SIZE_MISMATCH, /* msg_size or a data length disagrees */
    VMIG_VFU_PERR_SHORT_PAYLOAD, /* payload smaller than the fixed part */
    VMIG_VFU_PERR_ARGSZ,         /* argsz smaller than the struct */
    VMIG_VFU_PERR_COUNT,         /* a count above the negotiated limit */
    VMIG_VFU_PERR_FDS,           /* more fds than the command takes */
    VMIG_VFU_PERR_UNKNOWN_CMD,   /* command number not in the spec */
    VMIG_VFU_PERR_BAD_FLAGS,     /* reserved or contradictory flags */
    VMIG_VFU_PERR_BAD_DATA,      /* e.g. JSON not NUL-terminated */
    VMIG_VFU_PERR__COUNT
};

/**
 * struct vmig_vfu_limits - the negotiated limits a decoder enforces.
 * @max_data_xfer: largest count in one data transfer message.
 * @max_fds:       largest number of fds one message may carry.
 */
struct vmig_vfu_limits {
    uint32_t max_data_xfer;
    uint32_t max_fds;
};

/**
 * struct vmig_vfu_msg - a decoded message (a view into the caller's
 * buffer; nothing is copied or allocated).
 * @hdr:     the header, copied out.
 * @payload: the bytes after the header; NULL when @len is 0.
 * @len:     payload length (hdr.size - 16).
 * @nfds:    number of fds that came with the message.
 */
struct vmig_vfu_msg {
    struct vmig_vfu_hdr hdr;
    const uint8_t *payload;
    size_t len;
    unsigned int nfds;
};

/**
 * vmig_vfu_decode() - Check one complete message.
 * @buf:  the bytes received (header included); may be NULL when @len is 0.
 * @len:  how many bytes were received.
 * @nfds: how many fds arrived with them.
 * @lim:  limits to enforce, or NULL for the spec defaults (1 MiB, 1 fd).
 * @out:  receives the message on success; untouched on failure.
 * @why:  receives the reason on failure (NONE on success); may be NULL.
 *
 * Checks, for requests and replies of every command: header size and
 * msg_size == @len, the type bits and reserved flag bits, the payload's
 * fixed part, argsz, every data count against @lim and against the bytes
 * present, fd counts, flag combinations (SET_IRQS, DEVICE_FEATURE,
 * DMA_MAP/UNMAP).  Error replies are accepted with any payload.
 *
 * Return: 0, or -EPROTO (short header, size mismatch, short payload, too
 * many fds), -EINVAL (argsz, bad flags, bad data), -E2BIG (count), -ENOSYS
 * (unknown command).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_decode(const void *buf, size_t len, unsigned int nfds,
                const struct vmig_vfu_limits *lim, struct vmig_vfu_msg *out,
                enum vmig_vfu_perr *why);

/**
 * vmig_vfu_encode() - Build a message: header + up to two payload parts.
 * @buf:   output buffer.
 * @cap:   its size.
 * @hdr:   header template; size is computed here, the rest is copied.
 * @p1:    first payload part (may be NULL when @l1 is 0).
 * @l1:    its length.
 * @p2:    second payload part (may be NULL when @l2 is 0).
 * @l2:    its length.
 *
 * Return: the total message size, or -E2BIG when it exceeds @cap or
 * VMIG_VFU_MAX_MSG_SIZE.
 */
VMIG_EXPORT VMIG_MUST_CHECK long vmig_vfu_encode(void *buf, size_t cap,
                                                 const struct vmig_vfu_hdr *hdr,
                                                 const void *p1, size_t l1,
                                                 const void *p2, size_t l2);

/**
 * vmig_vfu_cmd_name() - "VERSION", "DMA_MAP", ...
 * @cmd: any number.
 *
 * Return: a static string; "UNKNOWN" for numbers outside the spec.
 */
VMIG_EXPORT const char *vmig_vfu_cmd_name(unsigned int cmd);

/**
 * vmig_vfu_perr_name() - "short header", "size mismatch", ...
 * @why: a reason.
 *
 * Return: a static string.
 */
VMIG_EXPORT const char *vmig_vfu_perr_name(enum vmig_vfu_perr why);

/**
 * vmig_vfu_region_sparse() - Find the sparse-mmap capability in a
 * DEVICE_GET_REGION_INFO reply.
 * @info:  the reply payload (struct vmig_vfu_region_info + capabilities).
 * @len:   its length.
 * @areas: receives up to @max areas; may be NULL when @max is 0.
 * @max:   room in @areas.
 *
 * Walks the capability chain with bounds checks; offsets must increase,
 * so a looping chain is an error.
 *
 * Return: the number of areas the capability lists (only the first @max
 * are copied), 0 when the reply has no sparse-mmap capability, or
 * -EPROTO for a malformed chain.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_region_sparse(const void *info, size_t len,
                       struct vmig_vfu_sparse_area *areas, unsigned int max);

/* vmig extension bits, negotiated under capabilities."x-vmig". */
#define VMIG_VFU_EXT_PRECOPY_INFO 0x1u
#define VMIG_VFU_EXT_BULK_DATA 0x2u
#define VMIG_VFU_EXT__ALL (VMIG_VFU_EXT_PRECOPY_INFO | VMIG_VFU_EXT_BULK_DATA)

/**
 * struct vmig_vfu_caps - the VERSION capabilities object.
 * @max_msg_fds:        fds the sender can receive in one message.
 * @max_data_xfer_size: largest data transfer the sender accepts.
 * @max_dma_maps:       DMA windows the sender supports.
 * @pgsizes:            page sizes for DMA maps, or'ed.
 * @write_multiple:     REGION_WRITE_MULTI supported.
 * @legacy_migration:   a "migration" object (old spec) was present; it
 *                      is accepted and otherwise ignored.
 * @ext:                VMIG_VFU_EXT_* extensions offered/accepted.
 */
struct vmig_vfu_caps {
    uint32_t max_msg_fds;
    uint32_t max_data_xfer_size;
    uint32_t max_dma_maps;
    uint64_t pgsizes;
    bool write_multiple;
    bool legacy_migration;
    uint32_t ext;
};

/**
 * vmig_vfu_caps_default() - The values the spec assigns when absent.
 * @caps: filled in.
 */
VMIG_EXPORT void vmig_vfu_caps_default(struct vmig_vfu_caps *caps);

/**
 * vmig_vfu_caps_parse() - Parse VERSION's JSON data.
 * @json: the data (need not be NUL-terminated); may be NULL if @len is 0.
 * @len:  its length, excluding any terminating NUL.
 * @out:  receives the capabilities (defaults for absent ones); untouched
 *        on failure.
 *
 * Unknown capabilities are ignored, "migration" is accepted and ignored;
 * a known capability of the wrong JSON type, or a zero max_data_xfer_size
 * or pgsizes, is an error.
 *
 * Return: 0, or -EINVAL (not JSON, not an object, wrong types), -E2BIG
 * (longer than VMIG_VFU_MAX_VERSION_JSON).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_caps_parse(const char *json, size_t len, struct vmig_vfu_caps *out);

/**
 * vmig_vfu_caps_format() - Format capabilities as VERSION's JSON data.
 * @caps: capabilities.
 * @buf:  output, NUL-terminated on success.
 * @cap:  size of @buf.
 *
 * Return: the string length (without NUL), or -E2BIG.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_vfu_caps_format(const struct vmig_vfu_caps *caps, char *buf, size_t cap);

#endif /* VMIG_PROTO_H */
