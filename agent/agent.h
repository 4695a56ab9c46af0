/* SPDX-License-Identifier: MIT */
/*
 * agent.h - the vmig agent's parts: the VM (guest RAM in a memfd, the vCPU
 * running the ledger program, in-process devices, the migration engine),
 * the QMP server, and the QMP client the CLI commands use.
 */
#ifndef VMIG_AGENT_H
#define VMIG_AGENT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <json-c/json.h>
#include <vmig/ctx.h>
#include <vmig/engine.h>
#include <vmig_testkit/guest.h>
#include <vmig_testkit/memdev.h>
#include <vmig/tls.h>

#define AGENT_MAX_DEV 8
#define VFU_SPEC_ARGS 6
#define VFU_MAX_EFD 16

/* One --device: a vfio-user device server to spawn or connect to. */
struct vfu_spec {
    char kind[16];    /* testdev, acc, external (socket=) */
    char name[32];    /* engine device name, matched on the destination */
    char socket[256]; /* connect here instead of spawning */
    char prog[256];   /* program to spawn; empty: found by kind */
    char peer[32];    /* flowtab: the device it forwards to by P2P */
    char args[VFU_SPEC_ARGS][64];
    unsigned int nargs;
};

struct vmig_vfu_client;
struct vmig_engine_vfu;

struct agent_vfu {
    struct vfu_spec spec;
    pid_t pid; /* spawned server, 0 when given a socket */
    struct vmig_vfu_client *c;
    struct vmig_engine_vfu *b;
    int efd[VFU_MAX_EFD];
    unsigned int nefd;
    uint64_t bar_errors; /* failed guest BAR writes */
    bool dma_log;        /* the device supports DMA logging */
    /* its server died (devwatch.c): set once, fail_reason written first */
    int failed;  /* atomic */
    int removed; /* atomic: device_del took it out of the VM */
    char fail_reason[320];
    int pidfd; /* the spawned server's pidfd, -1 without */
};

struct accwork;
struct ftwork;
struct vmig_ramdirty;

/* Exit codes of every vmig command (documented in --help). */
enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,
    EXIT_USAGE = 2,
};

/*
 * TLS on the migration channel (QMP tls-creds, tls-hostname, tls-authz,
 * x-vmig-tls-identity; docs/security.md).  Empty strings: not set.
 */
struct agent_tls {
    char creds[256];    /* x509 directory, PSK directory or keys.psk */
    char hostname[256]; /* expected destination name; "": host of the URI */
    char authz[256];    /* destination: allow-list file */
    char identity[128]; /* source with PSK: the identity to use */
    bool insecure;      /* destination: plaintext beyond loopback allowed */
    bool ktls;          /* ask for kernel TLS offload */
};

struct vm_opts {
    const char *name;
    uint64_t ram_size;
    unsigned int ndev;
    uint64_t dev_state;
    uint8_t dev_revision;
    uint64_t seed;
    uint64_t rate; /* guest steps per second */
    bool program;  /* load the guest program (source) or not (destination) */
    unsigned int nvfu;
    struct vfu_spec vfu[AGENT_MAX_DEV];
    uint64_t acc_requests; /* accelerator workload size */
};

struct qmp_server;

/*
 * The migration parameters as QMP sees them: the engine's, plus any the
 * agent keeps itself.  agent/qmp_params.c lists them; vm_params_get()
 * and vm_params_set() read and replace the whole set.
 */
struct mig_params {
    struct vmig_engine_params eng;
    struct agent_tls tls;
};

/* Where the VM's events go (QMP): the sink owns @data (NULL: none). */
typedef void agent_event_fn(void *opaque, const char *event, json_object *data);

struct agent_vm {
    vmig_ctx_t *ctx;
    struct vm_opts o;
    int memfd;
    uint8_t *ram;
    struct vmig_vcpu *vcpu;
    struct vmig_memdev *dev[AGENT_MAX_DEV];
    struct agent_vfu vfu[AGENT_MAX_DEV];
    char vfu_dir[128];  /* private 0700 directory of spawned servers' sockets */
    uint64_t prog_size; /* guest RAM of the ledger program (the rest: acc) */
    struct accwork *acc; /* the accelerator workload's views (vCPU thread) */
    bool acc_started;
    struct ftwork *ft; /* the flowtab workloads' views (vCPU thread) */
    struct vmig_engine_vm_ops hooks; /* borrowed by the engine */
    /* guest RAM dirty tracking during precopy (migration thread only):
     * false when a vfio-user device cannot log its DMA, so RAM moves at
     * stop-copy (docs/agent.md, "Precopy") */
    bool ram_precopy;
    struct vmig_ramdirty *rd;
    struct vmig_engine *eng;
    agent_event_fn *emit; /* set before the VM runs; NULL: no events */
    void *emit_opaque;

    pthread_mutex_t lock; /* guards the fields below */
    const char *runstate; /* QEMU RunState names */
    bool migrating;       /* a migration thread is live */
    bool migrated_out;    /* completed outgoing: the VM lives elsewhere */
    bool incoming_armed;  /* listening for an incoming migration */
    pthread_t thread;
    bool thread_joinable;
    int listen_fd;
    char uri[128];
    char connect_error[600]; /* the last migrate failed before the engine */
    /* the migration as management sees it (events.c): QEMU's status */
    const char *mig_status;
    bool cancel_requested;   /* migrate_cancel for the running migration */
    struct agent_tls tls;    /* TLS settings (in struct mig_params) */
    struct vmig_tls *in_tls; /* destination: credentials while listening */
    int hs_cancel;           /* atomic: cancel an outgoing TLS handshake */
    int in_cancel;           /* atomic: quitting: stop incoming handshakes */
    bool chan_valid;         /* chan: the last migration's channel */
    struct vmig_chan_info chan;
    /* destination receiving: who from, and the thread that refuses a
     * second source meanwhile (inbusy.c; the incoming thread only) */
    char in_peer[96];
    pthread_t busy_th;
    int busy_wake[2];
    bool busy_on;
    /* device server deaths (devwatch.c) */
    pthread_t devwatch;
    bool devwatch_running;
    int devwatch_quit; /* atomic */
};

/* inbusy.c: while the incoming thread runs the engine, refuse other
 * sources at once ("destination busy"); @peer is the one being received */
void inbusy_start(struct agent_vm *vm, const char *peer);
void inbusy_stop(struct agent_vm *vm);
/* inbusy.c: "host:port" of a peer address */
void agent_peer_str(const struct sockaddr_storage *ss, socklen_t len, char *out,
                    size_t outlen);

/* tlsconf.c */
bool agent_tls_enabled(const struct agent_tls *cfg);
/* Credentials for @ep from @cfg (*@out NULL when TLS is off); @host is
 * the expected server name when cfg->hostname is empty. */
int agent_tls_make(const struct agent_tls *cfg, vmig_ctx_t *ctx,
                   enum vmig_tls_endpoint ep, const char *host,
                   struct vmig_tls **out, char *err, size_t errlen);
/* tls-creds @creds names credentials of a kind we know ("" is none). */
int agent_tls_check_creds(const char *creds, char *err, size_t errlen);
/* May a destination listen on address @sa as @cfg says?  Plaintext
 * beyond loopback only with cfg->insecure. */
struct sockaddr;
int agent_tls_listen_ok(const struct agent_tls *cfg, const struct sockaddr *sa,
                        const char *where, char *err, size_t errlen);

/* vm.c */
int vm_create(struct agent_vm *vm, const struct vm_opts *o, vmig_ctx_t *ctx);
void vm_destroy(struct agent_vm *vm);
int vm_start_incoming(struct agent_vm *vm, const char *uri, char *err,
                      size_t errlen);
int vm_check(struct agent_vm *vm, const char *uri,
             struct vmig_engine_check *out, char *err, size_t errlen);
void vm_reap(struct agent_vm *vm);
/* The last migration channel: false when none yet. */
bool vm_chan_info(struct agent_vm *vm, struct vmig_chan_info *out);
bool vm_connect_error(struct agent_vm *vm, char *buf, size_t len);
const char *vm_runstate(struct agent_vm *vm);
int vm_parse_tcp(const char *uri, char *host, size_t hostlen, int *port);
int vm_guest_report(struct agent_vm *vm, uint64_t *steps, char *why,
                    size_t whylen, json_object **acc, json_object **ft);
/* Steps the guest program runs before it has finished (0: no program). */
uint64_t vm_guest_capacity(struct agent_vm *vm);
/* x-vmig-device-reset: reset vfio-user device @name now. */
/* device_del: take vfio-user device @name out of the VM (its server is
 * stopped); later migrations carry the others. */
int vm_device_del(struct agent_vm *vm, const char *name, char *err,
                  size_t errlen);
int vm_device_reset(struct agent_vm *vm, const char *name, char *err,
                    size_t errlen);
/* migrate_cancel: 1 when a running migration (or its TLS handshake) was
 * told to stop (status "cancelling"), 0 when none runs. */
int vm_cancel(struct agent_vm *vm);
/* x-vmig-migrate-recover: the last outgoing migration's outcome is
 * unknown (postmigrate-unknown): ask the destination again (in the
 * background), or with @destination_gone resume the VM here. */
int vm_recover(struct agent_vm *vm, bool destination_gone, char *err,
               size_t errlen);
void vm_params_get(struct agent_vm *vm, struct mig_params *p);
void vm_params_set(struct agent_vm *vm, const struct mig_params *p);
/* migrate: start an outgoing migration to @uri with parameters @p (NULL:
 * the current ones), which become the current ones; when it cannot
 * start, nothing changed (the parameters neither). */
int vm_migrate(struct agent_vm *vm, const char *uri, const struct mig_params *p,
               char *err, size_t errlen);

/* vfudev.c */
int vfudev_parse(const char *spec, struct vfu_spec *out, unsigned int idx);
/* Every peer= names another flowtab device of @specs; else -EINVAL and
 * @err says which. */
int vfudev_check_peers(const struct vfu_spec *specs, unsigned int n, char *err,
                       size_t errlen);
/* Spawn/connect every --device, map RAM, wire IRQs, probe DMA logging. */
int vfudev_up(struct agent_vm *vm);
/* Add them to the engine (after vfudev_up()). */
int vfudev_add(struct agent_vm *vm);
struct agent_vfu *vfudev_find(struct agent_vm *vm, const char *name);
void vfudev_down(struct agent_vm *vm);
int vfudev_guest_work(struct agent_vm *vm, uint64_t steps);
json_object *vfudev_describe(struct agent_vm *vm, unsigned int i);

/* devwatch.c: a device server's death, noticed within a second */
int devwatch_start(struct agent_vm *vm);
void devwatch_stop(struct agent_vm *vm);
/* Its server died (any thread). */
bool vfudev_failed(struct agent_vfu *d);
/* The index of the first failed device (its reason, and what to do, in
 * @why), or -1. */
int vm_failed_device(struct agent_vm *vm, char *why, size_t len);

/* events.c: the VM's events, and its migration status in QEMU's terms
 * (vm->lock guards it) */
void vm_emit(struct agent_vm *vm, const char *event, json_object *data);
void vm_mig_status_set(struct agent_vm *vm, const char *status);
void vm_mig_status_set_locked(struct agent_vm *vm, const char *status);
/* The engine reports status @s: the QMP status it means, if news. */
void vm_mig_status_engine(struct agent_vm *vm, enum vmig_engine_status s);
/* The current one: "none" before any migration. */
const char *vm_mig_status(struct agent_vm *vm);

/* rundir.c: the private directory of the device servers' sockets */
/* Create $TMPDIR/vmig-dev-<pid>-XXXXXX (0700) into @out. */
int rundir_create(char *out, size_t len);
/* Remove such directories of ours whose agent is gone; returns how many. */
int rundir_clean_stale(vmig_ctx_t *ctx);
/* Remove the directory @path and what is in it (a killed server's
 * leftover sockets too). */
int rundir_remove(const char *path);
/* Start the watcher that removes @dir once this agent is gone, even by
 * SIGKILL; rundir_reaper_main() is that process (vmig RUNDIR_REAPER_CMD
 * FD DIR, not a user command). */
#define RUNDIR_REAPER_CMD "x-rundir-reaper"
int rundir_watch(const char *dir);
int rundir_reaper_main(int argc, char **argv);

/* guestmap.c: the guest RAM layout of the guest programs */
#define GUESTMAP_FT_SLOT (256u << 10) /* guest RAM per flowtab device */
/* The ledger program's RAM from 0 (0 when nothing is left for it). */
uint64_t guestmap_prog_size(const struct vm_opts *o);
unsigned int guestmap_ft_count(const struct vm_opts *o);
/* Guest address of flowtab device @i's slot (i counts flowtabs only). */
uint64_t guestmap_ft_slot(const struct vm_opts *o, unsigned int i);
/* Guest addresses of the accelerator's driver area and workload. */
uint64_t guestmap_acc_drv(const struct vm_opts *o);
uint64_t guestmap_acc_work(const struct vm_opts *o);

/* accwork.c */
int accwork_new(struct agent_vm *vm);
void accwork_free(struct agent_vm *vm);
int accwork_step(struct agent_vm *vm);
/* The workload's counters and verdict from guest RAM (vCPU paused);
 * NULL without an accelerator; *verdict < 0 on a discrepancy. */
json_object *accwork_report(struct agent_vm *vm, int *verdict);

/* ftwork.c: the guest's traffic on each flowtab device */
int ftwork_new(struct agent_vm *vm);
void ftwork_free(struct agent_vm *vm);
int ftwork_step(struct agent_vm *vm);
/* Counters and verdict per flowtab from guest RAM (vCPU paused); NULL
 * without one; *verdict < 0 on a wrong completion. */
json_object *ftwork_report(struct agent_vm *vm, int *verdict);

/* qmp.c: the QMP server */
int qmp_server_new(struct agent_vm *vm, const char *path,
                   struct qmp_server **out);
void qmp_server_free(struct qmp_server *s);
/* Run until quit; exits early (0) after an outgoing migration completed
 * and no client is connected. */
int qmp_server_run(struct qmp_server *s);
/* An event to every negotiated client (agent_event_fn; any thread). */
void qmp_emit(void *server, const char *event, json_object *data);

/* qmp_params.c */
/* Check migration parameters (migrate-set-parameters arguments) and apply
 * them; on error nothing changes and @err names the parameter. */
int qmp_params_apply(struct agent_vm *vm, json_object *args, char *err,
                     size_t errlen);

/* qmp_conn.c: CLOCK_MONOTONIC in ms, the one clock of the QMP server and
 * client (deadlines, timeouts). */
uint64_t qmp_now_ms(void);

/* client.c */
struct qmp_client;
int qmpc_connect(const char *path, unsigned int timeout_ms,
                 struct qmp_client **out);
/* Connect, negotiate (with "oob" if @oob); on failure @err says why in
 * words, the agent's own reason when it gave one. */
int qmpc_open(const char *path, unsigned int timeout_ms, bool oob,
              struct qmp_client **out, char *err, size_t errlen);
void qmpc_close(struct qmp_client *c);
/* How long each later reply may take (the one given to qmpc_open() until
 * then); a reply that does not come in time loses the connection. */
void qmpc_set_timeout(struct qmp_client *c, unsigned int timeout_ms);
/* Execute; *ret gets the "return" value (owned by caller) or NULL and
 * *err the error desc.  Events seen meanwhile go to the event callback. */
int qmpc_exec(struct qmp_client *c, const char *cmd, json_object *args,
              json_object **ret, char *err, size_t errlen);
/* The same out of band ("exec-oob"; the client must have opened with
 * @oob). */
int qmpc_exec_oob(struct qmp_client *c, const char *cmd, json_object *args,
                  json_object **ret, char *err, size_t errlen);
void qmpc_on_event(struct qmp_client *c,
                   void (*fn)(void *opaque, json_object *ev), void *opaque);
/* Wait up to @ms for events (dispatching them). */
int qmpc_poll_events(struct qmp_client *c, unsigned int ms);

int cmd_migrate_follow(struct qmp_client *c, bool tty, bool json_out);

#endif /* VMIG_AGENT_H */
