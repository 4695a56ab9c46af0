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
#include <vmig/device.h>
#include <vmig/vfio_uapi.h>
#include <vmig/version.h>
#include <vmig/stream.h>
#include <vmig/compat.h>
#include <vmig/dirty.h>
#include <vmig/ramdirty.h>
#include <vmig/proto.h>
#include <vmig/proto_reply.h>
#include <vmig/vfu_server.h>
#include <vmig/vfu_client.h>
#include <vmig/chan.h>
#include <vmig/tls.h>
#include <vmig/migproto.h>
#include <vmig/engine.h>
#include <vmig/engine_chan.h>
#include <vmig/engine_vfu.h>

#endif /* VMIG_VMIG_H */
