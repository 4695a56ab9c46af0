vmig_unit_test(test_stream SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/stream_load.c)
