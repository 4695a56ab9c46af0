# The agent driven by an independent QMP client (tests/func/qmpclient.py,
# Python, written from QEMU's qmp-spec): a full migration, every refusing
# path, out-of-band cancel, limits and lockout, socket security.
find_package(Python3 COMPONENTS Interpreter)
if(TARGET vmig-agent AND Python3_Interpreter_FOUND)
  foreach(s migrate refuse oob limits security)
    add_test(NAME qmp-client-${s}
      COMMAND ${Python3_EXECUTABLE}
        ${PROJECT_SOURCE_DIR}/tests/func/qmp_scenarios.py
        $<TARGET_FILE:vmig-agent> ${s})
    set_tests_properties(qmp-client-${s} PROPERTIES LABELS func TIMEOUT 300)
  endforeach()
endif()
