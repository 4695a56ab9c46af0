# Migration benchmark: in-process devices, and a vfio-user device server
# process (the test device, forked from tests/func/vfu_testdev.c).
vmig_bench(bench_migrate SOURCES ${PROJECT_SOURCE_DIR}/tests/func/vfu_testdev.c
  LIBS PkgConfig::XXHASH Threads::Threads)
target_include_directories(bench_migrate PRIVATE ${PROJECT_SOURCE_DIR}/tests/func)
