# The accelerator's golden envelope read by the generic vmig-stream tool.
if(TARGET vmig-stream)
  add_test(NAME acc-envelope-tool
    COMMAND ${PROJECT_SOURCE_DIR}/tests/func/acc_stream.sh
      $<TARGET_FILE:vmig-stream> ${PROJECT_SOURCE_DIR}/tests/data)
  set_tests_properties(acc-envelope-tool PROPERTIES LABELS func TIMEOUT 60)
endif()
