# Downtime vs device state size and dirty rate, precopy vs stop-copy: the
# flowtab model behind the engine (bench/ft_engine_dev.c), two engines in
# one process.  precopy.dat / precopy.png land in the build's bench dir.
vmig_bench(bench_precopy
  SOURCES ${PROJECT_SOURCE_DIR}/bench/ft_engine_dev.c
          ${PROJECT_SOURCE_DIR}/devices/flowtab/flowtab_model.c
          ${PROJECT_SOURCE_DIR}/devices/flowtab/ft_guest.c
  LIBS PkgConfig::XXHASH Threads::Threads)
target_compile_definitions(bench_precopy PRIVATE
  BENCH_OUT_DIR="${PROJECT_BINARY_DIR}/bench")
# The quick mode (64 and 128 MiB) as a smoke test of the bench itself in
# builds with tests: it fails only when a migration fails or the
# destination's state differs; it asserts nothing about timing.  quiet-ram:
# no guest RAM writes while precopy sends RAM (the engine checksums RAM
# frames over live guest memory; see the bench's report).
if(BUILD_TESTING)
  add_test(NAME bench_precopy_quick
    COMMAND bench_precopy quick quiet-ram out=${PROJECT_BINARY_DIR}/bench)
  set_tests_properties(bench_precopy_quick PROPERTIES LABELS bench
    TIMEOUT 300)
endif()
