/* SPDX-License-Identifier: MIT */
/*
 * guest-work.h - a self-checking accelerator workload whose whole state
 * lives in guest memory, for a guest program (the agent's vCPU) and tests.
 *
 * Request n (0 <= n < total) is fully determined by n: its operation, its
 * input length and its input bytes.  The workload keeps every queue pair
 * full, checks each completion against a direct computation (libzstd,
 * zlib, OpenSSL, CRC32C), and marks n in a bitmap in guest memory; a
 * second completion of n, a wrong result or an error status is counted and
 * the first one recorded.  Because nothing lives outside guest memory, the
 * workload survives any migration of guest RAM + device: on the other side
 * build new views (acc_gdrv_attach(), acc_gwork_attach()) and keep
 * stepping.
 *
 * Guest memory at state_gpa (64-byte aligned):
 *   struct acc_gwork_state | done bitmap (total bits) | result ledger (one
 *   struct acc_gwork_rec per request) | buffers: one slot per request in
 *   flight (input area, then output area)
 *
 * The ledger records, per request number, every completion's status, output
 * length and a 64-bit digest of the result (of the output bytes; for the
 * compressions, of the decompressed output, which must equal the input, so
 * the digest does not depend on the compressor's exact bytes), and how many
 * completions arrived.  acc_gwork_ledger_check() re-derives every entry
 * from the request number alone, so a destination re-checks the whole
 * history it received.
 * The request id in each SQE is slot << 32 | n.
 */
#ifndef ACC_GUEST_WORK_H
#define ACC_GUEST_WORK_H

#include <stdbool.h>
#include <stdint.h>
#include "guest-driver.h"

#define ACC_GWORK_MAGIC 0x324b524f57434341ull /* "ACCWORK2" */

/* One ledger entry: the result of request n (all zero until completed). */
struct acc_gwork_rec {
    uint16_t status; /* last completion's status (ACC_ST_*) */
    uint16_t count;  /* completions received (saturates at 0xffff) */
    uint32_t out_len;
    uint64_t digest; /* FNV-1a 64 of the result bytes */
};

/**
 * struct acc_gwork_ledger - a ledger re-check's summary.
 * @entries:   ledger entries with a completion.
 * @checked:   entries that match the reference (status OK, one completion,
 *             length and digest right).
 * @mismatch:  entries that do not, plus completed requests without an
 *             entry.
 * @first_bad: request number of the first mismatch, or ~0.
 */
struct acc_gwork_ledger {
    uint64_t entries;
    uint64_t checked;
    uint64_t mismatch;
    uint64_t first_bad;
};

struct acc_gwork_state {
    uint64_t magic;
    uint64_t total;     /* requests to run */
    uint64_t issued;    /* next request number */
    uint64_t completed; /* distinct requests completed correctly */
    uint64_t bad;       /* wrong output or error status */
    uint64_t dup;       /* completions of an already completed request */
    uint64_t first_bad; /* request number of the first bad/dup, or ~0 */
    uint32_t first_bad_status;
    uint32_t qp_count;
    uint32_t slots_per_qp;
    uint32_t max_in;    /* largest input */
    uint32_t slot_size; /* input area + output area */
    uint32_t seed;
    uint64_t bitmap_gpa;
    uint64_t ledger_gpa;
    uint64_t buf_gpa;
    uint64_t end_gpa;
    /* followed, in guest memory, by the slot table: u64 per slot,
     * request number + 1 while busy, 0 when free */
};

/**
 * struct acc_gwork - a view of a workload; not guest state.
 */
struct acc_gwork {
    uint8_t *ram;
    uint64_t ram_size;
    struct acc_gwork_state *st;
    uint64_t *slots;
    struct acc_gwork_rec *ledger;
    uint8_t *scratch; /* host scratch for reference computations */
    uint8_t *scratch2;
};

/**
 * acc_gwork_mem_size() - Guest memory a workload needs.
 * @qp_count:     queue pairs the driver uses.
 * @slots_per_qp: requests in flight per pair (the driver's limit).
 * @total:        requests.
 * @max_in:       largest input, bytes (at most 1 MiB).
 *
 * Return: bytes.
 */
uint64_t acc_gwork_mem_size(uint32_t qp_count, uint32_t slots_per_qp,
                            uint64_t total, uint32_t max_in);

/**
 * acc_gwork_init() - Lay out a fresh workload in guest memory.
 * @w:         receives the view.
 * @drv:       the guest driver (for the geometry).
 * @state_gpa: where (64-byte aligned; acc_gwork_mem_size() bytes).
 * @total:     requests.
 * @max_in:    largest input.
 * @seed:      varies the request mix.
 *
 * Return: 0, -EINVAL (does not fit, bad argument), -ENOMEM (host scratch).
 */
int acc_gwork_init(struct acc_gwork *w, struct acc_gdrv *drv,
                   uint64_t state_gpa, uint64_t total, uint32_t max_in,
                   uint32_t seed);

/**
 * acc_gwork_attach() - A view of a workload already in guest memory.
 * @w:         receives the view.
 * @ram:       host pointer to guest address 0.
 * @ram_size:  guest memory size.
 * @state_gpa: the address given to acc_gwork_init().
 *
 * Return: 0, -EINVAL (no valid workload there), -ENOMEM.
 */
int acc_gwork_attach(struct acc_gwork *w, uint8_t *ram, uint64_t ram_size,
                     uint64_t state_gpa);

/**
 * acc_gwork_fini() - Free the view's host scratch (guest state stays).
 * @w: view.
 */
void acc_gwork_fini(struct acc_gwork *w);

/**
 * acc_gwork_step() - Reap and check completions, then refill the queues.
 * @w:   view.
 * @drv: driver view.
 *
 * Never blocks; call it after a completion interrupt or periodically.
 *
 * Return: completions reaped (>= 0), or -EINVAL.
 */
int acc_gwork_step(struct acc_gwork *w, struct acc_gdrv *drv);

/**
 * acc_gwork_resubmit() - Queue every unfinished request again, after the
 * device was reset and @drv set up afresh (acc_gdrv_init()).
 * @w:   view.
 * @drv: driver view, its queues empty.
 *
 * A reset drops whatever the device had queued, and completions it wrote
 * but the driver had not reaped are gone with the re-formatted rings: the
 * requests of every busy slot run again, same number, same slot, so each
 * still completes exactly once.  Their inputs are generated again (the
 * device may have been part-way through them).
 *
 * Return: requests queued (>= 0), or -EINVAL (a slot table that does not
 * fit the driver, or names a request that does not exist).
 */
int acc_gwork_resubmit(struct acc_gwork *w, struct acc_gdrv *drv);

/**
 * acc_gwork_finished() - Every request issued and reaped?
 * @w: view.
 *
 * Return: true when nothing is left to do.
 */
bool acc_gwork_finished(const struct acc_gwork *w);

/**
 * acc_gwork_verify() - The verdict: every request exactly once, correct.
 * @w: view.
 *
 * Return: 0; -EAGAIN (not finished); -EBADMSG (a wrong result, an error
 * status or a duplicate: see the state's first_bad); -EIO (the bitmap
 * disagrees with the counters).
 */
int acc_gwork_verify(const struct acc_gwork *w);

/**
 * acc_gwork_ledger_check() - Re-check every ledger entry from scratch.
 * @w:       view.
 * @digests: also recompute every reference result (length and digest);
 *           costs about one pass over all the requests' inputs.
 * @out:     receives the summary.
 *
 * Each entry of a request marked done must hold exactly one completion,
 * status OK and, with @digests, the reference result's length and digest
 * (recomputed from the request number); a request not marked done must
 * have no entry.
 *
 * Return: 0 when every entry matches; -EBADMSG otherwise.
 */
int acc_gwork_ledger_check(const struct acc_gwork *w, bool digests,
                           struct acc_gwork_ledger *out);

#endif /* ACC_GUEST_WORK_H */
