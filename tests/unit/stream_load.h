/* SPDX-License-Identifier: MIT */
/*
 * stream_load.h - what the envelope tests share (stream_load.c): loading a
 * stream in random pieces into the fake sink (stream_util.h), expecting a
 * refusal whatever the segmentation, and a good stream to spoil
 * (raw_stream.h) with the test descriptor.
 */
#ifndef VMIG_TEST_STREAM_LOAD_H
#define VMIG_TEST_STREAM_LOAD_H

#include <stddef.h>
#include <stdint.h>
#include <vmig/compat.h>
#include <vmig/stream.h>
#include "unit/raw_stream.h"
#include "unit/stream_util.h"

/* the test descriptor in binary (setup() makes it), a config payload */
extern uint8_t desc_bin[1024];
extern size_t desc_len;
extern const uint8_t cfg_payload[13];

/* Load @buf split into random pieces (or one piece when @rng is NULL). */
int load(const struct vmig_compat_desc *local, const uint8_t *buf, size_t len,
         uint64_t *rng, struct fake_sink *k, enum vmig_stream_err *kind,
         char *msg, size_t msglen);
/* @r is refused with @err, @kind and a message containing @substr, in one
 * piece and byte by byte, and the sink's state is untouched. */
void expect_refused(const struct vmig_compat_desc *local, const struct raw *r,
                    int err, enum vmig_stream_err kind, const char *substr);
/* A header of @version and the descriptor record. */
void good_prefix(struct raw *r, uint32_t version);
/* A whole good stream: header, descriptor, config, two queues, end. */
void good_stream(struct raw *r);
/* cmocka group setup: the descriptor in binary. */
int setup(void **state);

#endif /* VMIG_TEST_STREAM_LOAD_H */
