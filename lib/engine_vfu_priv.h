/* SPDX-License-Identifier: MIT */
/*
 * engine_vfu_priv.h - what the vfio-user backend's files share: its
 * state (struct vmig_engine_vfu) and the ops each file gives the table in
 * engine_vfu.c.  engine_vfu.c: creation, identity, compatibility;
 * engine_vfu_data.c: device state and data; engine_vfu_cfg.c: VMM-owned
 * config (RAM, DMA mappings, IRQ wiring, config space, its section).
 */
#ifndef VMIG_ENGINE_VFU_PRIV_H
#define VMIG_ENGINE_VFU_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <vmig/engine_vfu.h>

#define CFG_SPACE VMIG_ENGINE_VFU_CONFIG_SPACE
#define PCI_CONFIG_REGION 7u
#define MAX_RAM 8

struct ram_range {
    uint64_t iova, size, fd_off;
    int fd;
    void *vaddr;
};

struct dma_rec {
    uint64_t iova, size;
    uint32_t prot;
};

struct irq_rec {
    unsigned int index, vector;
};

struct vmig_engine_vfu {
    vmig_ctx_t *ctx;
    struct vmig_vfu_client *c;
    char name[64];
    vmig_engine_vfu_irq_fn *irq_fd;
    void *opaque;
    uint64_t flags;
    struct vmig_pci_ids ids;
    uint8_t *desc; /* binary descriptor, or NULL */
    size_t desc_len;
    struct vmig_compat_desc *cdesc; /* decoded @desc */

    pthread_mutex_t lock; /* guards everything below */
    unsigned int nram, nmaps, nirqs;
    struct ram_range ram[MAX_RAM];
    struct dma_rec maps[VMIG_ENGINE_VFU_MAX_MAPS];
    struct irq_rec irqs[VMIG_ENGINE_VFU_MAX_IRQS];
    uint8_t cfg_mask[CFG_SPACE], cfg_val[CFG_SPACE];
    bool has_cfg;

    bool send;       /* the saving session reached its end (engine thread) */
    size_t pull_max; /* the next STOP_COPY pull's limit; 0: first */

    /* PRE_COPY read burst (engine thread only): set_state's target (the
     * state the backend believes the device is in), whether a burst is
     * running and how many bytes it may still return */
    enum vmig_state state;
    bool burst;
    bool dry; /* this burst's last save found nothing more for now */
    uint64_t budget;

    /* sizing without the device's help (a server without x-vmig): bytes
     * read in this PRE_COPY session, in the running burst, and in the
     * last burst that ended (engine thread only) */
    uint64_t pc_read, burst_bytes, last_burst;
    bool have_last;
    bool xvmig; /* the server negotiated vmig's extensions */
};

/* engine_vfu_data.c */
int vmig__evfu_get_flags(void *o, uint64_t *flags);
int vmig__evfu_get_state(void *o, enum vmig_state *st);
int vmig__evfu_set_state(void *o, enum vmig_state target);
ssize_t vmig__evfu_read(void *o, void *buf, size_t cap);
int vmig__evfu_write(void *o, const void *buf, size_t len);
int vmig__evfu_reset(void *o);
int vmig__evfu_precopy_info(void *o, uint64_t *initial, uint64_t *dirty);
int vmig__evfu_data_size(void *o, uint64_t *bytes);

/* engine_vfu_cfg.c */
ssize_t vmig__evfu_config_save(void *o, void *buf, size_t cap);
int vmig__evfu_config_load(void *o, const void *buf, size_t len);

#endif /* VMIG_ENGINE_VFU_PRIV_H */
