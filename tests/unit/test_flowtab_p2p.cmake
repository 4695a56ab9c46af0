# Two flowtab devices forwarding into each other, migrated together.
vmig_unit_test(test_flowtab_p2p
  SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/flowtab_testlib.c
  LIBS vmig_flowtab
  TIMEOUT 120)
