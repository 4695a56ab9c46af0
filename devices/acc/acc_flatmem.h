/* SPDX-License-Identifier: MIT */
/*
 * acc_flatmem.h - guest RAM as one memfd mapping, with the DMA translation
 * the device model needs.  Used by tests, the benchmark and any in-process
 * host of the model; a vfio-user server uses its DMA map table instead.
 */
#ifndef ACC_FLATMEM_H
#define ACC_FLATMEM_H

#include <stdint.h>
#include "acc_model.h"

/**
 * struct acc_flatmem - guest addresses [0, size) mapped at base.
 * @fd:   the memfd (owned).
 * @base: host address of guest address 0.
 * @size: bytes.
 */
struct acc_flatmem {
    int fd;
    uint8_t *base;
    uint64_t size;
};

/**
 * acc_flatmem_new() - Create zeroed guest RAM.
 * @size: bytes (rounded up to the page size).
 * @out:  receives the mapping; untouched on failure.
 *
 * Return: 0, or -errno from memfd_create/ftruncate/mmap.
 */
int acc_flatmem_new(uint64_t size, struct acc_flatmem *out);

/**
 * acc_flatmem_free() - Unmap and close.
 * @m: mapping; may be zeroed (fd 0 is not closed when base is NULL).
 */
void acc_flatmem_free(struct acc_flatmem *m);

/* DMA operations; the opaque pointer is the struct acc_flatmem. */
extern const struct acc_dma_ops acc_flatmem_dma_ops;

#endif /* ACC_FLATMEM_H */
