# vmig-stream against the golden stream and corrupted copies of it.
add_test(NAME vmig-stream-tool
  COMMAND ${PROJECT_SOURCE_DIR}/tests/func/stream_tool.sh
    $<TARGET_FILE:vmig-stream> ${PROJECT_SOURCE_DIR}/tests/data)
set_tests_properties(vmig-stream-tool PROPERTIES LABELS func TIMEOUT 60)
