# The flowtab device (devices/flowtab, vmig_flowtab) is linked into the
# test.
vmig_unit_test(test_flowtab_stream
  SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/flowtab_testlib.c
    ${PROJECT_SOURCE_DIR}/tests/unit/flowtab_side.c
  LIBS vmig_flowtab
  TIMEOUT 120)
