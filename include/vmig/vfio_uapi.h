/* SPDX-License-Identifier: MIT */
/*
 * vfio_uapi.h - the kernel's VFIO migration uAPI, completed for old headers.
 *
 * Uses the system's <linux/vfio.h> for everything it defines and adds the
 * definitions newer kernels have (Linux 6.2+: PRE_COPY states and flag,
 * VFIO_MIG_GET_PRECOPY_INFO, VFIO_DEVICE_FEATURE_MIG_DATA_SIZE) with their
 * upstream values.  lib/fsm.c _Static_asserts that vmig's own constants
 * equal the kernel's wherever both exist.
 */
#ifndef VMIG_VFIO_UAPI_H
#define VMIG_VFIO_UAPI_H

#include <linux/types.h>
#include <linux/version.h>
#include <linux/vfio.h>

#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 2, 0)
/* enum vfio_device_mig_state members added in 6.2 */
#define VFIO_DEVICE_STATE_PRE_COPY 6
#define VFIO_DEVICE_STATE_PRE_COPY_P2P 7
#endif

#ifndef VFIO_MIGRATION_PRE_COPY
#define VFIO_MIGRATION_PRE_COPY (1 << 2)
#endif

#ifndef VFIO_MIG_GET_PRECOPY_INFO
/* upstream: VFIO_MIG_GET_PRECOPY_INFO _IO(VFIO_TYPE, VFIO_BASE + 21) */
struct vfio_precopy_info {
    __u32 argsz;
    __u32 flags;
    __aligned_u64 initial_bytes;
    __aligned_u64 dirty_bytes;
};
#define VFIO_MIG_GET_PRECOPY_INFO _IO(VFIO_TYPE, VFIO_BASE + 21)
#endif

#ifndef VFIO_DEVICE_FEATURE_MIG_DATA_SIZE
/* upstream since 6.2: the estimated STOP_COPY data length */
struct vfio_device_feature_mig_data_size {
    __aligned_u64 stop_copy_length;
};
#define VFIO_DEVICE_FEATURE_MIG_DATA_SIZE 9
#endif

#endif /* VMIG_VFIO_UAPI_H */
