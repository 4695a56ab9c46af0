vmig_unit_test(test_tls SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/tls_fixture.c)
