# TIMEOUT: the same migrations as test_engine, compressed (one at zstd
# level 19), so the same longer deadline under ThreadSanitizer on a
# loaded machine.
vmig_unit_test(test_engine_zstd
  SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/engine_vm.c
  TIMEOUT 300)
