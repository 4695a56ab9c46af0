# In-process flowtab devices and their guest driver behind the engine.
vmig_unit_test(test_engine_precopy
  SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/flowtab_testlib.c
  LIBS vmig_flowtab
  TIMEOUT 120)
