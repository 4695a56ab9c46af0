/* SPDX-License-Identifier: MIT */
/*
 * vfu_irq.c - the device's interrupts: IRQ indexes with vectors, the
 * eventfds the client wires to them (DEVICE_SET_IRQS), masking, and
 * triggering from any thread.
 *
 * irqs.lock guards every vector's eventfd, mask and pending bits.  A
 * vector triggered while masked or not wired is remembered as pending
 * and fires when it is unmasked.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include "vfu_srv.h"

void
vmig__vfu_irqs_init(struct vfu_irqs *q)
{
    pthread_mutex_init(&q->lock, NULL);
}

int
vmig_vfu_server_add_irq(struct vmig_vfu_server *s, unsigned int index,
                        unsigned int count)
{
    struct vfu_irq *q;

    if (index >= VMIG_VFU_MAX_IRQS || count == 0 ||
        count > VMIG_VFU_MAX_IRQ_COUNT) {
        return -EINVAL;
    }
    q = &s->irqs.q[index];
    if (q->count != 0) {
        return -EEXIST;
    }
    q->efd = malloc(sizeof(int) * count);
    q->masked = calloc(count, 1);
    q->pending = calloc(count, 1);
    if (q->efd == NULL || q->masked == NULL || q->pending == NULL) {
        free(q->efd);
        free(q->masked);
        free(q->pending);
        memset(q, 0, sizeof(*q));
        return -ENOMEM;
    }
    for (unsigned int i = 0; i < count; i++) {
        q->efd[i] = -1;
    }
    q->count = count;
    if (index + 1 > s->irqs.n) {
        s->irqs.n = index + 1;
    }
    return 0;
}

/* The client left: close its eventfds, clear masks and pending bits. */
void
vmig__vfu_irqs_disconnect(struct vfu_irqs *irqs)
{
    pthread_mutex_lock(&irqs->lock);
    for (unsigned int i = 0; i < irqs->n; i++) {
        struct vfu_irq *q = &irqs->q[i];

        for (unsigned int j = 0; j < q->count; j++) {
            if (q->efd[j] >= 0) {
                close(q->efd[j]);
                q->efd[j] = -1;
            }
            q->masked[j] = 0;
            q->pending[j] = 0;
        }
    }
    pthread_mutex_unlock(&irqs->lock);
}

void
vmig__vfu_irqs_free(struct vfu_irqs *irqs)
{
    for (unsigned int i = 0; i < VMIG_VFU_MAX_IRQS; i++) {
        free(irqs->q[i].efd);
        free(irqs->q[i].masked);
        free(irqs->q[i].pending);
    }
    pthread_mutex_destroy(&irqs->lock);
}

int
vmig_vfu_irq_trigger(struct vmig_vfu_server *s, unsigned int index,
                     unsigned int sub)
{
    uint64_t one = 1;
    int ret = 0;
    struct vfu_irq *q;

    if (index >= s->irqs.n || sub >= s->irqs.q[index].count) {
        return -EINVAL;
    }
    q = &s->irqs.q[index];
    pthread_mutex_lock(&s->irqs.lock);
    if (q->masked[sub] || q->efd[sub] < 0) {
        q->pending[sub] = 1;
        ret = -EAGAIN;
    } else if (write(q->efd[sub], &one, sizeof(one)) != sizeof(one)) {
        ret = -errno;
    }
    pthread_mutex_unlock(&s->irqs.lock);
    return ret;
}

int
vmig__vfu_h_irq_info(struct vmig_vfu_server *s, struct vfu_req *r,
                     struct vfu_reply *rep)
{
    struct vmig_vfu_irq_info ii;
    uint32_t index = vmig__rd32(r->m->payload, 8);

    if (index >= s->irqs.n) {
        return -EINVAL;
    }
    memset(&ii, 0, sizeof(ii));
    ii.argsz = sizeof(ii);
    ii.index = index;
    ii.count = s->irqs.q[index].count;
    if (ii.count > 0) {
        ii.flags = VMIG_VFU_IRQ_INFO_EVENTFD | VMIG_VFU_IRQ_INFO_MASKABLE |
                   VMIG_VFU_IRQ_INFO_NORESIZE;
    }
    vmig__vfu_rep_inline(rep, &ii, sizeof(ii), NULL, 0);
    return 0;
}

static void
irq_fire_locked(struct vfu_irq *q, unsigned int i)
{
    uint64_t one = 1;

    if (q->efd[i] >= 0 && !q->masked[i]) {
        (void)!write(q->efd[i], &one, sizeof(one));
        q->pending[i] = 0;
    } else {
        q->pending[i] = 1;
    }
}

/* ACTION_MASK / UNMASK / TRIGGER on vectors, with DATA_NONE or BOOL. */
static void
irq_action_locked(struct vfu_irq *q, const struct vmig_vfu_irq_set *is,
                  const uint8_t *bools)
{
    for (unsigned int i = 0; i < is->count; i++) {
        unsigned int v = is->start + i;

        if ((is->flags & VMIG_VFU_IRQ_DATA_BOOL) && !bools[i]) {
            continue;
        }
        if (is->flags & VMIG_VFU_IRQ_ACTION_MASK) {
            q->masked[v] = 1;
        } else if (is->flags & VMIG_VFU_IRQ_ACTION_UNMASK) {
            q->masked[v] = 0;
            if (q->pending[v]) {
                irq_fire_locked(q, v);
            }
        } else {
            irq_fire_locked(q, v);
        }
    }
}

int
vmig__vfu_h_set_irqs(struct vmig_vfu_server *s, struct vfu_req *r,
                     struct vfu_reply *rep)
{
    struct vmig_vfu_irq_set is;
    const uint8_t *bools;
    struct vfu_irq *q;
    int ret = 0;

    (void)rep;
    memcpy(&is, r->m->payload, sizeof(is));
    bools = r->m->payload + sizeof(is);
    if (is.index >= s->irqs.n || s->irqs.q[is.index].count == 0) {
        return -EINVAL;
    }
    q = &s->irqs.q[is.index];
    /* start + count cannot overflow: both are bounded by the decoder. */
    if (is.start + is.count > q->count) {
        return -EINVAL;
    }
    pthread_mutex_lock(&s->irqs.lock);
    if ((is.flags & VMIG_VFU_IRQ_DATA_NONE) && is.count == 0 &&
        (is.flags & VMIG_VFU_IRQ_ACTION_TRIGGER)) {
        /* "count (and start) of 0 with DATA_NONE disables all" */
        for (unsigned int i = 0; i < q->count; i++) {
            if (q->efd[i] >= 0) {
                close(q->efd[i]);
                q->efd[i] = -1;
            }
        }
    } else if (is.flags & VMIG_VFU_IRQ_DATA_EVENTFD) {
        if (!(is.flags & VMIG_VFU_IRQ_ACTION_TRIGGER)) {
            ret = -EINVAL;
        }
        for (unsigned int i = 0; ret == 0 && i < is.count; i++) {
            unsigned int v = is.start + i;

            if (q->efd[v] >= 0) {
                close(q->efd[v]);
                q->efd[v] = -1;
            }
            if (r->m->nfds > 0) {
                q->efd[v] = r->raw->fds[i];
                r->raw->fds[i] = -1; /* kept */
            }
        }
    } else {
        irq_action_locked(q, &is, bools);
    }
    pthread_mutex_unlock(&s->irqs.lock);
    return ret;
}
