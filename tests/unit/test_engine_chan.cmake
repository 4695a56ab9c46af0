vmig_unit_test(test_engine_chan SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/engine_vm.c)
