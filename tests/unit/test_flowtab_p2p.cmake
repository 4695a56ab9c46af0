# Two flowtab devices forwarding into each other, migrated together.
vmig_unit_test(test_flowtab_p2p
  SOURCES ${PROJECT_SOURCE_DIR}/devices/flowtab/flowtab_model.c
          ${PROJECT_SOURCE_DIR}/devices/flowtab/ft_guest.c
          ${PROJECT_SOURCE_DIR}/tests/unit/flowtab_testlib.c
  TIMEOUT 120)
target_include_directories(test_flowtab_p2p PRIVATE
  ${PROJECT_SOURCE_DIR}/devices/flowtab)
