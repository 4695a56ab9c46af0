# Functional tests of the vmig agent and CLI (agent processes, QMP over a
# UNIX socket driven by socat, migrations over loopback TCP).
if(TARGET vmig-agent)
  add_test(NAME agent-qmp
    COMMAND ${PROJECT_SOURCE_DIR}/tests/func/agent_qmp.sh
      $<TARGET_FILE:vmig-agent>)
  add_test(NAME agent-migrate
    COMMAND ${PROJECT_SOURCE_DIR}/tests/func/agent_migrate.sh
      $<TARGET_FILE:vmig-agent>)
  add_test(NAME agent-demo
    COMMAND $<TARGET_FILE:vmig-agent> demo --ram 32M --dev-state 2M)
  set_tests_properties(agent-qmp agent-migrate agent-demo PROPERTIES
    LABELS func TIMEOUT 60)
endif()
