/* SPDX-License-Identifier: MIT */
/*
 * acc_server.h - the accelerator served over vfio-user (<vmig/vfu_server.h>).
 *
 * Region 0 (BAR0): the register map of acc_regs.h, 32-bit accesses (a
 * 64-bit access is two).  Region 7 (PCI config space, 256 bytes, read-only
 * here): vendor and device id, revision and class.  IRQ index 2 (MSI-X)
 * with 2 vectors: 0 completion, 1 error.  Guest memory through the DMA
 * map table, zero-copy (vmig_vfu_dma_get()/_put() windows, so a DMA_UNMAP
 * waits for the request using the range).  Migration: STOP_COPY |
 * PRE_COPY through acc_mig (the envelope with the compat descriptor).
 * A guest RESET register write or a DEVICE_RESET ends any migration data
 * session (its reader gets ENODEV), returns the device to RUNNING, and is
 * logged.
 */
#ifndef ACC_SERVER_H
#define ACC_SERVER_H

#include <stdint.h>
#include <vmig/log.h>

#define ACC_VFU_BAR0 0u
#define ACC_VFU_CONFIG 7u /* VFIO_PCI_CONFIG_REGION_INDEX */
#define ACC_VFU_CONFIG_SIZE 256u
#define ACC_VFU_IRQ_INDEX 2u /* VFIO_PCI_MSIX_IRQ_INDEX */

/**
 * struct acc_server_cfg - what to serve and where.
 * @path:      socket path to listen on, or NULL to use @fd.
 * @fd:        a connected socket (the spec's --fd=N); served until the
 *             client disconnects.  Ignored when @path is set.
 * @qp_count:  queue pairs (1..ACC_QP_MAX).
 * @isolation: enum acc_isolation.
 * @log:       log sink (NULL: none).
 * @level:     log level (VMIG_LOG_*).
 */
struct acc_server_cfg {
    const char *path;
    int fd;
    uint32_t qp_count;
    uint32_t isolation;
    vmig_log_fn *log;
    int level;
};

/**
 * acc_serve() - Create the device and serve it until stopped (SIGTERM via
 * the caller) or, with @cfg->fd, until the client disconnects.
 * @cfg: configuration.
 *
 * Return: 0, or -errno.
 */
int acc_serve(const struct acc_server_cfg *cfg);

#endif /* ACC_SERVER_H */
