# Downtime vs device state size and dirty rate, precopy vs stop-copy: the
# flowtab model behind the engine (devices/flowtab/ft_engine_dev.c), two engines in
# one process.  precopy.dat / precopy.svg land in the build's bench dir.
vmig_bench(bench_precopy
  SOURCES ${PROJECT_SOURCE_DIR}/bench/precopy_report.c
  LIBS vmig_flowtab)
# A small run (64 MiB of device state, 64 MiB of RAM, the guest writing
# RAM and the device state during precopy) as a smoke test of the bench
# itself in builds with tests: it fails only when a migration fails or the
# destination's state or RAM differs; it asserts nothing about timing.
if(BUILD_TESTING)
  add_test(NAME bench_precopy_smoke
    COMMAND bench_precopy size=64 ram=64 out=${PROJECT_BINARY_DIR}/bench)
  set_tests_properties(bench_precopy_smoke PROPERTIES LABELS bench
    TIMEOUT 300)
endif()
