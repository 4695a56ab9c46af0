# The flowtab device over vfio-user: server children, vmig client.
add_executable(test_flowtab_func
  ${PROJECT_SOURCE_DIR}/tests/func/test_flowtab_func.c
  ${PROJECT_SOURCE_DIR}/tests/unit/flowtab_testlib.c)
target_include_directories(test_flowtab_func PRIVATE
  ${PROJECT_SOURCE_DIR}/tests/unit)
target_link_libraries(test_flowtab_func PRIVATE vmig_flowtab)
foreach(case migrate reset badstream dmalog p2p flags)
  add_test(NAME flowtab-${case} COMMAND test_flowtab_func ${case})
  set_tests_properties(flowtab-${case} PROPERTIES LABELS func TIMEOUT 60)
endforeach()
if(TARGET vmig-flowtab)
  add_test(NAME flowtab-tool COMMAND test_flowtab_func tool
    $<TARGET_FILE:vmig-flowtab>)
  set_tests_properties(flowtab-tool PROPERTIES LABELS func TIMEOUT 60)
endif()
