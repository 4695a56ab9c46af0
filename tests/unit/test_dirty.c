/* SPDX-License-Identifier: MIT */
/*
 * test_dirty.c - CPU-write dirty tracking: exact page sets, read-and-clear,
 * and a precopy-style copy loop racing a writer thread that must converge
 * to a byte-identical copy.  Both methods, anonymous and memfd memory.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>
#include <vmig/dirty.h>

#define NPAGES 300

struct mem {
    uint8_t *base;
    size_t len;
    int fd; /* memfd, or -1 for anonymous */
};

static size_t page;

static struct mem
mem_new(bool shared)
{
    struct mem m = {.len = NPAGES * page, .fd = -1};

    if (shared) {
        m.fd = memfd_create("vmig-test-ram", MFD_CLOEXEC);
        assert_true(m.fd >= 0);
        assert_int_equal(ftruncate(m.fd, (off_t)m.len), 0);
        m.base = mmap(NULL, m.len, PROT_READ | PROT_WRITE, MAP_SHARED, m.fd, 0);
    } else {
        m.base = mmap(NULL, m.len, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    }
    assert_true(m.base != MAP_FAILED);
    return m;
}

static void
mem_free(struct mem *m)
{
    munmap(m->base, m->len);
    if (m->fd >= 0) {
        close(m->fd);
    }
}

static int
count_bits(const uint64_t *bm, size_t nbits)
{
    int n = 0;

    for (size_t i = 0; i < nbits; i++) {
        n += (int)((bm[i / 64] >> (i % 64)) & 1);
    }
    return n;
}

static bool
bit(const uint64_t *bm, size_t i)
{
    return (bm[i / 64] >> (i % 64)) & 1;
}

static void
exact_sets(enum vmig_dirty_method method, bool shared)
{
    struct mem m = mem_new(shared);
    struct vmig_dirty *d = NULL;
    uint64_t bm[(NPAGES + 63) / 64];
    static const size_t written[] = {0, 5, 63, 64, 200, NPAGES - 1};

    /* populate half the pages first: tracking must cover both kinds */
    for (size_t i = 0; i < NPAGES / 2; i++) {
        m.base[i * page] = 1;
    }
    assert_int_equal(vmig_dirty_new(NULL, m.base, m.len, method, &d), 0);
    assert_int_equal(vmig_dirty_method_in_use(d), method);
    assert_int_equal(vmig_dirty_pages(d), NPAGES);
    assert_int_equal(vmig_dirty_start(d), 0);

    for (size_t i = 0; i < sizeof(written) / sizeof(written[0]); i++) {
        m.base[written[i] * page + 17] ^= 0x5a;
    }
    memset(bm, 0, sizeof(bm));
    assert_int_equal(vmig_dirty_collect(d, bm, NPAGES), 6);
    assert_int_equal(count_bits(bm, NPAGES), 6);
    for (size_t i = 0; i < sizeof(written) / sizeof(written[0]); i++) {
        assert_true(bit(bm, written[i]));
    }
    /* read-and-clear: nothing new since */
    memset(bm, 0, sizeof(bm));
    assert_int_equal(vmig_dirty_collect(d, bm, NPAGES), 0);
    /* a page written again shows up again, alone */
    m.base[5 * page] ^= 0xff;
    m.base[7 * page + page - 1] ^= 0xff;
    assert_int_equal(vmig_dirty_collect(d, bm, NPAGES), 2);
    assert_true(bit(bm, 5) && bit(bm, 7));
    assert_int_equal(count_bits(bm, NPAGES), 2);
    /* a new start forgets */
    m.base[9 * page] ^= 0xff;
    assert_int_equal(vmig_dirty_start(d), 0);
    memset(bm, 0, sizeof(bm));
    assert_int_equal(vmig_dirty_collect(d, bm, NPAGES), 0);
    vmig_dirty_free(d);
    /* memory is writable again after free */
    m.base[3 * page] = 42;
    assert_int_equal(m.base[3 * page], 42);
    mem_free(&m);
}

static void
test_uffd_wp_exact_sets(void **state)
{
    (void)state;
    if (!vmig_dirty_uffd_wp_supported()) {
        printf("uffd-wp async + PAGEMAP_SCAN not offered by this kernel\n");
        skip();
    }
    exact_sets(VMIG_DIRTY_UFFD_WP, false);
    exact_sets(VMIG_DIRTY_UFFD_WP, true);
}

static void
test_hash_exact_sets(void **state)
{
    (void)state;
    exact_sets(VMIG_DIRTY_HASH, false);
    exact_sets(VMIG_DIRTY_HASH, true);
}

struct writer {
    uint8_t *base;
    atomic_int stop;
    atomic_ulong writes;
};

static void *
writer_main(void *arg)
{
    struct writer *w = arg;
    uint64_t x = 88172645463325252ull;

    while (!atomic_load(&w->stop)) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w->base[(x % NPAGES) * page + (x >> 40) % page] = (uint8_t)x;
        atomic_fetch_add(&w->writes, 1);
    }
    return NULL;
}

/* A precopy loop: copy all, then repeatedly copy what the collector
 * reports while a thread keeps writing; after the writer stops, one last
 * round must leave the copy byte-identical. */
static void
converge(enum vmig_dirty_method method, bool shared)
{
    struct mem m = mem_new(shared);
    struct vmig_dirty *d = NULL;
    uint8_t *copy = malloc(m.len);
    uint64_t bm[(NPAGES + 63) / 64];
    struct writer w = {.base = m.base, .stop = 0, .writes = 0};
    pthread_t th;
    long total = 0;

    assert_non_null(copy);
    assert_int_equal(vmig_dirty_new(NULL, m.base, m.len, method, &d), 0);
    assert_int_equal(vmig_dirty_start(d), 0);
    assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
    /* on a loaded machine the writer may start late: make sure it runs
     * during the rounds (bounded: 10 s) */
    for (int i = 0; i < 10000 && atomic_load(&w.writes) < 1000; i++) {
        usleep(1000);
    }
    assert_true(atomic_load(&w.writes) >= 1000);
    memcpy(copy, m.base, m.len);
    for (int round = 0; round < 20; round++) {
        long n;

        memset(bm, 0, sizeof(bm));
        n = vmig_dirty_collect(d, bm, NPAGES);
        assert_true(n >= 0);
        total += n;
        for (size_t i = 0; i < NPAGES; i++) {
            if (bit(bm, i)) {
                memcpy(copy + i * page, m.base + i * page, page);
            }
        }
        usleep(1000);
    }
    atomic_store(&w.stop, 1);
    pthread_join(th, NULL);
    memset(bm, 0, sizeof(bm));
    total += vmig_dirty_collect(d, bm, NPAGES);
    for (size_t i = 0; i < NPAGES; i++) {
        if (bit(bm, i)) {
            memcpy(copy + i * page, m.base + i * page, page);
        }
    }
    assert_true(total > 0);
    assert_memory_equal(copy, m.base, m.len);
    vmig_dirty_free(d);
    free(copy);
    mem_free(&m);
}

static void
test_uffd_wp_converges_under_writes(void **state)
{
    (void)state;
    if (!vmig_dirty_uffd_wp_supported()) {
        skip();
    }
    converge(VMIG_DIRTY_UFFD_WP, false);
    converge(VMIG_DIRTY_UFFD_WP, true);
}

static void
test_hash_converges_under_writes(void **state)
{
    (void)state;
    converge(VMIG_DIRTY_HASH, true);
}

/* Hashing sees writes through another mapping of the same memory (what a
 * device process does); auto picks uffd-wp where the kernel has it. */
static void
test_hash_sees_other_mappings_and_auto(void **state)
{
    struct mem m = mem_new(true);
    uint8_t *other =
        mmap(NULL, m.len, PROT_READ | PROT_WRITE, MAP_SHARED, m.fd, 0);
    struct vmig_dirty *d = NULL;
    uint64_t bm[(NPAGES + 63) / 64] = {0};

    (void)state;
    assert_true(other != MAP_FAILED);
    assert_int_equal(vmig_dirty_new(NULL, m.base, m.len, VMIG_DIRTY_HASH, &d),
                     0);
    assert_int_equal(vmig_dirty_start(d), 0);
    other[42 * page] = 7;
    assert_int_equal(vmig_dirty_collect(d, bm, NPAGES), 1);
    assert_true(bit(bm, 42));
    vmig_dirty_free(d);

    assert_int_equal(vmig_dirty_new(NULL, m.base, m.len, VMIG_DIRTY_AUTO, &d),
                     0);
    assert_int_equal(vmig_dirty_method_in_use(d), vmig_dirty_uffd_wp_supported()
                                                      ? VMIG_DIRTY_UFFD_WP
                                                      : VMIG_DIRTY_HASH);
    printf("auto method on this kernel: %s\n",
           vmig_dirty_method_name(vmig_dirty_method_in_use(d)));
    vmig_dirty_free(d);
    munmap(other, m.len);
    mem_free(&m);
}

static void
test_bad_arguments(void **state)
{
    struct mem m = mem_new(false);
    struct vmig_dirty *d = (struct vmig_dirty *)0x1;
    uint64_t bm[(NPAGES + 63) / 64];

    (void)state;
    assert_int_equal(
        vmig_dirty_new(NULL, m.base + 1, page, VMIG_DIRTY_HASH, &d), -EINVAL);
    assert_int_equal(vmig_dirty_new(NULL, m.base, 0, VMIG_DIRTY_HASH, &d),
                     -EINVAL);
    assert_int_equal(
        vmig_dirty_new(NULL, m.base, page + 1, VMIG_DIRTY_HASH, &d), -EINVAL);
    assert_int_equal(vmig_dirty_new(NULL, m.base, page, 7, &d), -EINVAL);
    assert_ptr_equal(d, (struct vmig_dirty *)0x1);
    assert_int_equal(vmig_dirty_new(NULL, m.base, m.len, VMIG_DIRTY_HASH, &d),
                     0);
    assert_int_equal(vmig_dirty_collect(d, bm, NPAGES), -EINVAL); /* !start */
    assert_int_equal(vmig_dirty_start(d), 0);
    assert_int_equal(vmig_dirty_collect(d, bm, NPAGES - 1), -EINVAL);
    assert_int_equal(vmig_dirty_collect(d, NULL, NPAGES), -EINVAL);
    vmig_dirty_free(d);
    vmig_dirty_free(NULL);
    assert_string_equal(vmig_dirty_method_name(VMIG_DIRTY_UFFD_WP), "uffd-wp");
    assert_string_equal(vmig_dirty_method_name(99), "unknown");
    mem_free(&m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uffd_wp_exact_sets),
        cmocka_unit_test(test_hash_exact_sets),
        cmocka_unit_test(test_uffd_wp_converges_under_writes),
        cmocka_unit_test(test_hash_converges_under_writes),
        cmocka_unit_test(test_hash_sees_other_mappings_and_auto),
        cmocka_unit_test(test_bad_arguments),
    };

    page = (size_t)sysconf(_SC_PAGESIZE);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
