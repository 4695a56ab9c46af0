# vmig's client and the engine's vfio-user backend over the foreign test
# server (tests/func/test_vfu_foreign.c, tests/func/foreign_vfu.py).
find_program(VMIG_PYTHON3 NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
find_program(VMIG_PYTHON3 NAMES python3)
add_executable(test_vfu_foreign
  ${PROJECT_SOURCE_DIR}/tests/func/test_vfu_foreign.c)
target_link_libraries(test_vfu_foreign PRIVATE vmig_static Threads::Threads)
if(VMIG_PYTHON3)
  foreach(case stopcopy precopy)
    add_test(NAME vfu-foreign-${case} COMMAND test_vfu_foreign
      ${VMIG_PYTHON3} ${PROJECT_SOURCE_DIR}/tests/func/foreign_vfu.py ${case})
    set_tests_properties(vfu-foreign-${case} PROPERTIES LABELS func
      TIMEOUT 60)
  endforeach()
endif()
