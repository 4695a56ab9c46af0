/* SPDX-License-Identifier: MIT */
/*
 * acc_model.h - the emulated accelerator's device model, independent of
 * any transport.
 *
 * A model owns BAR0 (acc_regs.h) and one worker thread that consumes the
 * submission queues in guest memory, does the work (zstd, deflate, SHA-256,
 * CRC32C, copy), and writes completions, events and error events back into
 * guest memory.  Guest memory is reached only through struct acc_dma_ops;
 * interrupts leave only through struct acc_model_ops.  The transport (an
 * in-process test, or later a vfio-user server) calls acc_model_mmio_*().
 *
 * Run states:
 *   - RUNNING: the worker processes doorbells.
 *   - STOPPED (acc_model_stop()): the request in flight, if any, has
 *     completed (its CQE is written); then no DMA, no interrupt and no
 *     change of device state happens until acc_model_resume() or a reset.
 *     Register writes in STOPPED are latched (a doorbell is remembered and
 *     served after resume) but nothing is processed.  Save and load are
 *     allowed only in STOPPED.
 * A request is consumed (SQ head advanced) in the same critical section
 * that writes its CQE, so a saved state never holds a half-done request:
 * each submitted request completes exactly once, on one side or the other.
 *
 * Locking: one mutex per model guards every register and ring index; the
 * worker drops it only while it computes a request (marked busy), and
 * stop/reset/config changes wait for that to finish.  Callbacks in
 * acc_model_ops are called without the mutex held, from the worker thread
 * (irq) or the caller's thread (reset).
 */
#ifndef ACC_MODEL_H
#define ACC_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmig/ctx.h>
#include "acc_regs.h"

struct acc_model;

/**
 * struct acc_dma_ops - how the device reaches guest memory.
 * @translate: return a host pointer to [@iova, @iova + @len) of guest
 *             memory, valid until the mapping changes, or NULL when any
 *             byte of it is not mapped (or not writable when @write).  Must
 *             be callable from the worker thread.  @len is never 0.
 * @release:   optional: the device is done with a range translate()
 *             returned (@written: it stored into it).  Every successful
 *             translate() is released, soon: a transport may hold off
 *             DMA_UNMAP until then (vmig_vfu_dma_get()/_put()).
 */
struct acc_dma_ops {
    void *(*translate)(void *opaque, uint64_t iova, uint64_t len, bool write);
    void (*release)(void *opaque, uint64_t iova, uint64_t len, bool written);
};

/**
 * struct acc_model_ops - notifications from the device.
 * @irq:   raise interrupt @vector (enum acc_irq_vector).  Optional.
 * @reset: the device was reset (guest RESET register or acc_model_reset());
 *         a migration layer ends its data session here.  Optional.
 */
struct acc_model_ops {
    void (*irq)(void *opaque, unsigned int vector);
    void (*reset)(void *opaque, bool guest_initiated);
};

/**
 * struct acc_model_config - creation parameters.
 * @name:       for log messages ("acc0"); copied.
 * @ctx:        logging context (borrowed; must outlive the model); NULL
 *              drops messages.
 * @qp_count:   queue pairs, 1..ACC_QP_MAX (a compatibility parameter).
 * @isolation:  enum acc_isolation (a compatibility parameter).
 * @dma:        guest memory access (borrowed).
 * @dma_opaque: passed to @dma.
 * @ops:        notifications (borrowed), or NULL.
 * @opaque:     passed to @ops.
 */
struct acc_model_config {
    const char *name;
    vmig_ctx_t *ctx;
    uint32_t qp_count;
    uint32_t isolation;
    const struct acc_dma_ops *dma;
    void *dma_opaque;
    const struct acc_model_ops *ops;
    void *opaque;
};

/**
 * acc_model_new() - Create a device at power-on state, RUNNING.
 * @cfg: parameters.
 * @out: receives the model; untouched on failure.
 *
 * Starts the worker thread.
 *
 * Return: 0, -EINVAL (bad parameter), -ENOMEM, or the pthread error.
 */
int acc_model_new(const struct acc_model_config *cfg, struct acc_model **out);

/**
 * acc_model_free() - Stop the worker and free the model.  NULL is accepted.
 * @m: model.
 */
void acc_model_free(struct acc_model *m);

/**
 * acc_model_mmio_read() - A 32-bit read of BAR0.
 * @m:   model.
 * @off: byte offset; unaligned or out-of-range offsets read 0.
 *
 * Return: the register value.
 */
uint32_t acc_model_mmio_read(struct acc_model *m, uint32_t off);

/**
 * acc_model_mmio_write() - A 32-bit write to BAR0.
 * @m:   model.
 * @off: byte offset; unaligned or out-of-range writes are ignored.
 * @val: value.
 *
 * May wait for the request in flight to finish (QP enable/disable, CTRL,
 * RESET), never for guest memory.
 */
void acc_model_mmio_write(struct acc_model *m, uint32_t off, uint32_t val);

/**
 * acc_model_stop() - Quiesce: finish the request in flight, then freeze.
 * @m: model.
 *
 * Idempotent.  Returns once the worker is parked.
 */
void acc_model_stop(struct acc_model *m);

/**
 * acc_model_resume() - Leave STOPPED; latched doorbells are served.
 * @m: model.  Idempotent.
 */
void acc_model_resume(struct acc_model *m);

/**
 * acc_model_stopped() - Whether the model is STOPPED.
 * @m: model.
 *
 * Return: true in STOPPED.
 */
bool acc_model_stopped(struct acc_model *m);

/**
 * acc_model_reset() - Device reset from the host (vfio-user DEVICE_RESET).
 * @m: model.
 *
 * Waits for the request in flight, returns every register to its power-on
 * value, leaves STOPPED (a reset device is RUNNING), logs the reset with the
 * run state it interrupted and calls ops->reset(opaque, false).
 */
void acc_model_reset(struct acc_model *m);

/**
 * acc_model_dma_fence() - Wait until no request uses an old translation.
 * @m: model.
 *
 * For a transport whose DMA mappings change (vfio-user DMA_UNMAP): first
 * make translate() refuse the range, then call this, then unmap.  Returns
 * once the request in flight, which may hold pointers into the range, has
 * completed; later requests translate again.
 */
void acc_model_dma_fence(struct acc_model *m);

/**
 * acc_model_wait_idle() - Wait until no doorbell is left to serve.
 * @m:          model.
 * @timeout_ms: upper bound.
 *
 * For tests and benchmarks: returns when every enabled queue pair has an
 * empty SQ or a full CQ (the worker has nothing it can do).
 *
 * Return: 0, or -ETIMEDOUT.
 */
int acc_model_wait_idle(struct acc_model *m, int timeout_ms);

/* ------------------------------------------------------------ migration */

/*
 * Migration payload: the device-specific part of the state, little-endian,
 * every field at a fixed offset (docs/acc.md has the table).
 *
 *   header (32 bytes)
 *     0  u64 magic: ACC_STATE_MAGIC with the stream version in the low byte
 *     8  u32 total length in bytes, including the trailer
 *    12  u16 PCI vendor id        14 u16 PCI device id
 *    16  u32 queue-pair count     20 u32 isolation mode
 *    24  u32 hardware revision    28 u32 reserved (0)
 *   global (80 bytes) at 32
 *     0 ctrl  4 irq_mask  8 irq_status  12 status  16 u64 done
 *    24 u64 eq_base  32 eq_size  36 eq_head  40 eq_tail  44 eq_phase
 *    48 u64 aeq_base 56 aeq_size 60 aeq_head 64 aeq_tail 68 aeq_phase
 *    72 reserved (0)  76 reserved (0)
 *   queue pair i (48 bytes) at 112 + 48 * i
 *     0 u64 sq_base  8 u64 cq_base  16 sq_size  20 cq_size  24 ctrl
 *    28 status  32 sq_head  36 sq_tail  40 cq_head  44 cq_tail | phase << 31
 *   trailer: u32 CRC32C of every byte before it
 *
 * Version history:
 *   1: stored eq_base and aeq_base with their 32-bit halves swapped (high
 *      half in the low word).  Known bad: a guest whose EQ/AEQ sat above
 *      4 GiB would find its events written elsewhere.  Refused on load.
 *   2: the layout above, correct.  Produced and accepted.
 */
#define ACC_STATE_MAGIC 0x4d56434341535400ull /* low byte: version */
#define ACC_STATE_MAGIC_MASK 0xffffffffffffff00ull
#define ACC_STATE_VERSION 2u
#define ACC_STATE_HDR_SIZE 32u
#define ACC_STATE_GLOBAL_OFF 32u
#define ACC_STATE_GLOBAL_SIZE 80u
#define ACC_STATE_QP_OFF 112u
#define ACC_STATE_QP_SIZE 48u
#define ACC_STATE_EQ_BASE_OFF (ACC_STATE_GLOBAL_OFF + 24u)
#define ACC_STATE_AEQ_BASE_OFF (ACC_STATE_GLOBAL_OFF + 48u)
#define ACC_STATE_SIZE(qps) (ACC_STATE_QP_OFF + ACC_STATE_QP_SIZE * (qps) + 4u)

/**
 * struct acc_match_info - what the match check compares (the
 * compatibility part; hisi_acc's vf_qm_check_match).
 */
struct acc_match_info {
    uint16_t vendor;
    uint16_t device;
    uint32_t qp_count;
    uint32_t isolation;
    uint32_t version; /* migration payload version */
};

/**
 * acc_model_state_size() - Bytes acc_model_save() produces.
 * @m: model.
 *
 * Return: ACC_STATE_SIZE(qp_count).
 */
size_t acc_model_state_size(const struct acc_model *m);

/**
 * acc_model_match_info() - This model's side of the match check.
 * @m:   model.
 * @out: receives vendor, device, queue pairs, isolation and
 *       ACC_STATE_VERSION.
 */
void acc_model_match_info(const struct acc_model *m,
                          struct acc_match_info *out);

/**
 * acc_check_match() - May state described by @src load into @dst?
 * @dst:    the destination device.
 * @src:    what the source reported (or acc_state_peek() read).
 * @why:    receives a reason when the answer is no; may be NULL.
 * @why_sz: size of @why.
 *
 * Version 1 is refused by name as known bad; other unknown versions as
 * unsupported.
 *
 * Return: 0 when compatible; -EOPNOTSUPP (device or version) or -EINVAL
 * (queue-pair count, isolation mode) otherwise.
 */
int acc_check_match(const struct acc_match_info *dst,
                    const struct acc_match_info *src, char *why, size_t why_sz);

/**
 * acc_state_peek() - Read the match information of a payload header.
 * @buf:    payload.
 * @len:    its length.
 * @out:    receives the information.
 * @why:    receives a reason on failure; may be NULL.
 * @why_sz: size of @why.
 *
 * Checks only the magic and that the header is present.
 *
 * Return: 0, or -EBADMSG.
 */
int acc_state_peek(const void *buf, size_t len, struct acc_match_info *out,
                   char *why, size_t why_sz);

/**
 * acc_model_save() - Write the device state (payload version 2).
 * @m:   model, STOPPED.
 * @buf: destination.
 * @cap: its size; at least acc_model_state_size().
 * @len: receives the bytes written.
 *
 * Return: 0, -EBUSY (not STOPPED), or -E2BIG (@cap too small).
 */
int acc_model_save(struct acc_model *m, void *buf, size_t cap, size_t *len);

/**
 * acc_model_load() - Validate a payload completely, then apply it.
 * @m:      model, STOPPED.
 * @buf:    payload.
 * @len:    its length.
 * @why:    receives the reason on failure; may be NULL.
 * @why_sz: size of @why.
 *
 * Nothing changes in @m unless the whole payload is valid: magic and
 * version (version 1 is refused as known bad), length, checksum, the match
 * check against @m, then every size, index and flag.  The failure is also
 * logged.
 *
 * Return: 0; -EBUSY (not STOPPED); -EBADMSG (truncated, corrupt,
 * inconsistent); -EOPNOTSUPP (version, device); -EINVAL (queue-pair count
 * or isolation mismatch).
 */
int acc_model_load(struct acc_model *m, const void *buf, size_t len, char *why,
                   size_t why_sz);

/* ------------------------------------------------------------ algorithms */

/**
 * acc_crc32c() - CRC-32C (Castagnoli, reflected, init and xorout ~0).
 * @crc: 0 to start, or the value returned for the preceding bytes.
 * @p:   data.
 * @n:   length.
 *
 * Return: the CRC of everything so far ("123456789" gives 0xe3069283).
 */
uint32_t acc_crc32c(uint32_t crc, const void *p, size_t n);

/**
 * acc_status_name() - "ok", "bad-opcode", ... for enum acc_status.
 * @st: status.
 *
 * Return: a static string.
 */
const char *acc_status_name(unsigned int st);

#endif /* ACC_MODEL_H */
