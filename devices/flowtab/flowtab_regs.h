/* SPDX-License-Identifier: MIT */
/*
 * flowtab_regs.h - the guest-visible interface of the flowtab device: its
 * register map (BAR0), the structures it reads from and writes to guest
 * memory, and the record a peer device writes into its inbound P2P window.
 *
 * Every multi-byte field is little-endian.  docs/flowtab.md describes the
 * device's behaviour; this header is the byte layout.
 */
#ifndef FLOWTAB_REGS_H
#define FLOWTAB_REGS_H

#include <stdint.h>

#define FT_ID_VALUE 0x46544142u /* "FTAB" read as a little-endian u32 */
#define FT_VERSION_VALUE 1u

/* BAR0: 32-bit registers; any other width or offset is refused. */
/* clang-format off */
enum ft_reg {
    FT_REG_ID        = 0x00, /* RO  FT_ID_VALUE */
    FT_REG_VERSION   = 0x04, /* RO  FT_VERSION_VALUE */
    FT_REG_CTRL      = 0x08, /* RW  FT_CTRL_* */
    FT_REG_STATUS    = 0x0c, /* RO  FT_STATUS_* */
    FT_REG_RING_LO   = 0x10, /* RW  IOVA of the descriptor ring, low 32 */
    FT_REG_RING_HI   = 0x14, /* RW  ... high 32 */
    FT_REG_CMPL_LO   = 0x18, /* RW  IOVA of the completion ring */
    FT_REG_CMPL_HI   = 0x1c,
    FT_REG_STATS_LO  = 0x20, /* RW  IOVA of the statistics block, 0 = none */
    FT_REG_STATS_HI  = 0x24,
    FT_REG_RING_SIZE = 0x28, /* RW  entries: power of two, 2..65536 */
    FT_REG_TAIL      = 0x2c, /* RW  doorbell: producer index (free-running) */
    FT_REG_HEAD      = 0x30, /* RO  consumer index (free-running) */
    FT_REG_FLOWS     = 0x34, /* RO  flows in the table */
    FT_REG_CAP       = 0x38, /* RO  table capacity in flows */
    FT_REG_ERRORS    = 0x3c, /* RO  descriptors completed with an error */
    FT_REG__SIZE     = 0x40,
};
/* clang-format on */

/*
 * CTRL.ENABLE: process the ring.  Ring, completion and statistics
 * addresses and RING_SIZE may only change while ENABLE is clear; setting
 * ENABLE checks them (bad values set STATUS.CFG_ERR and leave it clear).
 */
#define FT_CTRL_ENABLE (1u << 0)

#define FT_STATUS_ENABLED (1u << 0)  /* ring processing is on */
#define FT_STATUS_DMA_ERR (1u << 1)  /* a DMA address did not translate */
#define FT_STATUS_CFG_ERR (1u << 2)  /* ENABLE refused: bad configuration */
#define FT_STATUS_P2P_HOLD (1u << 3) /* waiting at a P2P descriptor */

#define FT_RING_MIN 2u
#define FT_RING_MAX 65536u

/* Descriptor flags. */
#define FT_DESC_FWD (1u << 0) /* also forward a record to the peer device */

/*
 * struct ft_desc - one packet, written by the guest into the ring at
 * ring + (index % RING_SIZE) * 32.
 * @seq:    guest's sequence number, echoed in the completion.
 * @src:    flow key: source address.
 * @dst:    flow key: destination address.
 * @sport:  flow key: source port.
 * @dport:  flow key: destination port.
 * @proto:  flow key: protocol.
 * @flags:  FT_DESC_*.
 * @len:    packet length in bytes (added to the flow's byte counter).
 * @cookie: echoed in the completion.
 * @rsvd:   zero.
 */
struct ft_desc {
    uint64_t seq;
    uint32_t src;
    uint32_t dst;
    uint16_t sport;
    uint16_t dport;
    uint8_t proto;
    uint8_t flags;
    uint16_t len;
    uint32_t cookie;
    uint32_t rsvd;
};
_Static_assert(sizeof(struct ft_desc) == 32, "ft_desc is ABI");

/* Completion status (never 0, so a written completion is recognisable). */
#define FT_ST_OK 1u
#define FT_ST_TABLE_FULL 2u /* no room for a new flow */

#define FT_CMPL_FWD (1u << 0) /* the packet was forwarded to the peer */

/*
 * struct ft_cmpl - written by the device at cmpl + (index % RING_SIZE) * 32
 * once the descriptor at the same index is processed.
 * @seq:          the descriptor's @seq.
 * @flow_packets: the flow's packet counter after this packet.
 * @flow_bytes:   the flow's byte counter after this packet.
 * @cookie:       the descriptor's @cookie.
 * @status:       FT_ST_*.
 * @flags:        FT_CMPL_*.
 */
struct ft_cmpl {
    uint64_t seq;
    uint64_t flow_packets;
    uint64_t flow_bytes;
    uint32_t cookie;
    uint16_t status;
    uint16_t flags;
};
_Static_assert(sizeof(struct ft_cmpl) == 32, "ft_cmpl is ABI");

/*
 * struct ft_stats - the statistics block, written by the device after each
 * batch.  @head is written last (release order): every completion below
 * it is visible once @head is.
 */
struct ft_stats {
    uint32_t head;
    uint32_t rsvd;
    uint64_t packets;
    uint64_t bytes;
    uint64_t flows;
    uint64_t p2p_tx;
    uint64_t p2p_rx;
    uint64_t errors;
    uint64_t rsvd2;
};
_Static_assert(sizeof(struct ft_stats) == 64, "ft_stats is ABI");

/*
 * Inbound P2P window ("BAR2"): a peer writes one struct ft_p2p_rec at
 * offset 0; the device counts it in the flow {src, dst, sport, dport,
 * proto} of its peer key space.  Other offsets and lengths are refused.
 */
#define FT_P2P_WINDOW_SIZE 32u

/*
 * struct ft_p2p_rec - a forwarded packet record.
 * @seq:    the sender's descriptor sequence number.
 * @src:    flow key, as in struct ft_desc.
 * @dst:    flow key.
 * @sport:  flow key.
 * @dport:  flow key.
 * @proto:  flow key.
 * @rsvd:   zero.
 * @len:    packet length.
 * @origin: sender's device id.
 * @rsvd2:  zero.
 */
struct ft_p2p_rec {
    uint64_t seq;
    uint32_t src;
    uint32_t dst;
    uint16_t sport;
    uint16_t dport;
    uint8_t proto;
    uint8_t rsvd;
    uint16_t len;
    uint32_t origin;
    uint32_t rsvd2;
};
_Static_assert(sizeof(struct ft_p2p_rec) == FT_P2P_WINDOW_SIZE,
               "ft_p2p_rec is ABI");

#endif /* FLOWTAB_REGS_H */
