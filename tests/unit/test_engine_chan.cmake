# TIMEOUT: under ThreadSanitizer on a loaded machine these migrations take
# about the default 120 s (test_engine 128 s, test_engine_chan 138 s at
# load 17), so they get a longer deadline; the shared-peer-clock cases add
# five migrations paced over seconds (test_engine_chan ran past 300 s at
# load 30).
vmig_unit_test(test_engine_chan
  SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/engine_vm.c
  TIMEOUT 600)
