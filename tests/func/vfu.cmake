# vfio-user end to end: test device server in a child process, vmig client.
add_executable(test_vfu_func ${PROJECT_SOURCE_DIR}/tests/func/test_vfu_func.c
  ${PROJECT_SOURCE_DIR}/tests/func/vfu_func_hostile.c
  ${PROJECT_SOURCE_DIR}/tests/func/vfu_testdev.c)
target_link_libraries(test_vfu_func PRIVATE vmig_static vmig_testkit
  PkgConfig::XXHASH Threads::Threads)
foreach(case basic migrate-bulk migrate-plain badstream reset hostile listen)
  add_test(NAME vfu-${case} COMMAND test_vfu_func ${case})
  set_tests_properties(vfu-${case} PROPERTIES LABELS func TIMEOUT 60)
endforeach()
if(TARGET vfu-testdev)
  add_test(NAME vfu-tool COMMAND test_vfu_func tool
    $<TARGET_FILE:vfu-testdev>)
  set_tests_properties(vfu-tool PROPERTIES LABELS func TIMEOUT 60)
endif()
