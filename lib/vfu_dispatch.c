/* SPDX-License-Identifier: MIT */
/*
 * vfu_dispatch.c - one received message, one reply.
 *
 * Each message is decoded by proto.c (sizes, counts, flags), then
 * dispatched through cmd_table: the descriptor gives the payload bytes
 * the handler reads and the migration states the command is legal in;
 * the handler fills a reply.  Handlers validate everything that depends
 * on device configuration (indexes, bounds) before touching anything, so
 * a refused message changes nothing.  Refusals are logged at DEBUG by the
 * handler and summarised here at ERR, rate-limited, and a client that is
 * refused VFU_MAX_ERRS_IN_ROW times in a row is disconnected.
 */
#include <errno.h>
#include <unistd.h>
#include "vfu_srv.h"

/* Consecutive refused messages before a client is disconnected. */
#define VFU_MAX_ERRS_IN_ROW 64

#define IN(st) (1u << VMIG_STATE_##st)
#define ALL_STATES 0xffu
/* Region access is refused while the device state must not change. */
#define ACCESS_STATES                                                          \
    (IN(STOP) | IN(RUNNING) | IN(RUNNING_P2P) | IN(PRE_COPY) | IN(PRE_COPY_P2P))
#define SAVING_STATES (IN(PRE_COPY) | IN(PRE_COPY_P2P) | IN(STOP_COPY))

struct cmd_desc {
    const char *name;
    size_t min_len;  /* payload bytes the handler reads unconditionally */
    uint32_t states; /* bit per enum vmig_state it is legal in */
    vfu_handler_fn handle;
    /* optional: the errno for a state refusal (default -EBUSY) */
    int (*refuse)(struct vmig_vfu_server *s);
};

static int
h_version(struct vmig_vfu_server *s, struct vfu_req *r, struct vfu_reply *rep)
{
    struct vmig_vfu_version v;
    struct vmig_vfu_caps peer, mine;
    const struct vmig_vfu_msg *m = r->m;
    size_t jlen = m->len - sizeof(v);
    int ret, n;

    if (s->conn.negotiated) {
        vmig_dbg(s->ctx, "vfu: msg %#x: VERSION sent twice", m->hdr.id);
        return -EBUSY;
    }
    memcpy(&v, m->payload, sizeof(v));
    if (v.major != VMIG_VFU_MAJOR) {
        vmig_err(s->ctx,
                 "vfu: client speaks protocol %u.%u, this server %u.%u; "
                 "use a client of the same major version",
                 v.major, v.minor, VMIG_VFU_MAJOR, VMIG_VFU_MINOR);
        return -EOPNOTSUPP;
    }
    /* The JSON is NUL-terminated (checked by the decoder). */
    ret = vmig_vfu_caps_parse(jlen > 0 ? (const char *)m->payload + sizeof(v)
                                       : NULL,
                              jlen > 0 ? jlen - 1 : 0, &peer);
    if (ret < 0) {
        vmig_dbg(s->ctx, "vfu: msg %#x: bad VERSION capabilities", m->hdr.id);
        return ret;
    }
    if (v.minor > VMIG_VFU_MINOR) {
        v.minor = VMIG_VFU_MINOR;
    }
    vmig_vfu_caps_default(&mine);
    mine.max_msg_fds = VMIG_VFU_MAX_FDS;
    mine.max_data_xfer_size = s->conn.xfer_in;
    mine.max_dma_maps = VMIG_VFU_MAX_DMA_MAPS;
    mine.pgsizes = 4096;
    mine.write_multiple = true;
    mine.ext = peer.ext & VMIG_VFU_EXT_BULK_DATA;
    if (s->mig.dev != NULL &&
        (vmig_dev_caps(s->mig.dev) & VMIG_DEV_CAP_PRECOPY_INFO)) {
        mine.ext |= peer.ext & VMIG_VFU_EXT_PRECOPY_INFO;
    }
    n = vmig_vfu_caps_format(&mine, rep->json, sizeof(rep->json));
    if (n < 0) {
        return n;
    }
    s->conn.peer = peer;
    s->conn.ext = mine.ext;
    s->conn.xfer_out = peer.max_data_xfer_size < VMIG_VFU_MAX_DATA_XFER
                           ? peer.max_data_xfer_size
                           : VMIG_VFU_MAX_DATA_XFER;
    s->conn.negotiated = true;
    vmig_info(s->ctx,
              "vfu: client speaks %u.%u, max transfer %u, extensions %#x%s",
              v.major, v.minor, peer.max_data_xfer_size, s->conn.ext,
              peer.legacy_migration ? " (legacy migration cap ignored)" : "");
    vmig__vfu_rep_inline(rep, &v, sizeof(v), NULL, 0);
    rep->p2 = rep->json;
    rep->l2 = (size_t)n + 1;
    return 0;
}

static int
h_get_info(struct vmig_vfu_server *s, struct vfu_req *r, struct vfu_reply *rep)
{
    struct vmig_vfu_device_info di;

    (void)r;
    di.argsz = sizeof(di);
    di.flags = VMIG_VFU_DEV_PCI | VMIG_VFU_DEV_RESET;
    di.num_regions = s->regions.n;
    di.num_irqs = s->irqs.n;
    vmig__vfu_rep_inline(rep, &di, sizeof(di), NULL, 0);
    return 0;
}

/* DEVICE_RESET is the VMM's: a host reset; a device without migration
 * has nothing to reset. */
static int
h_reset(struct vmig_vfu_server *s, struct vfu_req *r, struct vfu_reply *rep)
{
    (void)r;
    (void)rep;
    if (s->mig.dev != NULL) {
        vmig_dev_reset(s->mig.dev, VMIG_RESET_HOST);
    }
    return 0;
}

/* clang-format off */
static const struct cmd_desc cmd_table[VMIG_VFU_CMD__COUNT] = {
#define C(cmd, len, states, fn, refuse)                                        \
    [VMIG_VFU_CMD_##cmd] = {#cmd, len, states, fn, refuse}
    C(VERSION,                  4, ALL_STATES, h_version, NULL),
    C(DMA_MAP,                  32, ALL_STATES, vmig__vfu_h_dma_map, NULL),
    C(DMA_UNMAP,                24, ALL_STATES, vmig__vfu_h_dma_unmap, NULL),
    C(DEVICE_GET_INFO,          16, ALL_STATES, h_get_info, NULL),
    C(DEVICE_GET_REGION_INFO,   32, ALL_STATES, vmig__vfu_h_region_info,
      NULL),
    C(DEVICE_GET_REGION_IO_FDS, 16, ALL_STATES, vmig__vfu_h_region_io_fds,
      NULL),
    C(DEVICE_GET_IRQ_INFO,      16, ALL_STATES, vmig__vfu_h_irq_info, NULL),
    C(DEVICE_SET_IRQS,          20, ALL_STATES, vmig__vfu_h_set_irqs, NULL),
    C(REGION_READ,              16, ACCESS_STATES, vmig__vfu_h_region_read,
      NULL),
    C(REGION_WRITE,             16, ACCESS_STATES, vmig__vfu_h_region_write,
      NULL),
    C(DEVICE_RESET,             0, ALL_STATES, h_reset, NULL),
    C(REGION_WRITE_MULTI,       8, ACCESS_STATES, vmig__vfu_h_write_multi,
      NULL),
    C(DEVICE_FEATURE,           8, ALL_STATES, vmig__vfu_h_feature, NULL),
    C(MIG_DATA_READ,            8, SAVING_STATES, vmig__vfu_h_mig_read,
      vmig__vfu_refuse_save),
    C(MIG_DATA_WRITE,           8, IN(RESUMING), vmig__vfu_h_mig_write,
      vmig__vfu_refuse_resume),
#undef C
};
/* clang-format on */

/* Log a refusal: the first of a run, then every 16th. */
static void
count_refusal(struct vmig_vfu_server *s, const struct vmig_vfu_hdr *h, int ret,
              bool state_refused, enum vmig_state st)
{
    if (ret < 0) {
        s->conn.errs_in_row++;
        if (s->conn.errs_in_row == 1 || s->conn.errs_in_row % 16 == 0) {
            vmig_err(s->ctx, "vfu: msg %#x: %s refused: %s%s%s (%u in a row)",
                     h->id, vmig_vfu_cmd_name(h->cmd), strerror(-ret),
                     state_refused ? "; not allowed in " : "",
                     state_refused ? vmig_state_name(st) : "",
                     s->conn.errs_in_row);
        }
    } else {
        s->conn.errs_in_row = 0;
    }
}

/* Send the reply to a command (none for NO_REPLY or non-commands). */
static void
reply(struct vmig_vfu_server *s, const struct vmig_vfu_hdr *h, int ret,
      struct vfu_reply *rep)
{
    struct vmig_vfu_hdr o = {
        .id = h->id, .cmd = h->cmd, .flags = VMIG_VFU_F_TYPE_REPLY};
    int sret;

    if ((h->flags & VMIG_VFU_F_NO_REPLY) ||
        (h->flags & VMIG_VFU_F_TYPE_MASK) != VMIG_VFU_F_TYPE_COMMAND) {
        return;
    }
    if (ret < 0) {
        o.flags |= VMIG_VFU_F_ERROR;
        o.error = (uint32_t)-ret;
        sret = vmig__vfu_send(s, &o, NULL, 0, NULL, 0, NULL, 0);
    } else {
        sret = vmig__vfu_send(s, &o, rep->p1, rep->l1, rep->p2, rep->l2,
                              rep->fds, rep->nfds);
    }
    if (sret < 0) {
        rep->disconnect = true;
    }
}

int
vmig__vfu_handle(struct vmig_vfu_server *s, struct vmig__tran_msg *raw)
{
    const struct vmig_vfu_limits lim = {s->conn.xfer_in, VMIG_VFU_MAX_FDS};
    struct vfu_reply rep = {0};
    struct vmig_vfu_hdr h;
    struct vmig_vfu_msg m;
    enum vmig_vfu_perr why;
    const struct cmd_desc *d;
    struct vfu_req r = {.m = &m, .raw = raw};
    enum vmig_state st = VMIG_STATE_RUNNING;
    bool state_refused = false;
    int ret;

    memcpy(&h, raw->buf, sizeof(h));
    ret = vmig_vfu_decode(raw->buf, raw->len, raw->nfds, &lim, &m, &why);
    if (ret == 0 &&
        (m.hdr.flags & VMIG_VFU_F_TYPE_MASK) == VMIG_VFU_F_TYPE_REPLY) {
        vmig__vfu_route_reply(s, raw, m.hdr.id);
        return 0;
    }
    if (ret < 0) {
        vmig_dbg(s->ctx, "vfu: msg %#x: %s: %s", h.id, vmig_vfu_cmd_name(h.cmd),
                 vmig_vfu_perr_name(why));
        goto reply;
    }
    d = &cmd_table[m.hdr.cmd];
    if (d->handle == NULL) {
        /* DMA_READ/WRITE go server to client only. */
        ret = -EINVAL;
        goto reply;
    }
    /* The decoder checked the layout already; this guards the handler's
     * own assumption (VMIG_NEVER: a mismatch is our bug). */
    if (VMIG_NEVER(m.len < d->min_len)) {
        ret = -EPROTO;
        goto reply;
    }
    if (!s->conn.negotiated && m.hdr.cmd != VMIG_VFU_CMD_VERSION) {
        vmig_dbg(s->ctx, "vfu: msg %#x: %s before VERSION", h.id,
                 vmig_vfu_cmd_name(h.cmd));
        ret = -EPROTO;
        goto reply;
    }
    st = vmig_vfu_server_state(s);
    if (!(d->states & (1u << st))) {
        ret = d->refuse != NULL ? d->refuse(s) : -EBUSY;
        state_refused = true;
        vmig_dbg(s->ctx, "vfu: msg %#x: %s not allowed in %s", h.id, d->name,
                 vmig_state_name(st));
        goto reply;
    }
    ret = d->handle(s, &r, &rep);

reply:
    count_refusal(s, &h, ret, state_refused, st);
    reply(s, &h, ret, &rep);
    /* An fd we created for the client (the bulk channel) is its own now,
     * or lost with the reply. */
    for (unsigned int i = 0; rep.fds_owned && i < rep.nfds; i++) {
        close(rep.fds[i]);
    }
    if (rep.disconnect || s->conn.errs_in_row >= VFU_MAX_ERRS_IN_ROW) {
        return -ECONNRESET;
    }
    return 0;
}
