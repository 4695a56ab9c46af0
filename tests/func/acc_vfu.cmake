# The accelerator over vfio-user: device servers in child processes, the
# vmig client as the VMM (tests/func/test_acc_vfu.c).
add_executable(test_acc_vfu ${PROJECT_SOURCE_DIR}/tests/func/test_acc_vfu.c)
target_link_libraries(test_acc_vfu PRIVATE vmig_acc)
foreach(case migrate refuse reset unmap)
  add_test(NAME acc-vfu-${case} COMMAND test_acc_vfu ${case})
  set_tests_properties(acc-vfu-${case} PROPERTIES LABELS func TIMEOUT 60)
endforeach()
add_test(NAME acc-vfu-tool COMMAND test_acc_vfu tool $<TARGET_FILE:vmig-acc>)
set_tests_properties(acc-vfu-tool PROPERTIES LABELS func TIMEOUT 60)
