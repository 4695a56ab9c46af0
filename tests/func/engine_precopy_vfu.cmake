# Engine-level precopy with vmig-flowtab server processes behind the
# vfio-user backend (tests/func/test_engine_precopy_vfu.c).
add_executable(test_engine_precopy_vfu
  ${PROJECT_SOURCE_DIR}/tests/func/test_engine_precopy_vfu.c
  ${PROJECT_SOURCE_DIR}/tests/func/engine_precopy_vfu_vms.c)
target_link_libraries(test_engine_precopy_vfu PRIVATE vmig_flowtab)
foreach(case backend converge plain restart abort ack p2p p2p-one)
  add_test(NAME engine-precopy-vfu-${case}
    COMMAND test_engine_precopy_vfu ${case})
  set_tests_properties(engine-precopy-vfu-${case} PROPERTIES LABELS func
    TIMEOUT 60)
endforeach()
