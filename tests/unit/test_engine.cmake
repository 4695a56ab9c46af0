vmig_unit_test(test_engine SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/engine_vm.c)
