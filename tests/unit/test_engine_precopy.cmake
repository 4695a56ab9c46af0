# In-process flowtab devices and their guest driver behind the engine.
vmig_unit_test(test_engine_precopy
  SOURCES ${PROJECT_SOURCE_DIR}/devices/flowtab/flowtab_model.c
          ${PROJECT_SOURCE_DIR}/devices/flowtab/ft_guest.c
          ${PROJECT_SOURCE_DIR}/devices/flowtab/ft_engine_dev.c
          ${PROJECT_SOURCE_DIR}/tests/unit/flowtab_testlib.c
  TIMEOUT 120)
target_include_directories(test_engine_precopy PRIVATE
  ${PROJECT_SOURCE_DIR}/devices/flowtab)
