# The agent migrating a device server vmig did not write: the foreign
# vfio-user test server tests/func/foreign_vfu.py (Debian's python3,
# installed by scripts/install-deps).
find_program(VMIG_PYTHON3 NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
find_program(VMIG_PYTHON3 NAMES python3)
if(TARGET vmig-agent AND VMIG_PYTHON3)
  foreach(c stopcopy precopy noprecopy refuse)
    add_test(NAME agent-foreign-${c}
      COMMAND ${PROJECT_SOURCE_DIR}/tests/func/agent_foreign.sh
        $<TARGET_FILE:vmig-agent> ${VMIG_PYTHON3} ${c})
    set_tests_properties(agent-foreign-${c} PROPERTIES LABELS func TIMEOUT 120)
  endforeach()
elseif(TARGET vmig-agent)
  message(WARNING "python3 not found: the foreign-server tests are not run "
    "(scripts/install-deps installs it)")
endif()
