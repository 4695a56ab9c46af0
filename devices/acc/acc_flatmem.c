/* SPDX-License-Identifier: MIT */
/*
 * acc_flatmem.c - guest RAM as one memfd mapping.
 */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>
#include "acc_flatmem.h"

int
acc_flatmem_new(uint64_t size, struct acc_flatmem *out)
{
    long pg = sysconf(_SC_PAGESIZE);
    void *p;
    int fd, ret;

    if (size == 0) {
        return -EINVAL;
    }
    size = (size + (uint64_t)pg - 1) & ~((uint64_t)pg - 1);
    fd = memfd_create("acc-guest-ram", MFD_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    if (ftruncate(fd, (off_t)size) < 0) {
        ret = -errno;
        goto err_close;
    }
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        ret = -errno;
        goto err_close;
    }
    out->fd = fd;
    out->base = p;
    out->size = size;
    return 0;

err_close:
    close(fd);
    return ret;
}

void
acc_flatmem_free(struct acc_flatmem *m)
{
    if (m->base != NULL) {
        munmap(m->base, m->size);
        close(m->fd);
    }
    m->base = NULL;
    m->size = 0;
    m->fd = -1;
}

static void *
flat_translate(void *opaque, uint64_t iova, uint64_t len, bool write)
{
    const struct acc_flatmem *m = opaque;

    (void)write;
    if (iova >= m->size || len > m->size - iova) {
        return NULL;
    }
    return m->base + iova;
}

const struct acc_dma_ops acc_flatmem_dma_ops = {
    .translate = flat_translate,
};
