# Peak RSS of the engine processes migrating a vfio-user test device server
# process with a large state (tests/func/vfu_testdev.c).
vmig_bench(bench_rss SOURCES ${PROJECT_SOURCE_DIR}/tests/func/vfu_testdev.c
  LIBS PkgConfig::XXHASH Threads::Threads)
target_include_directories(bench_rss PRIVATE ${PROJECT_SOURCE_DIR}/tests/func)
