# vfio-user data/control plane vs plain sockets; serves the test device.
vmig_bench(bench_vfu SOURCES ${PROJECT_SOURCE_DIR}/tests/func/vfu_testdev.c
  LIBS PkgConfig::XXHASH)
target_include_directories(bench_vfu PRIVATE ${PROJECT_SOURCE_DIR}/tests/func)
