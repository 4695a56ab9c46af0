# The fault proxy's own test, against a plain TCP peer (tests/faults/).
# The fault matrix itself runs with `make faults` (tests/faults/matrix.py).
find_package(Python3 COMPONENTS Interpreter)
if(TARGET vmig-faultproxy AND Python3_Interpreter_FOUND)
  add_test(NAME faultproxy
    COMMAND ${Python3_EXECUTABLE}
      ${PROJECT_SOURCE_DIR}/tests/faults/test_faultproxy.py
      $<TARGET_FILE:vmig-faultproxy>)
  set_tests_properties(faultproxy PROPERTIES LABELS func TIMEOUT 150)
endif()
