/* SPDX-License-Identifier: MIT */
/*
 * replay_main.c - run a libFuzzer harness over a corpus without libFuzzer.
 *
 * Linked with any harness that defines LLVMFuzzerTestOneInput, so the
 * corpus is replayed under CTest by gcc builds (and under ASan/UBSan).
 * Arguments are files or directories; directories are read one level deep.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Corpus files larger than this are a mistake, not an input. */
#define REPLAY_MAX_INPUT (16u << 20)

static int
replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    size_t n;

    if (f == NULL) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    buf = malloc(REPLAY_MAX_INPUT);
    if (buf == NULL) {
        fclose(f);
        return -1;
    }
    n = fread(buf, 1, REPLAY_MAX_INPUT, f);
    fclose(f);
    /* Exact-size copy, so ASan sees reads past the input's end. */
    uint8_t *exact = malloc(n ? n : 1);
    if (exact == NULL) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

int
main(int argc, char **argv)
{
    unsigned long count = 0;

    for (int i = 1; i < argc; i++) {
        struct stat st;

        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        if (S_ISDIR(st.st_mode)) {
            DIR *d = opendir(argv[i]);
            struct dirent *e;

            if (d == NULL) {
                return 1;
            }
            while ((e = readdir(d)) != NULL) {
                char path[4096];

                if (e->d_name[0] == '.') {
                    continue;
                }
                snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
                if (replay_file(path) != 0) {
                    closedir(d);
                    return 1;
                }
                count++;
            }
            closedir(d);
        } else {
            if (replay_file(argv[i]) != 0) {
                return 1;
            }
            count++;
        }
    }
    printf("replayed %lu inputs\n", count);
    return count > 0 ? 0 : 1;
}
