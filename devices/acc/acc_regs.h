/* SPDX-License-Identifier: MIT */
/*
 * acc_regs.h - the emulated accelerator's guest-visible interface: PCI
 * identity, the BAR0 register map, and the layout of the queue entries that
 * live in guest memory.  Everything here is ABI between the device model
 * (acc_model.c) and a guest driver (guest-driver.c); docs/acc.md explains
 * the semantics in prose.
 *
 * All registers are 32 bits wide, little-endian, at 4-byte aligned offsets
 * of BAR0.  A 64-bit guest address is written as two halves, _LO then _HI;
 * the device latches the value when the ring is enabled, so the order of
 * the two writes does not matter.  Reads of undefined offsets return 0 and
 * writes to them are ignored.
 *
 * Rings: every ring (SQ, CQ, EQ, AEQ) has a power-of-two number of
 * entries and indices run from 0 to size-1 and wrap.  The producer and
 * consumer index are both registers; a ring is empty when they are equal
 * and full when producer + 1 == consumer (mod size), so a ring holds at
 * most size-1 entries.  Device-written entries (CQE, EQE, AEQE) carry a
 * phase bit that the device flips each time its producer index wraps; it
 * starts at 1, so a zeroed ring reads as empty.
 */
#ifndef ACC_REGS_H
#define ACC_REGS_H

#include <stdint.h>

/* ------------------------------------------------------------ identity */
/*
 * Chosen for emulation only: as far as we know 0xacce is not a vendor id
 * assigned by PCI-SIG.  Never present this device to a real OS driver.
 */
#define ACC_PCI_VENDOR_ID 0xacceu
#define ACC_PCI_DEVICE_ID 0x0005u
#define ACC_PCI_CLASS 0x120000u /* processing accelerator */
#define ACC_HW_REVISION 1u
#define ACC_BAR0_SIZE 0x1000u

/* ------------------------------------------------------------ limits */
#define ACC_QP_MAX 16u  /* queue pairs the register map has room for */
#define ACC_RING_MIN 2u /* entries; every ring size is a power of 2 */
#define ACC_RING_MAX 4096u
#define ACC_XFER_MAX (16u << 20) /* largest src or dst buffer of a request */

/* Isolation mode: how far a ring fault (an unusable SQ/CQ address) reaches. */
enum acc_isolation {
    ACC_ISO_DEVICE = 0, /* the whole device stops (STATUS.FAULT) */
    ACC_ISO_QP = 1,     /* only the faulting queue pair stops */
    ACC_ISO__COUNT
};

/* ------------------------------------------------------------ global regs */
/* clang-format off */
#define ACC_REG_ID          0x000 /* RO: device id << 16 | vendor id */
#define ACC_REG_REVISION    0x004 /* RO: ACC_HW_REVISION */
#define ACC_REG_CAPS        0x008 /* RO: bit (1 << opcode) per opcode */
#define ACC_REG_QP_NUM      0x00c /* RO: queue pairs of this instance */
#define ACC_REG_ISOLATION   0x010 /* RO: enum acc_isolation */
#define ACC_REG_STATUS      0x014 /* RO: ACC_STATUS_* */
#define ACC_REG_CTRL        0x018 /* RW: ACC_CTRL_* */
#define ACC_REG_RESET       0x01c /* WO: write ACC_RESET_MAGIC to reset */
#define ACC_REG_IRQ_MASK    0x020 /* RW: bit per vector; 1 = masked */
#define ACC_REG_IRQ_STATUS  0x024 /* RW1C: bit per vector; 1 = pending */
#define ACC_REG_DONE_LO     0x028 /* RO: requests completed, low half */
#define ACC_REG_DONE_HI     0x02c /* RO: requests completed, high half */

#define ACC_REG_EQ_BASE_LO  0x030 /* RW: event queue base, low half */
#define ACC_REG_EQ_BASE_HI  0x034 /* RW: event queue base, high half */
#define ACC_REG_EQ_SIZE     0x038 /* RW: entries; 0 = no EQ */
#define ACC_REG_EQ_HEAD     0x03c /* RW: consumer index (doorbell) */
#define ACC_REG_EQ_TAIL     0x040 /* RO: producer index */

#define ACC_REG_AEQ_BASE_LO 0x050 /* RW: async error queue base, low */
#define ACC_REG_AEQ_BASE_HI 0x054 /* RW: async error queue base, high */
#define ACC_REG_AEQ_SIZE    0x058 /* RW: entries; 0 = no AEQ */
#define ACC_REG_AEQ_HEAD    0x05c /* RW: consumer index (doorbell) */
#define ACC_REG_AEQ_TAIL    0x060 /* RO: producer index */

/* ------------------------------------------------------------ per-QP regs */
#define ACC_QP_REG_BASE     0x100
#define ACC_QP_REG_STRIDE   0x040
#define ACC_QP_SQ_BASE_LO   0x00 /* RW while disabled */
#define ACC_QP_SQ_BASE_HI   0x04
#define ACC_QP_CQ_BASE_LO   0x08
#define ACC_QP_CQ_BASE_HI   0x0c
#define ACC_QP_SQ_SIZE      0x10 /* RW while disabled: entries */
#define ACC_QP_CQ_SIZE      0x14
#define ACC_QP_CTRL         0x18 /* RW: ACC_QP_CTRL_ENABLE */
#define ACC_QP_SQ_TAIL      0x1c /* RW: SQ producer index (doorbell) */
#define ACC_QP_SQ_HEAD      0x20 /* RO: SQ consumer index */
#define ACC_QP_CQ_HEAD      0x24 /* RW: CQ consumer index (doorbell) */
#define ACC_QP_CQ_TAIL      0x28 /* RO: CQ producer index */
#define ACC_QP_STATUS       0x2c /* RO: ACC_QP_STATUS_* */
/* clang-format on */

#define ACC_QP_REG(qp, reg) (ACC_QP_REG_BASE + (qp)*ACC_QP_REG_STRIDE + (reg))

#define ACC_STATUS_ENABLED (1u << 0)   /* CTRL.ENABLE is set */
#define ACC_STATUS_FAULT (1u << 1)     /* ISO_DEVICE ring fault: stopped */
#define ACC_STATUS_EQ_OVF (1u << 2)    /* an EQE was dropped (EQ full) */
#define ACC_STATUS_AEQ_OVF (1u << 3)   /* an AEQE was dropped (AEQ full) */
#define ACC_STATUS_AEQ_FAULT (1u << 4) /* the AEQ itself is unreachable */
#define ACC_STATUS_QUIESCED (1u << 5)  /* host stopped the device (STOP) */

#define ACC_CTRL_ENABLE (1u << 0)
#define ACC_CTRL_MASK ACC_CTRL_ENABLE

#define ACC_RESET_MAGIC 0x52534554u /* "RSET" */

/* Interrupt vectors (vfio-user: MSI-X vectors 0 and 1). */
enum acc_irq_vector {
    ACC_IRQ_COMPLETION = 0, /* an EQE was posted */
    ACC_IRQ_ERROR = 1,      /* an AEQE was posted */
    ACC_IRQ__COUNT
};
#define ACC_IRQ_ALL ((1u << ACC_IRQ__COUNT) - 1)

#define ACC_QP_CTRL_ENABLE (1u << 0)
#define ACC_QP_STATUS_ENABLED (1u << 0)
#define ACC_QP_STATUS_FAULT (1u << 1) /* ring fault; disable to clear */

/* ------------------------------------------------------------ requests */
enum acc_opcode {
    ACC_OP_NOP = 0,       /* completes with output length 0 */
    ACC_OP_COPY = 1,      /* dst = src */
    ACC_OP_CRC32C = 2,    /* dst = 4 bytes, CRC32C(src) little-endian */
    ACC_OP_SHA256 = 3,    /* dst = 32 bytes, SHA-256(src) */
    ACC_OP_ZSTD_COMP = 4, /* zstd frame; param = level (0: default) */
    ACC_OP_ZSTD_DECOMP = 5,
    ACC_OP_DEFL_COMP = 6, /* zlib format (RFC 1950); param = level */
    ACC_OP_DEFL_DECOMP = 7,
    ACC_OP__COUNT
};
#define ACC_CAPS_ALL ((1u << ACC_OP__COUNT) - 1)

/* Submission queue entry: 64 bytes, written by the guest. */
struct acc_sqe {
    uint64_t req_id; /* opaque to the device; echoed in the CQE */
    uint8_t opcode;  /* enum acc_opcode */
    uint8_t flags;   /* must be 0 */
    uint16_t param;  /* compression level for *_COMP; else 0 */
    uint32_t rsvd0;
    uint64_t src;     /* guest address of the input */
    uint32_t src_len; /* bytes, at most ACC_XFER_MAX */
    uint32_t rsvd1;
    uint64_t dst;     /* guest address of the output buffer */
    uint32_t dst_len; /* capacity in bytes, at most ACC_XFER_MAX */
    uint32_t rsvd2;
    uint64_t rsvd3[2];
};
_Static_assert(sizeof(struct acc_sqe) == 64, "SQE is 64 bytes");

/* Completion status (CQE.status, and AEQE.code for request errors). */
enum acc_status {
    ACC_ST_OK = 0,
    ACC_ST_BAD_OPCODE = 1, /* unknown opcode or non-zero flags */
    ACC_ST_BAD_ADDR = 2,   /* src or dst not in guest memory (DMA fault) */
    ACC_ST_BAD_LEN = 3,    /* a length above ACC_XFER_MAX */
    ACC_ST_OVERFLOW = 4,   /* output does not fit dst_len */
    ACC_ST_BAD_DATA = 5,   /* decompression input is corrupt */
    ACC_ST_OVERLAP = 6,    /* src and dst overlap (except for COPY) */
    ACC_ST_INTERNAL = 7,   /* the host library failed (e.g. no memory) */
    ACC_ST__COUNT
};

/* Completion queue entry: 16 bytes, written by the device. */
struct acc_cqe {
    uint64_t req_id;  /* from the SQE */
    uint32_t out_len; /* bytes written to dst */
    uint16_t sq_head; /* SQ consumer index after this request */
    uint8_t status;   /* enum acc_status */
    uint8_t flags;    /* bit 0: phase; written last */
};
_Static_assert(sizeof(struct acc_cqe) == 16, "CQE is 16 bytes");

/* Event queue entry: 8 bytes, one per batch of completions on a QP. */
struct acc_eqe {
    uint32_t cq_tail; /* CQ producer index after the batch */
    uint16_t qp;      /* queue pair that completed work */
    uint8_t rsvd;
    uint8_t flags; /* bit 0: phase; written last */
};
_Static_assert(sizeof(struct acc_eqe) == 8, "EQE is 8 bytes");

/* Asynchronous event codes (AEQE.code). */
enum acc_aeq_code {
    /* 1..7: a request completed with that enum acc_status (not OK) */
    ACC_AEQ_RING_FAULT = 16,  /* SQ/CQ unreachable; info = address */
    ACC_AEQ_DOORBELL = 17,    /* index written >= ring size; info = value */
    ACC_AEQ_EQ_OVERFLOW = 18, /* an EQE was dropped; info = EQ head */
    ACC_AEQ_BAD_CONFIG = 19,  /* enable with a bad size; info = size */
    ACC_AEQ_EQ_FAULT = 20,    /* EQ unreachable; info = address */
};

/* Asynchronous event queue entry: 16 bytes. */
struct acc_aeqe {
    uint64_t info;  /* req_id for request errors, else see the code */
    uint16_t qp;    /* queue pair, or 0xffff for the device */
    uint16_t index; /* SQ index of the request, or 0xffff */
    uint8_t code;   /* ACC_ST_* (request errors) or ACC_AEQ_* */
    uint8_t rsvd[2];
    uint8_t flags; /* bit 0: phase; written last */
};
_Static_assert(sizeof(struct acc_aeqe) == 16, "AEQE is 16 bytes");

#define ACC_PHASE 0x01u
#define ACC_NO_QP 0xffffu

#endif /* ACC_REGS_H */
