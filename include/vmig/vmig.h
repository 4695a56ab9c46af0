/* SPDX-License-Identifier: MIT */
/*
 * vmig.h - umbrella header: everything public in libvmig.
 */
#ifndef VMIG_VMIG_H
#define VMIG_VMIG_H

#include <vmig/export.h>
#include <vmig/log.h>
#include <vmig/ctx.h>
#include <vmig/fsm.h>
#include <vmig/mig.h>
#include <vmig/vfio_uapi.h>
#include <vmig/version.h>

#endif /* VMIG_VMIG_H */
