/* SPDX-License-Identifier: MIT */
/*
 * engine.h - the VMM-side migration engine, as a library a VMM embeds.
 *
 * The VMM describes its guest RAM (regions it has mapped), gives hooks for
 * vCPU pause/resume and vCPU state, and adds each device behind a backend
 * ops table (a vfio-user client, a kernel VFIO device, or an in-process
 * model such as the test kit's memdev, testkit/memdev.c).  The engine then
 * migrates the VM over a connected stream socket to a peer engine
 * (docs/migration-protocol.md):
 *
 *   source: vmig_engine_migrate(fd)      destination: vmig_engine_incoming(fd)
 *
 * or over a channel (<vmig/chan.h>), which is how a VMM migrates over TLS:
 * it connects, authenticates both sides with vmig_tls_handshake() and
 * hands the channel to vmig_engine_migrate_chan() /
 * vmig_engine_incoming_chan() / vmig_engine_check_chan().  The engine
 * neither knows nor cares whether the channel is encrypted.
 *
 * Precopy (when the peer accepts it and there is something to precopy):
 * while the VM runs, devices with PRE_COPY enter it and stream their
 * initial then dirty data, and guest RAM moves in passes (all of it, then
 * the pages dirtied since, as reported by the VMM's dirty hooks), until
 * the estimated stop-copy bytes at the measured bandwidth fit the downtime
 * limit, or an iteration/time cap is hit (then stop-copy anyway or abort,
 * per the params).  With switchover-ack the destination first confirms
 * that every device's initial data loaded, so an incompatible device is
 * refused before any downtime.  A device reset during precopy restarts
 * that device's precopy (the destination discards its partial state) or
 * aborts, per the params.
 *
 * Switchover: the source pauses the vCPUs, moves every device to
 * RUNNING_P2P / PRE_COPY_P2P (STOP, or STOP_COPY from PRE_COPY, for
 * devices without P2P) and only then to STOP_COPY, streams the remaining
 * RAM, vCPU state, each device's VMM-owned config and its remaining data,
 * then SWITCHOVER.  Several devices where one lacks P2P are refused
 * before anything changes unless params.allow_mixed_p2p is set (QEMU's
 * rule: without P2P a device may still DMA to a peer already stopped).  The
 * destination takes its devices RESUMING -> STOP (validation) -> RUNNING_P2P ->
 * RUNNING after re-establishing the VMM-owned config, loads the vCPU state,
 * resumes and CONFIRMs.  Any error before the confirmation returns every source
 * device to RUNNING (reset if a transition fails) and resumes the source vCPUs;
 * the destination resets its devices and does not resume.
 *
 * Threads: vmig_engine_migrate()/incoming()/check() block the calling
 * thread; vmig_engine_cancel(), vmig_engine_stats() and
 * vmig_engine_set_params() may be called from any other thread.  Hooks
 * are called from the migrating thread.
 */
#ifndef VMIG_ENGINE_H
#define VMIG_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <vmig/chan.h>
#include <vmig/ctx.h>
#include <vmig/export.h>
#include <vmig/fsm.h>
#include <vmig/migproto.h>

struct vmig_engine;

#define VMIG_ENGINE_MAX_DEVICES VMIG_MP_MAX_DEVICES
#define VMIG_ENGINE_MAX_REGIONS VMIG_MP_MAX_REGIONS

/**
 * struct vmig_engine_region - one region of guest RAM.
 * @name: unique, printable, at most VMIG_MP_NAME_MAX bytes; copied.
 * @host: where the VMM mapped it; the engine reads it on the source and
 *        writes it on the destination (unless vm ops ram_write is set).
 * @size: bytes, a multiple of VMIG_MP_PAGE_SIZE.
 */
struct vmig_engine_region {
    const char *name;
    void *host;
    uint64_t size;
};

enum vmig_engine_status {
    VMIG_ENGINE_NONE = 0,
    VMIG_ENGINE_SETUP,
    VMIG_ENGINE_ACTIVE,
    VMIG_ENGINE_DEVICE,
    VMIG_ENGINE_COMPLETED,
    VMIG_ENGINE_FAILED,
    VMIG_ENGINE_CANCELLED,
    /* the commit protocol (VMIG_MP_FEAT_COMMIT): the source sent GO and
     * lost the destination's answer, and asks it again on a new
     * connection; the destination lost its source after READY and holds
     * the loaded, paused VM for its recovery contact */
    VMIG_ENGINE_RECOVERING,
    /* the source could not learn the outcome within recover_timeout_ms:
     * the VM stays paused here until vmig_engine_recover() learns it or
     * vmig_engine_resume_source() overrides */
    VMIG_ENGINE_UNKNOWN,
    VMIG_ENGINE__STATUS_COUNT
};

enum vmig_engine_role {
    VMIG_ENGINE_ROLE_NONE = 0,
    VMIG_ENGINE_ROLE_SOURCE,
    VMIG_ENGINE_ROLE_DEST,
};

/**
 * struct vmig_engine_dev_stats - one device in a stats snapshot.
 * @state:      the last state the engine saw the device in.
 * @bytes:      device-data bytes sent (source) or received (destination).
 * @config_len: VMM-owned config bytes moved.
 * @precopy_bytes: of @bytes, those moved while the VM ran (PRE_COPY).
 * @restarts:   precopy restarts after a reset of the device.
 * @verdict:    1 compatible, 0 refused, -1 not asked yet.
 * @reason:     the destination's reason when refused.
 */
struct vmig_engine_dev_stats {
    char name[VMIG_MP_NAME_MAX + 1];
    enum vmig_state state;
    uint64_t bytes;
    uint64_t config_len;
    uint64_t precopy_bytes;
    unsigned int restarts;
    int verdict;
    char reason[VMIG_MP_REASON_MAX + 1];
};

/**
 * struct vmig_engine_stats - a snapshot for query-migrate.
 * @total_time_ms:        since the migration started (until it ended).
 * @downtime_ms:          vCPU paused on the source -> running on the
 *                        destination; valid once completed.
 * @expected_downtime_ms: estimate from the remaining bytes and rate.
 * @ram_total:            bytes of guest RAM.
 * @ram_transferred:      RAM bytes sent/received this migration (zero pages
 *                        count as their size).
 * @ram_remaining:        RAM bytes not yet sent in the current pass.
 * @wire_bytes:           bytes on the socket, headers included.
 * @mbps:                 measured throughput, megabits per second.
 * @pass:                 RAM pass number (1 for stop-and-copy).
 * @precopy:              precopy was used.
 * @iterations:           precopy iterations done.
 * @precopy_bytes:        RAM + device bytes moved while the VM ran.
 * @stopcopy_bytes:       RAM + device bytes moved while it was paused.
 * @dirty_pages:          RAM pages found dirty at the last collection.
 * @est_stopcopy_bytes:   the last estimate of the stop-copy bytes.
 * @switchover_ack_ms:    SWITCHOVER_REQ sent -> SWITCHOVER_ACK received.
 * @channel_bytes:        of @wire_bytes, those on the extra connections of
 *                        parallel channels (<vmig/engine_chan.h>).
 * @zstd_raw_bytes:       source with compression: payload bytes of the RAM
 *                        and device data frames that could be compressed.
 * @zstd_bytes:           what those frames took on the wire.
 * @first_dev_byte_us:    source: vCPU pause -> the first stop-copy device
 *                        data frame handed to a connection (0: none yet).
 * @forced_switchover:    source: precopy did not converge (the estimate
 *                        never fit the downtime limit) and an iteration or
 *                        time cap switched over anyway (cap_action
 *                        stop-copy): the downtime limit was not met by
 *                        design, not by a bad estimate.
 * @error:                the reason when FAILED or CANCELLED.
 */
struct vmig_engine_stats {
    enum vmig_engine_status status;
    enum vmig_engine_role role;
    uint64_t total_time_ms;
    uint64_t downtime_ms;
    uint64_t expected_downtime_ms;
    uint64_t setup_time_ms;
    uint64_t ram_total;
    uint64_t ram_transferred;
    uint64_t ram_remaining;
    uint64_t ram_zero_pages;
    uint64_t dev_total;
    uint64_t wire_bytes;
    double mbps;
    unsigned int pass;
    bool precopy;
    unsigned int iterations;
    uint64_t precopy_bytes;
    uint64_t stopcopy_bytes;
    uint64_t dirty_pages;
    uint64_t est_stopcopy_bytes;
    uint64_t switchover_ack_ms;
    uint64_t channel_bytes;
    uint64_t zstd_raw_bytes;
    uint64_t zstd_bytes;
    uint64_t first_dev_byte_us;
    bool forced_switchover;
    int errnum;
    char error[256];
    unsigned int ndevices;
    struct vmig_engine_dev_stats dev[VMIG_ENGINE_MAX_DEVICES];
};

enum vmig_engine_event_kind {
    VMIG_ENGINE_EV_STATUS = 1, /* status changed (QMP MIGRATION) */
    VMIG_ENGINE_EV_PASS,       /* a RAM pass began (QMP MIGRATION_PASS) */
    VMIG_ENGINE_EV_PROGRESS,   /* bytes moved; at most every 100 ms */
};

/**
 * struct vmig_engine_vm_ops - the VMM's hooks.
 * @vcpu_pause:  stop every vCPU and return once none runs.  Required on a
 *               source.
 * @vcpu_resume: let the vCPUs run.  Required.
 * @vcpu_save:   write the vCPU state into @buf (@cap bytes); return its
 *               length (larger than @cap means "too big": -E2BIG is
 *               reported) or a negative errno.  Optional (no vCPU state).
 * @vcpu_load:   load a state from vcpu_save on the destination.  Optional.
 * @ram_write:   write @len bytes (@data NULL: zeroes) at @offset of
 *               region @region on the destination.  Optional: the engine
 *               writes through the region's host pointer by default.
 * @event:       progress and status notifications.  Optional.  Must not
 *               call back into the engine except vmig_engine_stats().
 * @ram_hole:    on the source: return 1 when @len bytes at @offset of
 *               region @region are known to be zero without reading them
 *               (a hole in the memfd backing guest RAM: SEEK_DATA), else
 *               0.  Optional; saves touching never-used guest memory.
 * @dirty_start: begin tracking writes to guest RAM by anyone (vCPUs and
 *               device DMA, e.g. <vmig/ramdirty.h>); pages written before
 *               are forgotten.  Optional: without the three dirty hooks
 *               guest RAM is not precopied (it all moves at stop-copy).
 * @dirty_collect: read and clear: OR into @bitmap (bit i of word i / 64 =
 *               page i of region @region, 4 KiB pages, @nbits = region
 *               pages) the pages written since the last collection;
 *               return how many were set, or a negative errno (fails the
 *               migration, which rolls back).
 * @dirty_stop:  end tracking (also called on failure).
 * @reconnect:   on the source, for the commit protocol's recovery: open a
 *               new channel to the same destination (same address, same
 *               TLS credentials) into *@out, or return a negative errno
 *               with a reason in @why.  Optional: without it a source
 *               that lost the destination's answer after GO cannot ask
 *               again and goes straight to VMIG_ENGINE_UNKNOWN.
 * @disconnect:  close a channel @reconnect opened.  Required with it.
 */
struct vmig_engine_vm_ops {
    int (*vcpu_pause)(void *opaque);
    int (*vcpu_resume)(void *opaque);
    ssize_t (*vcpu_save)(void *opaque, void *buf, size_t cap);
    int (*vcpu_load)(void *opaque, const void *buf, size_t len);
    int (*ram_write)(void *opaque, unsigned int region, uint64_t offset,
                     const void *data, size_t len);
    void (*event)(void *opaque, enum vmig_engine_event_kind kind,
                  const struct vmig_engine_stats *stats);
    int (*ram_hole)(void *opaque, unsigned int region, uint64_t offset,
                    uint64_t len);
    int (*dirty_start)(void *opaque);
    long (*dirty_collect)(void *opaque, unsigned int region, uint64_t *bitmap,
                          size_t nbits);
    void (*dirty_stop)(void *opaque);
    int (*reconnect)(void *opaque, struct vmig_chan **out, char *why,
                     size_t why_len);
    void (*disconnect)(void *opaque, struct vmig_chan *ch);
};

/**
 * struct vmig_engine_dev_ops - a device backend.
 * @get_flags:   the device's migration flags (VMIG_MIGRATION_*).  Required.
 * @get_state:   the device's current state.  Required.
 * @set_state:   move the device to @target; the backend performs the
 *               combination transition (arc by arc) itself.  On failure
 *               the engine calls get_state.  Required.
 * @read:        read the saving session: return bytes (> 0), 0 at the end
 *               of the data, -ENOMSG in PRE_COPY when nothing is pending,
 *               or a negative errno.  Required on a source.
 * @write:       append @len bytes to the resuming session.  Required on a
 *               destination.
 * @describe:    fill @ids and write the compatibility descriptor (opaque
 *               to the engine) into @buf; return its length (0: none).
 *               Optional.
 * @compat:      on the destination: may the source device described by
 *               @src land on this device?  Return 1 yes, 0 no (write a
 *               reason), or a negative errno.  Optional: without it, PCI
 *               ids must match when both sides have them and descriptors
 *               must be byte-identical when both sides have one.
 * @config_save: write the VMM-owned config (PCI config the VMM wrote, IRQ
 *               wiring, DMA mappings) into @buf; return its length.
 *               Optional.
 * @config_load: re-establish that config on the destination before the
 *               device leaves STOP.  Optional.
 * @reset:       device reset: back to RUNNING, dropping any session.
 *               Required.
 * @precopy_info: in PRE_COPY / PRE_COPY_P2P: bytes of initial data still
 *               to read and dirty bytes known now (VFIO_MIG_GET_PRECOPY_INFO).
 *               Optional: without it the engine reads until -ENOMSG and
 *               counts the initial data done at the first -ENOMSG.
 * @data_size:   estimated bytes the device would still produce if moved
 *               to STOP_COPY now (VFIO_DEVICE_FEATURE_MIG_DATA_SIZE); used
 *               for the downtime estimate.  Optional.
 */
struct vmig_engine_dev_ops {
    int (*get_flags)(void *opaque, uint64_t *flags);
    int (*get_state)(void *opaque, enum vmig_state *state);
    int (*set_state)(void *opaque, enum vmig_state target);
    ssize_t (*read)(void *opaque, void *buf, size_t cap);
    int (*write)(void *opaque, const void *buf, size_t len);
    ssize_t (*describe)(void *opaque, struct vmig_pci_ids *ids, void *buf,
                        size_t cap);
    int (*compat)(void *opaque, const struct vmig_mp_dev *src, char *reason,
                  size_t reason_len);
    ssize_t (*config_save)(void *opaque, void *buf, size_t cap);
    int (*config_load)(void *opaque, const void *buf, size_t len);
    int (*reset)(void *opaque);
    int (*precopy_info)(void *opaque, uint64_t *initial, uint64_t *dirty);
    int (*data_size)(void *opaque, uint64_t *bytes);
};

/* What precopy does when it hits its iteration or time cap. */
enum vmig_engine_cap_action {
    VMIG_ENGINE_CAP_STOP_COPY = 0, /* switch over anyway (longer downtime) */
    VMIG_ENGINE_CAP_ABORT,         /* give up; the VM keeps running here */
};

/* What precopy does when a device is reset (its saving session is gone). */
enum vmig_engine_reset_policy {
    VMIG_ENGINE_RESET_RESTART = 0, /* restart that device's precopy */
    VMIG_ENGINE_RESET_ABORT,       /* abort; the VM keeps running here */
};

/* The default of vmig_engine_params.timeout_ms, milliseconds. */
#define VMIG_ENGINE_PEER_TIMEOUT_MS 30000u
/* The default of vmig_engine_params.recover_timeout_ms, milliseconds. */
#define VMIG_ENGINE_RECOVER_TIMEOUT_MS 60000u

/**
 * struct vmig_engine_params - tunables (QMP migrate-set-parameters).
 * @downtime_limit_ms: target downtime; precopy iterates until the
 *                     estimated stop-copy bytes at the measured bandwidth
 *                     fit it.  Default 300.
 * @max_bandwidth:     bytes per second on the wire while the VM runs; 0
 *                     is unlimited.  A token bucket of at most 100 ms of
 *                     bytes; stop-copy (the VM paused) is not throttled.
 * @timeout_ms:        silence from the peer after which the migration
 *                     fails (every wait for it: connect, TLS, each read
 *                     and write, CONFIRM); default
 *                     VMIG_ENGINE_PEER_TIMEOUT_MS.  Taken when a migration
 *                     starts.
 * @no_precopy:        stop-and-copy only, even when precopy is possible.
 * @max_iterations:    precopy passes before the cap action; 0: default 30.
 * @max_precopy_ms:    precopy time before the cap action; 0: no limit.
 * @cap_action:        what the cap does.
 * @reset_policy:      a device reset during precopy.
 * @max_restarts:      precopy restarts per device before aborting; 0:
 *                     default 3.
 * @allow_mixed_p2p:   migrate several devices although one lacks P2P.
 * @test_one_phase_stop: TEST ONLY, deliberately unsafe: stop each device
 *                     straight to STOP_COPY in turn, so a peer still
 *                     running may DMA into one already saved.
 * @recover_timeout_ms: the commit protocol's recovery window; 0: default
 *                     VMIG_ENGINE_RECOVER_TIMEOUT_MS.  Source: how long
 *                     it keeps asking a destination whose answer to GO
 *                     was lost.  Destination: how long it holds a loaded
 *                     VM whose source vanished before GO (then it
 *                     discards it: the source cannot have committed), and
 *                     keeps answering after a CONFIRM the source may
 *                     have missed.
 * @no_commit:         do not offer the commit protocol (a destination
 *                     then resumes on SWITCHOVER, as protocol version 1
 *                     without the feature does).  For interop tests.
 * @channels:          connections per migration (QEMU's multifd-channels),
 *                     the main one included; 0 or 1: one connection, as
 *                     before channels existed.  More need the VMM's
 *                     channel ops (<vmig/engine_chan.h>) on both sides;
 *                     at most VMIG_MP_MAX_CHANNELS.  On a destination:
 *                     the most it grants.
 * @compression:       source: compress guest RAM and device data on every
 *                     connection of the migration (QEMU's
 *                     multifd-compression; VMIG_ENGINE_COMPRESS_ZSTD),
 *                     when the destination supports it (one that does
 *                     not gets them uncompressed).  A destination
 *                     decompresses whatever its source chose.
 * @zstd_level:        zstd level of what this side sends (QEMU's
 *                     multifd-zstd-level), 1..19; 0: 1.
 */
enum vmig_engine_compress {
    VMIG_ENGINE_COMPRESS_NONE = 0,
    VMIG_ENGINE_COMPRESS_ZSTD = 1,
};

struct vmig_engine_params {
    uint64_t downtime_limit_ms;
    uint64_t max_bandwidth;
    unsigned int timeout_ms;
    bool no_precopy;
    unsigned int max_iterations;
    uint64_t max_precopy_ms;
    enum vmig_engine_cap_action cap_action;
    enum vmig_engine_reset_policy reset_policy;
    unsigned int max_restarts;
    bool allow_mixed_p2p;
    bool test_one_phase_stop;
    unsigned int recover_timeout_ms;
    bool no_commit;
    unsigned int channels;
    enum vmig_engine_compress compression;
    int zstd_level;
};

/**
 * struct vmig_engine_check - the destination's per-device verdicts.
 * @status: 0 when every device may migrate, else a positive errno.
 */
struct vmig_engine_check {
    int status;
    char reason[VMIG_MP_REASON_MAX + 1];
    unsigned int ndevices;
    struct vmig_engine_dev_stats dev[VMIG_ENGINE_MAX_DEVICES];
};

/**
 * vmig_engine_new() - Create an engine for one VM.
 * @ctx:      logging context (borrowed; must outlive the engine).
 * @regions:  guest RAM; copied (the memory itself stays the VMM's).
 * @nregions: 1 .. VMIG_ENGINE_MAX_REGIONS.
 * @ops:      VMM hooks (borrowed).
 * @opaque:   passed to the VM hooks.
 * @out:      receives the engine; untouched on failure.
 *
 * Return: 0, -EINVAL (bad region, missing vcpu_resume), -ENOMEM.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_engine_new(vmig_ctx_t *ctx, const struct vmig_engine_region *regions,
                unsigned int nregions, const struct vmig_engine_vm_ops *ops,
                void *opaque, struct vmig_engine **out);

/**
 * vmig_engine_free() - Destroy an engine; no migration may be running.
 * NULL is accepted.
 * @e: engine.
 */
VMIG_EXPORT void vmig_engine_free(struct vmig_engine *e);

/**
 * vmig_engine_add_device() - Add a device; devices migrate in this order
 * and are matched by name on the destination.
 * @e:      engine, not migrating.
 * @name:   unique printable name; copied.
 * @ops:    backend (borrowed).
 * @opaque: passed to the backend.
 *
 * Return: 0, -EINVAL (bad name, duplicate, missing required op), -E2BIG
 * (too many devices), -EBUSY (a migration is running).
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_engine_add_device(struct vmig_engine *e, const char *name,
                       const struct vmig_engine_dev_ops *ops, void *opaque);

/**
 * vmig_engine_del_device() - Remove a device (the VMM unplugged it, or
 * its backend died and the VMM gave it up); later migrations carry the
 * others, whose order stays as added.
 * @e:    engine, not migrating.
 * @name: the name it was added with.
 *
 * Return: 0, -ENOENT (no such device), -EBUSY (a migration is running).
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_engine_del_device(struct vmig_engine *e,
                                                       const char *name);

/**
 * vmig_engine_set_params() - Change tunables; takes effect at once (a
 * new bandwidth limit within 20 ms, also on a wait under way).
 * @e: engine.
 * @p: the new values; a zero @timeout_ms or @downtime_limit_ms keeps the
 *     default.
 */
VMIG_EXPORT void vmig_engine_set_params(struct vmig_engine *e,
                                        const struct vmig_engine_params *p);

/**
 * vmig_engine_get_params() - The current tunables.
 * @e:   engine.
 * @out: receives them.
 */
VMIG_EXPORT void vmig_engine_get_params(struct vmig_engine *e,
                                        struct vmig_engine_params *out);

/**
 * vmig_engine_migrate() - Migrate the VM out over @fd (source side).
 * @e:  engine.
 * @fd: connected stream socket to the destination; borrowed.
 *
 * Blocks until the destination confirmed (the vCPUs stay paused and the
 * devices stay stopped: the VM now runs on the destination) or the
 * migration failed (the VM runs here again, devices RUNNING).
 *
 * With the commit protocol, once GO is sent the source never resumes on
 * its own: a lost answer is asked again on a new connection (the
 * reconnect hook) for recover_timeout_ms; when it cannot be learnt the
 * call returns -EINPROGRESS with the VM paused (status UNKNOWN): see
 * vmig_engine_recover() and vmig_engine_resume_source().
 *
 * Return: 0 when completed; -EOPNOTSUPP when the destination refused in
 * HELLO (see stats for per-device reasons) or several devices where one
 * lacks P2P were refused here; -ETIME when precopy did not converge and
 * the cap action is abort; -ENODEV when a device was reset during
 * precopy and the policy (or its restart limit) aborts; -ECANCELED after
 * vmig_engine_cancel(); -EBUSY when a migration is running; or the error
 * that ended it (-ECONNRESET, -EPIPE, -ETIMEDOUT, -EBADMSG, -EPROTO, ...).
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_engine_migrate(struct vmig_engine *e,
                                                    int fd);

/**
 * vmig_engine_migrate_chan() - vmig_engine_migrate() over a channel.
 * @e:  engine.
 * @ch: a plaintext or established TLS channel to the destination;
 *      borrowed (freed by the caller after the call).
 *
 * Return: as vmig_engine_migrate().
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_engine_migrate_chan(struct vmig_engine *e,
                                                         struct vmig_chan *ch);

/**
 * vmig_engine_incoming() - Receive a VM over @fd (destination side).
 * @e:  engine; its vCPUs are not running and its devices are unused.
 * @fd: connected stream socket from the source; borrowed.
 *
 * With the commit protocol the VM resumes only on the source's GO.  A
 * connection lost after READY leaves the loaded VM paused, waiting for
 * the source to come back: -EINPROGRESS; the VMM then offers each new
 * connection to this function again while vmig_engine_recovery_ms() says
 * so, and calls vmig_engine_recovery_expire() when that runs out.  A
 * source asking about a migration (RECOVER) is answered here too.
 *
 * Return: 0 when the VM was received and resumed here; 1 when the peer
 * only asked for a compatibility check or about a past migration
 * (nothing changed); -EINPROGRESS as above; -EOPNOTSUPP when we refused
 * it in HELLO; or the error that ended it (nothing resumed, devices
 * reset).
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_engine_incoming(struct vmig_engine *e,
                                                     int fd);

/**
 * vmig_engine_incoming_chan() - vmig_engine_incoming() over a channel.
 * @e:  engine.
 * @ch: a plaintext or established TLS channel from the source; borrowed.
 *
 * Return: as vmig_engine_incoming().
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_engine_incoming_chan(struct vmig_engine *e,
                                                          struct vmig_chan *ch);

/**
 * vmig_engine_refuse_chan() - Turn a source away at once, without an
 * engine: exchange preambles and send ERROR with @err and @reason (what
 * the source then reports), e.g. a destination already receiving a
 * migration ("destination busy").  The migration under way is untouched.
 * @ctx:        logging context.
 * @ch:         the source's channel (plaintext or established TLS);
 *              borrowed.
 * @err:        negative errno the source is told, e.g. -EBUSY.
 * @reason:     printable, at most VMIG_MP_REASON_MAX bytes are sent.
 * @timeout_ms: bound on each wait for the source (and the linger after).
 *
 * Return: 0 when the ERROR was sent; -EINVAL (bad arguments), or the
 * error of the preamble exchange or the send.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_engine_refuse_chan(vmig_ctx_t *ctx, struct vmig_chan *ch, int err,
                        const char *reason, unsigned int timeout_ms);

/**
 * vmig_engine_check() - Ask the destination on @fd whether every device
 * can land there; nothing is migrated or changed on either side.
 * @e:   engine.
 * @fd:  connected stream socket; borrowed.
 * @out: receives the verdicts.
 *
 * Return: 0 when the destination answered (see @out->status; a
 * destination that turned the check away with ERROR, e.g. busy receiving
 * a migration, answered with its errno and reason), or a negative errno
 * when it could not be asked.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_engine_check(struct vmig_engine *e, int fd, struct vmig_engine_check *out);

/**
 * vmig_engine_check_chan() - vmig_engine_check() over a channel.
 * @e:   engine.
 * @ch:  a plaintext or established TLS channel; borrowed.
 * @out: receives the verdicts.
 *
 * Return: as vmig_engine_check().
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_engine_check_chan(struct vmig_engine *e, struct vmig_chan *ch,
                       struct vmig_engine_check *out);

/**
 * vmig_engine_cancel() - Ask a running migration to stop.  Any thread.
 * @e: engine.
 *
 * Before the commit (GO with the commit protocol; SWITCHOVER without it)
 * the source rolls back and the migration ends with -ECANCELED.  After it
 * the outcome belongs to the destination: the source never resumes on a
 * cancel.  While it recovers (status RECOVERING or UNKNOWN) the cancel is
 * remembered: a destination found still waiting for GO is told to
 * discard, and then the VM resumes here.
 *
 * Return: 0 when the cancel applies; -EINPROGRESS when the commit was
 * sent (remembered as above); -EBUSY when no migration is running.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_engine_cancel(struct vmig_engine *e);

/**
 * vmig_engine_fail() - End the running migration as failed, for a reason
 * the VMM learnt outside the engine (a device's backend process died).
 * Any thread.  Honoured where a cancel is, and it goes the same way
 * (rollback on the source, discard on the destination), but the status is
 * failed and @reason is the migration's error: the source's error-desc,
 * and on a destination the ERROR it sends the source.  The first call of
 * a migration wins.
 * @e:      engine.
 * @device: the device concerned (a name given to add_device), or NULL.
 * @err:    a positive errno (ENODEV for a device gone).
 * @reason: for a person, naming the device and what happened; copied.
 *
 * Return: 0, or -EBUSY when no migration is running.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_engine_fail(struct vmig_engine *e,
                                                 const char *device, int err,
                                                 const char *reason);

/**
 * vmig_engine_recover() - Source, status UNKNOWN: ask the destination
 * again (the reconnect hook, for at most recover_timeout_ms) what became
 * of the migration, and finish it as it says.  Blocks.
 * @e: engine.
 *
 * Return: 0 when the VM runs on the destination (status completed);
 * -ECONNABORTED (or the destination's errno) when the destination
 * discarded it (the VM resumed here); -EINPROGRESS when it still cannot
 * be learnt (status UNKNOWN again); -EINVAL when no outcome is unknown.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_engine_recover(struct vmig_engine *e);

/**
 * vmig_engine_resume_source() - Source, status UNKNOWN: the operator's
 * override.  Resume the VM here although the destination may run it:
 * only for a destination known to be gone for good.
 * @e: engine.
 *
 * Return: 0 (the migration ends failed, the VM runs here); -EINVAL when
 * no outcome is unknown.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_engine_resume_source(struct vmig_engine *e);

/**
 * vmig_engine_recovery_ms() - Destination: how long a source may still
 * come back on a new connection to learn or finish the last migration
 * (the VMM keeps offering connections to vmig_engine_incoming_chan()
 * meanwhile).
 * @e: engine.
 *
 * Return: milliseconds left (at least 1), or 0 when nothing awaits a
 * recovery contact.
 */
VMIG_EXPORT unsigned int vmig_engine_recovery_ms(struct vmig_engine *e);

/**
 * vmig_engine_recovery_expire() - Destination: the recovery window is
 * over.  A VM still waiting for GO is discarded (the source cannot have
 * committed without this side's READY being answered; it learns
 * "discarded" if it asks later); a VM running here stays.
 * @e: engine.
 *
 * Return: 1 when a waiting VM was discarded, 0 otherwise.
 */
VMIG_EXPORT int vmig_engine_recovery_expire(struct vmig_engine *e);

/**
 * vmig_engine_stats() - Snapshot the current or last migration.  Any thread.
 * @e:   engine.
 * @out: receives the snapshot.
 */
VMIG_EXPORT void vmig_engine_stats(struct vmig_engine *e,
                                   struct vmig_engine_stats *out);

/**
 * vmig_engine_mixed_p2p() - QEMU's rule for several devices: with two or
 * more, every one must support P2P, because a device without it cannot be
 * told to stop initiating DMA while it runs and could write into a peer
 * whose state was already saved.  vmig_engine_migrate() refuses such a VM
 * (and vmig_engine_check() reports it) unless params.allow_mixed_p2p; a
 * VMM can ask first to word its own refusal.
 * @e:      engine.
 * @reason: receives why, naming the first device without P2P, when the
 *          rule is broken; may be NULL.
 * @len:    size of @reason.
 *
 * Return: 1 when the rule is broken (whatever allow_mixed_p2p says), 0
 * when not, or a backend's get_flags errno.
 */
VMIG_EXPORT VMIG_MUST_CHECK int vmig_engine_mixed_p2p(struct vmig_engine *e,
                                                      char *reason, size_t len);

/**
 * vmig_engine_status_name() - QMP's name: "none", "setup", "active",
 * "device", "completed", "failed", "cancelled".
 * @s: status.
 *
 * Return: a static string.
 */
VMIG_EXPORT const char *vmig_engine_status_name(enum vmig_engine_status s);

/**
 * vmig_engine_device_states() - Read every device's state into the stats
 * and return how many are not RUNNING.  For the VMM's health checks.
 * @e: engine, not migrating.
 *
 * Return: the count, or a negative errno from a backend.
 */
VMIG_EXPORT VMIG_MUST_CHECK int
vmig_engine_device_states(struct vmig_engine *e);

#endif /* VMIG_ENGINE_H */
