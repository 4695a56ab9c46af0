/* SPDX-License-Identifier: MIT */
/*
 * engine_src_recover.c - what the operator can do with a source whose
 * migration's outcome is unknown (status UNKNOWN: GO was sent, the
 * destination's answer lost and asking again failed): ask again
 * (vmig_engine_recover()) and finish the migration as the destination
 * says, or, knowing the destination is gone for good, resume the VM here
 * (vmig_engine_resume_source()).
 */
#include <errno.h>
#include <stdio.h>
#include <vmig/engine.h>
#include "engine_priv.h"
#include "engine_src_state.h"
#include "internal.h"

/* Take the parked source, or NULL when no outcome is unknown. */
static struct eng_src *
src_unpark(struct vmig_engine *e)
{
    struct eng_src *s;

    pthread_mutex_lock(&e->lock);
    s = e->rec.src;
    e->rec.src = NULL;
    if (s != NULL) {
        e->st.error[0] = '\0';
    }
    pthread_mutex_unlock(&e->lock);
    return s;
}

int
vmig_engine_recover(struct vmig_engine *e)
{
    struct eng_src *s = src_unpark(e);
    int ret;

    if (s == NULL) {
        return -EINVAL;
    }
    vmig_engine_get_params(e, &s->p);
    ret = vmig__src_recover(s);
    if (ret == -EINPROGRESS) {
        vmig__src_park(s);
        return ret;
    }
    if (ret == 0) {
        vmig__src_finish(s, NULL);
    } else {
        ret = vmig__src_rollback(s, ret);
    }
    vmig__src_free(s);
    vmig__engine_end(e, ret);
    return ret;
}

int
vmig_engine_resume_source(struct vmig_engine *e)
{
    struct eng_src *s = src_unpark(e);

    if (s == NULL) {
        return -EINVAL;
    }
    vmig_warn(e->ctx,
              "migration: resuming the VM here by the operator's override "
              "although the destination may have run it (migration "
              "%016llx): the destination must not run it",
              (unsigned long long)s->mig_id);
    vmig__engine_set_error(e,
                           "resumed on the source by the operator's override "
                           "(destination gone); migration %016llx",
                           (unsigned long long)s->mig_id);
    s->dst_discarded = true;
    vmig__src_resume_here(s);
    vmig__src_free(s);
    vmig__engine_end(e, -EHOSTUNREACH);
    return 0;
}
