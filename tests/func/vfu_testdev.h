/* SPDX-License-Identifier: MIT */
/*
 * vfu_testdev.h - a small vfio-user test device, served in a child process
 * by the functional tests and the benchmark.
 *
 * Region 0 (BAR0, 4 KiB, callbacks):
 *   0x00 SCRATCH  rw
 *   0x38 DOORBELL w: DMA 64 bytes SRC -> DST (each byte + 1), fold them
 *                 into the state, raise IRQ 0
 *   0x08 SRC      rw (u64)     0x10 DST rw (u64)
 *   0x18 COUNT    r: doorbells rung
 *   0x20 HASH     r (u64): xxh3 of registers + state memory
 *   0x28 RESET    w: device-internal reset (like a guest FLR)
 *   0x30 MUTATE   w: flip the state byte at (value % size)
 *   0x40 ASYNC    w: like DOORBELL, but from a device thread after the
 *                 write has completed (SRC -> DST only, then IRQ 0)
 *   0x48 ZEROCOPY w: SRC -> DST (+1) through vmig_vfu_dma_get() pointers;
 *                 fails with EOPNOTSUPP on maps without an fd
 * Region 1 (64 KiB, backed by a memfd: mmap-able; sparse-mmap capability
 *   listing [0, 16 KiB) and [32 KiB, 48 KiB)).
 * IRQ index 0, one vector.
 * Migration: STOP_COPY | P2P | PRE_COPY; the state is @size bytes of
 * seeded memory plus the registers, streamed as typed records; PRE_COPY
 * sends everything once and then re-sends dirtied 64 KiB chunks.
 */
#ifndef VFU_TESTDEV_H
#define VFU_TESTDEV_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <vmig/log.h>

#define TD_SCRATCH 0x00
#define TD_DOORBELL 0x38
#define TD_SRC 0x08
#define TD_DST 0x10
#define TD_COUNT 0x18
#define TD_HASH 0x20
#define TD_RESET 0x28
#define TD_MUTATE 0x30
#define TD_ASYNC 0x40
#define TD_ZEROCOPY 0x48

/*
 * testdev_no_dma_log - when set before testdev_serve(), the device has no
 * DMA logging: DMA_LOGGING_START is refused with EOPNOTSUPP (a device of
 * another implementation; the VMM cannot see its writes to guest RAM).
 */
extern bool testdev_no_dma_log;

/*
 * testdev_cfg_space - when set before testdev_serve(), the device has a
 * 256-byte PCI config space (region 7): ids at 0..3 (QEMU's vendor
 * 0x1b36, device TD_PCI_DEVICE) and revision 1 at 8, read-only; every
 * other byte stores what is written.  It is not part of the migrated
 * device state: what the VMM wrote must be replayed by the VMM.
 */
#define TD_CFG_REGION 7u
#define TD_PCI_DEVICE 0x7e58
extern bool testdev_cfg_space;

/*
 * testdev_serve() - serve the device in this process: at @path, or on
 * the connected socket @fd when @path is NULL, until SIGTERM (or, for
 * @fd, the client leaving).  Returns 0, 1 on a setup failure, 2 when the
 * server loop failed.
 */
int testdev_serve(const char *path, int fd, uint64_t seed, size_t size,
                  vmig_log_fn *log, int level);

/*
 * testdev_spawn() - fork a child serving the device at @path.
 * Returns the child's pid (> 0) once the socket exists (waiting while
 * the child lives, up to 120 s), or -errno.
 * The child exits 0 after SIGTERM if the server never failed.
 */
pid_t testdev_spawn(const char *path, uint64_t seed, size_t size);

/* SIGTERM the child and reap it; returns its exit status or -1. */
int testdev_stop(pid_t pid);

#endif /* VFU_TESTDEV_H */
