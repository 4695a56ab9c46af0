# The flowtab device model and guest driver are compiled into the test.
vmig_unit_test(test_flowtab
  SOURCES ${PROJECT_SOURCE_DIR}/devices/flowtab/flowtab_model.c
          ${PROJECT_SOURCE_DIR}/devices/flowtab/ft_guest.c
          ${PROJECT_SOURCE_DIR}/tests/unit/flowtab_testlib.c
  TIMEOUT 120)
target_include_directories(test_flowtab PRIVATE
  ${PROJECT_SOURCE_DIR}/devices/flowtab)
