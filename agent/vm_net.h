/* SPDX-License-Identifier: MIT */
/*
 * vm_net.h - what vm_net.c (the migration channels) gives vm_mig.c (the
 * migrations).  Private to the agent program.
 */
#ifndef VMIG_AGENT_VM_NET_H
#define VMIG_AGENT_VM_NET_H

#include <stddef.h>
#include <vmig/engine_chan.h>
#include <vmig/tls.h>
#include "agent.h"

/* A listening socket on @uri (tcp:HOST:PORT); <0 with @err on failure. */
int vm_tcp_listen(const char *uri, const struct agent_tls *cfg, char *err,
                  size_t errlen);
/* Remember @ch's parameters for query-migrate. */
void vm_note_chan(struct agent_vm *vm, const struct vmig_chan *ch);
/* Log how @ch is protected (@what @where: ...). */
void vm_log_chan(struct agent_vm *vm, const struct vmig_chan *ch,
                 const char *what, const char *where);
/* Connect to @uri and make the migration channel (TLS or plaintext). */
int vm_open_channel(struct agent_vm *vm, const char *uri, const int *stop,
                    int *fdp, struct vmig_chan **ch, char *err, size_t errlen);

/* The engine's extra connections (multifd-channels), both roles; the
 * opaque pointer is the VM. */
extern const struct vmig_engine_chan_ops vm_chan_ops;

#endif
