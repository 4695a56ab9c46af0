/* SPDX-License-Identifier: MIT */
/*
 * vmig-fsm - explore the VFIO migration state machine from the shell.
 *
 *   vmig-fsm table [--flags F]     next-step table and every path
 *   vmig-fsm path FROM TO [--flags F]
 *   vmig-fsm v1 WORD               decode a legacy v1 device_state word
 *   vmig-fsm flags WORD            validate a migration-flags word
 *
 * Exit codes: 0 success, 1 the query was answered "no" (no such path,
 * invalid word), 2 usage error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <vmig/fsm.h>

#define EXIT_NO 1
#define EXIT_USAGE 2

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: vmig-fsm table [--flags F]\n"
            "       vmig-fsm path FROM TO [--flags F]\n"
            "       vmig-fsm v1 WORD\n"
            "       vmig-fsm flags WORD\n"
            "\n"
            "F is a number (7) or names joined by '|' or ','\n"
            "(STOP_COPY|P2P|PRE_COPY); default STOP_COPY|P2P|PRE_COPY.\n"
            "States: STOP RUNNING STOP_COPY RESUMING RUNNING_P2P PRE_COPY\n"
            "PRE_COPY_P2P (case-insensitive, '-' or '_').\n"
            "Exit: 0 ok, 1 answered no (no path, invalid word), 2 usage.\n");
}

static int
parse_number(const char *s, unsigned long long *out)
{
    char *end;

    errno = 0;
    *out = strtoull(s, &end, 0);
    return (errno != 0 || end == s || *end != '\0') ? -EINVAL : 0;
}

static int
parse_flags(const char *s, uint64_t *out)
{
    unsigned long long n;
    char buf[128], *tok, *save = NULL;
    uint64_t f = 0;

    if (parse_number(s, &n) == 0) {
        *out = n;
        return 0;
    }
    if (strlen(s) >= sizeof(buf)) {
        return -EINVAL;
    }
    strcpy(buf, s);
    for (tok = strtok_r(buf, "|, ", &save); tok != NULL;
         tok = strtok_r(NULL, "|, ", &save)) {
        if (strcasecmp(tok, "STOP_COPY") == 0) {
            f |= VMIG_MIGRATION_STOP_COPY;
        } else if (strcasecmp(tok, "P2P") == 0) {
            f |= VMIG_MIGRATION_P2P;
        } else if (strcasecmp(tok, "PRE_COPY") == 0 ||
                   strcasecmp(tok, "PRECOPY") == 0) {
            f |= VMIG_MIGRATION_PRE_COPY;
        } else {
            return -EINVAL;
        }
    }
    *out = f;
    return 0;
}

/* Pull "--flags F" out of argv; returns the remaining argc. */
static int
take_flags(int argc, char **argv, uint64_t *flags)
{
    int out = 0;

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--flags") == 0 || strcmp(argv[i], "-f") == 0) {
            if (i + 1 >= argc || parse_flags(argv[i + 1], flags) < 0) {
                fprintf(stderr, "vmig-fsm: --flags needs a flag word such as "
                                "7 or STOP_COPY|P2P\n");
                return -1;
            }
            i++;
            continue;
        }
        argv[out++] = argv[i];
    }
    return out;
}

static int
check_flags(uint64_t flags)
{
    char buf[64];

    if (vmig_flags_validate(flags) < 0) {
        fprintf(stderr,
                "vmig-fsm: flags %s are not a valid migration-flags word: "
                "STOP_COPY is mandatory and only STOP_COPY, P2P and "
                "PRE_COPY exist\n",
                vmig_flags_format(flags, buf, sizeof(buf)));
        return -EINVAL;
    }
    return 0;
}

static int
cmd_table(uint64_t flags)
{
    char buf[256];

    if (check_flags(flags) < 0) {
        return EXIT_NO;
    }
    printf("device flags: %s\n\nnext step (row = current, column = "
           "target; '-' = refused with EINVAL)\n%-13s",
           vmig_flags_format(flags, buf, sizeof(buf)), "");
    for (unsigned int t = 1; t < VMIG_STATE__COUNT; t++) {
        if (vmig_state_supported(flags, t)) {
            printf(" %-12s", vmig_state_name(t));
        }
    }
    printf("\n");
    for (unsigned int c = 1; c < VMIG_STATE__COUNT; c++) {
        if (!vmig_state_supported(flags, c)) {
            continue;
        }
        printf("%-13s", vmig_state_name(c));
        for (unsigned int t = 1; t < VMIG_STATE__COUNT; t++) {
            enum vmig_state n;

            if (!vmig_state_supported(flags, t)) {
                continue;
            }
            printf(" %-12s", vmig_fsm_next(flags, c, t, &n) == 0
                                 ? vmig_state_name(n)
                                 : "-");
        }
        printf("\n");
    }
    printf("\npaths (session effect of each arc in brackets)\n");
    for (unsigned int c = 1; c < VMIG_STATE__COUNT; c++) {
        for (unsigned int t = 1; t < VMIG_STATE__COUNT; t++) {
            struct vmig_fsm_path p;

            if (c == t || !vmig_state_supported(flags, c) ||
                !vmig_state_supported(flags, t)) {
                continue;
            }
            if (vmig_fsm_path(flags, c, t, &p) < 0) {
                printf("  %-12s -> %-12s : refused (EINVAL)\n",
                       vmig_state_name(c), vmig_state_name(t));
                continue;
            }
            printf("  %s", vmig_state_name(p.state[0]));
            for (unsigned int i = 1; i < p.len; i++) {
                enum vmig_arc_kind k =
                    vmig_arc_classify(p.state[i - 1], p.state[i]);

                printf(" -> %s", vmig_state_name(p.state[i]));
                if (k != VMIG_ARC_NONE) {
                    printf(" [%s]", vmig_arc_kind_name(k));
                }
            }
            printf("\n");
        }
    }
    return 0;
}

static int
cmd_path(uint64_t flags, const char *from, const char *to)
{
    enum vmig_state a, b;
    struct vmig_fsm_path p;
    char buf[256];

    if (vmig_state_from_name(from, &a) < 0 ||
        vmig_state_from_name(to, &b) < 0) {
        fprintf(stderr, "vmig-fsm: unknown state '%s'; see --help\n",
                vmig_state_from_name(from, &a) < 0 ? from : to);
        return EXIT_USAGE;
    }
    if (check_flags(flags) < 0) {
        return EXIT_NO;
    }
    if (vmig_fsm_path(flags, a, b, &p) < 0) {
        printf("%s -> %s: refused (EINVAL) for a device with %s%s\n",
               vmig_state_name(a), vmig_state_name(b),
               vmig_flags_format(flags, buf, sizeof(buf)),
               !vmig_state_supported(flags, a) ||
                       !vmig_state_supported(flags, b)
                   ? " (state not supported by these flags)"
                   : " (no path: the final state cannot go back to precopy)");
        return EXIT_NO;
    }
    printf("%s\n", vmig_fsm_path_format(&p, buf, sizeof(buf)));
    return 0;
}

static int
cmd_v1(const char *word)
{
    unsigned long long w;
    enum vmig_state s;

    if (parse_number(word, &w) < 0 || w > UINT32_MAX) {
        fprintf(stderr, "vmig-fsm: '%s' is not a number\n", word);
        return EXIT_USAGE;
    }
    if (vmig_v1_decode((uint32_t)w, &s) < 0) {
        printf("v1 word %#llx: invalid (RESUMING with RUNNING or SAVING, "
               "an error word, or an unknown bit)\n",
               w);
        return EXIT_NO;
    }
    printf("v1 word %#llx: %s\n", w, vmig_state_name(s));
    return 0;
}

static int
cmd_flagword(const char *word)
{
    uint64_t f;
    char buf[64];

    if (parse_flags(word, &f) < 0) {
        fprintf(stderr, "vmig-fsm: '%s' is not a flag word\n", word);
        return EXIT_USAGE;
    }
    if (check_flags(f) < 0) {
        return EXIT_NO;
    }
    printf("flags %s: valid\n", vmig_flags_format(f, buf, sizeof(buf)));
    return 0;
}

int
main(int argc, char **argv)
{
    uint64_t flags = VMIG_MIGRATION__ALL;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    argc = take_flags(argc - 1, argv + 1, &flags);
    argv++;
    if (argc < 0) {
        return EXIT_USAGE;
    }
    if (strcmp(argv[0], "table") == 0 && argc == 1) {
        return cmd_table(flags);
    }
    if (strcmp(argv[0], "path") == 0 && argc == 3) {
        return cmd_path(flags, argv[1], argv[2]);
    }
    if (strcmp(argv[0], "v1") == 0 && argc == 2) {
        return cmd_v1(argv[1]);
    }
    if (strcmp(argv[0], "flags") == 0 && argc == 2) {
        return cmd_flagword(argv[1]);
    }
    usage(stderr);
    return EXIT_USAGE;
}
