# Migration benchmark: in-process devices, and a vfio-user device server
# process (the test device, forked from tests/func/vfu_testdev.c), and the
# accelerator (devices/acc, served in a forked child).
vmig_bench(bench_migrate SOURCES ${PROJECT_SOURCE_DIR}/tests/func/vfu_testdev.c
  LIBS vmig_acc PkgConfig::XXHASH Threads::Threads)
target_include_directories(bench_migrate PRIVATE ${PROJECT_SOURCE_DIR}/tests/func)
