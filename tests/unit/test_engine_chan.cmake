# TIMEOUT: under ThreadSanitizer on a loaded machine these migrations take
# about the default 120 s (test_engine 128 s, test_engine_chan 138 s at
# load 17), so they get a longer deadline.
vmig_unit_test(test_engine_chan
  SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/engine_vm.c
          ${PROJECT_SOURCE_DIR}/tests/unit/engine_chan_vm.c
  TIMEOUT 600)
