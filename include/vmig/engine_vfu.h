/* SPDX-License-Identifier: MIT */
/*
 * engine_vfu.h - a migration-engine device backend for any vfio-user
 * device server, built on <vmig/vfu_client.h>.
 *
 * The VMM connects a vmig_vfu_client, wraps it in a backend and adds the
 * backend to the engine with vmig_engine_vfu_ops().  Every backend op maps
 * to the client: flags and state (the server walks combination
 * transitions), the saving session read, the resuming session written,
 * DEVICE_RESET, PRECOPY_INFO (precopy_info) and MIG_DATA_SIZE (data_size).
 *
 * States: the device's migration flags are the one source of truth.  The
 * backend asks only for states they advertise (anything else is refused
 * here with -EOPNOTSUPP, never sent), and only when the engine's
 * migration asks.  Flag bits the uAPI does not define are ignored.
 *
 * Reads: every read is one pull of at most the bytes the engine asked for
 * (vmig_vfu_client_mig_pull(): over the bulk channel when negotiated),
 * straight into the engine's buffer; the backend buffers no device data,
 * so a state of any size streams one engine chunk at a time.  In PRE_COPY
 * and PRE_COPY_P2P a burst of reads (from the first read after the last
 * -ENOMSG) returns at most what PRECOPY_INFO reported pending (initial +
 * dirty) when it started - else the MIG_DATA_SIZE estimate, capped at
 * 64 MiB - then -ENOMSG, so a device that dirties its state faster than
 * it is read still ends every burst.  After a device reset the next read
 * fails with the server's -ENODEV, and after the
 * engine moves the device to PRE_COPY again the new session is read from
 * its start.
 *
 * Servers that did not negotiate vmig's extensions (x-vmig in VERSION)
 * get only what the vfio-user specification defines: no PRECOPY_INFO,
 * MIG_DATA_SIZE or bulk channel is ever asked of them.  data_size then
 * estimates from the bytes read (the last PRE_COPY burst), and data
 * moves in MIG_DATA_READ/MIG_DATA_WRITE messages of at most the
 * server's max_data_xfer_size.
 *
 * Identity (HELLO): a vmig device exposes its compatibility descriptor as
 * the compatibility part of its device-state envelope, readable in
 * PRE_COPY before any downtime (docs/stream-format.md).  For a server
 * that negotiated x-vmig and advertises PRE_COPY, the backend opens a
 * PRE_COPY session once, at creation while the device is fresh, reads
 * the envelope header and DESCRIPTOR record, and returns to RUNNING.  Any
 * other server is identified by its PCI config-space ids (vendor,
 * device, subsystem, revision) read from the config region (index 7),
 * when it has one, and its data moves opaque.  The destination judges a
 * descriptor with vmig_compat_check(), and ids by equality.
 *
 * VMM-owned config: the VMM changes the device's DMA mappings, IRQ
 * wiring and PCI config through this backend (not the client directly),
 * so the backend knows what it owns.  config_save writes that down;
 * config_load on the destination, before the device leaves STOP, maps
 * the same IOVA ranges from the destination VMM's own guest RAM (given
 * with vmig_engine_vfu_add_ram()), wires the same vectors to eventfds the
 * destination VMM hands out (@irq_fd), and replays the config writes.  A
 * config that cannot be re-established fails the migration before the
 * device runs.
 *
 * Threads: the backend's ops and the functions below may be called from
 * different threads; the client serialises the wire and an internal lock
 * guards the backend's records.
 */
#ifndef VMIG_ENGINE_VFU_H
#define VMIG_ENGINE_VFU_H

#include <stddef.h>
#include <stdint.h>
#include <vmig/ctx.h>
#include <vmig/engine.h>
#include <vmig/export.h>
#include <vmig/vfu_client.h>

struct vmig_engine_vfu;

#define VMIG_ENGINE_VFU_MAX_MAPS 32
#define VMIG_ENGINE_VFU_MAX_IRQS 32
#define VMIG_ENGINE_VFU_CONFIG_SPACE 256

/**
 * vmig_engine_vfu_irq_fn - hand out an eventfd for a vector the source
 * had wired, on the destination (config_load).
 * @opaque: as given to vmig_engine_vfu_new().
 * @index:  IRQ index.
 * @vector: vector within it.
 *
 * Return: an eventfd the backend borrows (the VMM keeps it open and
 * listens on it), or a negative errno to fail the migration.
 */
typedef int vmig_engine_vfu_irq_fn(void *opaque, unsigned int index,
                                   unsigned int vector);

/**
 * struct vmig_engine_vfu_params - how to wrap a client.
 * @name:      printable, for log messages; copied.
 * @irq_fd:    destination eventfd provider; optional (without it only
 *             vectors already wired identically here are accepted).
 * @opaque:    passed to @irq_fd.
 * @no_probe:  do not open a PRE_COPY session to look for a descriptor
 *             (PCI ids only); servers without x-vmig are never probed.
 */
struct vmig_engine_vfu_params {
    const char *name;
    vmig_engine_vfu_irq_fn *irq_fd;
    void *opaque;
    bool no_probe;
};

/**
 * vmig_engine_vfu_new() - Wrap a connected client as an engine backend.
 * @ctx: logging context (borrowed).
 * @c:   connected client (borrowed; must outlive the backend), its device
 *       RUNNING.
 * @p:   parameters.
 * @out: receives the backend; untouched on failure.
 *
 * Reads the migration flags, the PCI ids and (unless @p->no_probe, and
 * only from a server that negotiated x-vmig) the descriptor.  Names the
 * client after @p->name for its messages.
 *
 * Return: 0, -EOPNOTSUPP (the device does not support migration),
 * -EINVAL, -ENOMEM, or the client's errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_engine_vfu_new(vmig_ctx_t *ctx, struct vmig_vfu_client *c,
                    const struct vmig_engine_vfu_params *p,
                    struct vmig_engine_vfu **out);

/**
 * vmig_engine_vfu_free() - Free the backend (not the client; mappings and
 * wiring stay).  NULL is accepted.
 * @b: backend.
 */
VMIG_EXPORT void vmig_engine_vfu_free(struct vmig_engine_vfu *b);

/**
 * vmig_engine_vfu_ops() - The backend ops table; pass the backend as the
 * engine's device opaque.
 *
 * Return: a static table.
 */
VMIG_EXPORT const struct vmig_engine_dev_ops *vmig_engine_vfu_ops(void);

/**
 * vmig_engine_vfu_add_ram() - Tell the backend about guest RAM the VMM
 * owns at guest address @iova (the source of every DMA mapping, and
 * what config_load maps on the destination).
 * @b:      backend.
 * @iova:   guest address.
 * @size:   bytes.
 * @fd:     memfd backing it (borrowed; must stay open), or -1.
 * @fd_off: offset of @iova in @fd.
 * @vaddr:  the VMM's mapping of it (serves message-based DMA).
 *
 * Return: 0, -EINVAL (overlap, bad range), -E2BIG (too many).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_engine_vfu_add_ram(struct vmig_engine_vfu *b, uint64_t iova, uint64_t size,
                        int fd, uint64_t fd_off, void *vaddr);

/**
 * vmig_engine_vfu_dma_map() - DMA_MAP [@iova, @iova + @size) of RAM given
 * to vmig_engine_vfu_add_ram(), passing its fd; recorded for migration.
 * @b:    backend.
 * @iova: start, inside one RAM range.
 * @size: bytes.
 * @prot: VMIG_VFU_DMA_READ | VMIG_VFU_DMA_WRITE.
 *
 * Return: 0, -EINVAL (not inside RAM), -E2BIG, or the client's errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_engine_vfu_dma_map(struct vmig_engine_vfu *b, uint64_t iova, uint64_t size,
                        uint32_t prot);

/**
 * vmig_engine_vfu_set_irq() - Wire @vector of IRQ @index to eventfd @efd
 * (TRIGGER); recorded for migration.
 * @b:      backend.
 * @index:  IRQ index.
 * @vector: vector.
 * @efd:    eventfd (borrowed; the server gets a copy).
 *
 * Return: 0, -E2BIG, or the client's errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_engine_vfu_set_irq(struct vmig_engine_vfu *b, unsigned int index,
                        unsigned int vector, int efd);

/**
 * vmig_engine_vfu_config_write() - Write PCI config space (region 7) and
 * remember the bytes as VMM-owned.
 * @b:      backend.
 * @offset: offset in config space.
 * @buf:    bytes.
 * @len:    count; @offset + @len <= VMIG_ENGINE_VFU_CONFIG_SPACE.
 *
 * Return: 0, -EINVAL, or the client's errno (the record is kept only when
 * the device accepted the write).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_engine_vfu_config_write(struct vmig_engine_vfu *b, unsigned int offset,
                             const void *buf, size_t len);

/**
 * vmig_engine_vfu_identity() - What HELLO will say about the device.
 * @b:        backend.
 * @ids:      receives the PCI ids (valid=false when none).
 * @desc_len: receives the descriptor's length (0 when none).
 */
VMIG_EXPORT void vmig_engine_vfu_identity(struct vmig_engine_vfu *b,
                                          struct vmig_pci_ids *ids,
                                          size_t *desc_len);

#endif /* VMIG_ENGINE_VFU_H */
