# TIMEOUT: five migrations paced over seconds (the channel tests ran past
# 300 s at load 30 under ThreadSanitizer, these cases most of it).
vmig_unit_test(test_engine_chan_peer
  SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/engine_vm.c
          ${PROJECT_SOURCE_DIR}/tests/unit/engine_chan_vm.c
  TIMEOUT 600)
