# Guest-RAM dirty aggregator: vCPU writes + vfio-user device DMA logging.
add_executable(test_ramdirty ${PROJECT_SOURCE_DIR}/tests/func/test_ramdirty.c
  ${PROJECT_SOURCE_DIR}/tests/func/vfu_testdev.c)
target_link_libraries(test_ramdirty PRIVATE vmig_static vmig_testkit
  PkgConfig::XXHASH)
foreach(case exact subrange converge negotiate)
  add_test(NAME ramdirty-${case} COMMAND test_ramdirty ${case})
  add_test(NAME ramdirty-${case}-hash COMMAND test_ramdirty ${case} hash)
  set_tests_properties(ramdirty-${case} ramdirty-${case}-hash PROPERTIES
    LABELS func TIMEOUT 60)
endforeach()
