/* SPDX-License-Identifier: MIT */
/*
 * version.h - the library's version.
 */
#ifndef VMIG_VERSION_H
#define VMIG_VERSION_H

#include <vmig/export.h>

#define VMIG_VERSION_MAJOR 0
#define VMIG_VERSION_MINOR 1
#define VMIG_VERSION_PATCH 0
#define VMIG_VERSION_STRING "0.1.0"

/**
 * vmig_version() - The version of the library actually loaded.
 *
 * Return: a static string such as "0.1.0".
 */
VMIG_EXPORT const char *vmig_version(void);

#endif /* VMIG_VERSION_H */
