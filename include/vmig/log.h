/* SPDX-License-Identifier: MIT */
/*
 * log.h - logging levels and the sink type shared by every vmig object.
 *
 * The library never writes to stderr by itself.  Each context carries a
 * sink and a level; levels use the syslog numbers (libvfio-user does the
 * same), so a program can forward messages to syslog unchanged.
 */
#ifndef VMIG_LOG_H
#define VMIG_LOG_H

#include <vmig/export.h>

enum {
    VMIG_LOG_ERR = 3,
    VMIG_LOG_WARNING = 4,
    VMIG_LOG_NOTICE = 5,
    VMIG_LOG_INFO = 6,
    VMIG_LOG_DEBUG = 7,
};

/**
 * vmig_log_fn - a log sink.
 * @opaque: the pointer given with the sink.
 * @level:  one of VMIG_LOG_*.
 * @msg:    the formatted message, without a trailing newline.  Only valid
 *          for the duration of the call.
 */
typedef void vmig_log_fn(void *opaque, int level, const char *msg);

/**
 * vmig_log_stderr() - a ready-made sink that prints "vmig: <level>: msg".
 * @opaque: ignored.
 * @level:  message level.
 * @msg:    message text.
 *
 * Programs install it; the library itself never does.
 */
VMIG_EXPORT void vmig_log_stderr(void *opaque, int level, const char *msg);

/**
 * vmig_log_level_name() - "err", "warning", "info", "debug", ...
 * @level: a VMIG_LOG_* value.
 *
 * Return: a static string; "log" for unknown levels.
 */
VMIG_EXPORT const char *vmig_log_level_name(int level);

#endif /* VMIG_LOG_H */
