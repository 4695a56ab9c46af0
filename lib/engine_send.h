/* SPDX-License-Identifier: MIT */
/*
 * engine_send.h - the source's traffic (engine_send.c): frames out, the
 * return path in.  Every function runs on the migrating thread and
 * returns 0 or a negative errno that ends the migration.
 */
#ifndef VMIG_ENGINE_SEND_H
#define VMIG_ENGINE_SEND_H

#include <stdbool.h>
#include <stdint.h>
#include <vmig/migproto.h>
#include "engine_src_state.h"

/*
 * An ERROR frame from the destination: records its reason in the stats
 * and returns its errno (negative), or -EPROTO when it is malformed.
 */
int vmig__src_error_frame(struct eng_src *s, const struct vmig_mp_frame *f);

/* Wait for a frame of @type on the return path; an ERROR ends the wait. */
int vmig__src_expect(struct eng_src *s, unsigned int type,
                     struct vmig_mp_frame *f);

/*
 * Between frames: has the destination said something on the return path?
 * An ERROR there (it refused a frame, a device failed) ends the sending at
 * once instead of at SWITCHOVER.
 */
int vmig__src_check_return(struct eng_src *s);

/* Wait until the latest SWITCHOVER_REQ is acknowledged. */
int vmig__src_wait_ack(struct eng_src *s);

/*
 * RAM frames for @np pages at @off of region @r, as pass @pass: one, or
 * under a bandwidth limit as many as keep each within what the limit
 * allows in a short while (vmig__engine_frame_cap()).  A zero
 * run goes as a ZERO frame when @zero_pages was negotiated (@hole_check:
 * ask the VMM's ram_hole first).  @live: the guest runs, so the pages are
 * copied before they are checksummed and sent.
 */
int vmig__src_send_pages(struct eng_src *s, unsigned int r, uint64_t off,
                         uint32_t np, bool zero_pages, bool hole_check,
                         bool live, unsigned int pass);

/* Whether @n bytes at @p are all zero. */
bool vmig__all_zero(const uint8_t *p, size_t n);

/* RAM_PASS_END for pass @pass, which sent @pages pages. */
int vmig__src_pass_end(struct eng_src *s, unsigned int pass, bool last,
                       uint64_t pages);

/* All of guest RAM as pass @pass, then its RAM_PASS_END. */
int vmig__src_send_ram(struct eng_src *s, bool zero_pages, bool live,
                       unsigned int pass, bool last);

/* The VCPU frame, when the VMM saves vCPU state (sets s->vcpu_sent). */
int vmig__src_send_vcpu(struct eng_src *s);

/*
 * Read device @i's saving session and send it as DEV_DATA frames.
 * Precopy: until the device has nothing pending (-ENOMSG; return 1) or
 * @budget bytes (0: no limit) were sent (return 0).  Stop-copy: to the
 * end of the data (return 0).  A failing read sets *@dev_err (the
 * device's problem, not the connection's) and returns its error.
 */
int vmig__src_dev_pump(struct eng_src *s, unsigned int i, bool precopy,
                       uint64_t budget, bool *dev_err);

/* Device @i's VMM-owned config as DEV_CONFIG, when its backend has one. */
int vmig__src_send_config(struct eng_src *s, unsigned int i);

/* A stop-copy DEV_DATA frame is about to go out (any thread): the first
 * one records the time since the vCPU pause in the stats. */
void vmig__src_first_dev(struct eng_src *s);

/* A stop-copy read of device @i failed with @err: logged and recorded as
 * the migration's error; returns @err. */
int vmig__src_read_failed(struct eng_src *s, unsigned int i, int err);

/* Stop-copy for device @i: its config, the rest of its data, DEV_END. */
int vmig__src_send_device(struct eng_src *s, unsigned int i);

#endif /* VMIG_ENGINE_SEND_H */
