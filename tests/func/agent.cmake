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
    COMMAND ${PROJECT_SOURCE_DIR}/tests/func/demo_verdict.sh
      $<TARGET_FILE:vmig-agent> --ram 32M --acc-requests 60000)
  add_test(NAME agent-vfu
    COMMAND ${PROJECT_SOURCE_DIR}/tests/func/agent_vfu.sh
      $<TARGET_FILE:vmig-agent>)
  add_test(NAME agent-acc
    COMMAND ${PROJECT_SOURCE_DIR}/tests/func/agent_vfu.sh
      $<TARGET_FILE:vmig-agent> acc)
  add_test(NAME agent-corrupt
    COMMAND ${PROJECT_SOURCE_DIR}/tests/func/agent_vfu.sh
      $<TARGET_FILE:vmig-agent> corrupt)
  add_test(NAME agent-acc-done
    COMMAND ${PROJECT_SOURCE_DIR}/tests/func/agent_vfu.sh
      $<TARGET_FILE:vmig-agent> accdone)
  add_test(NAME agent-zstd
    COMMAND ${PROJECT_SOURCE_DIR}/tests/func/agent_vfu.sh
      $<TARGET_FILE:vmig-agent> zstd)
  set_tests_properties(agent-qmp agent-migrate agent-demo agent-vfu agent-acc
    agent-corrupt agent-acc-done agent-zstd
    PROPERTIES
    LABELS func TIMEOUT 300)
endif()

# Precopy, resets during precopy, several devices and switchover-ack
# between two agent processes (tests/func/agent_precopy.sh).  TIMEOUT:
# every x-vmig-query-guest replays the guest's ledger (seconds of CPU for
# a 64M guest under ASan), and "precopy" asks dozens of them around three
# migrations: 170-300 s at a load of 25 on two cores.
if(TARGET vmig-agent)
  foreach(c precopy noprecopy reset mixed nolog ack)
    add_test(NAME agent-precopy-${c}
      COMMAND ${PROJECT_SOURCE_DIR}/tests/func/agent_precopy.sh
        $<TARGET_FILE:vmig-agent> ${c})
    set_tests_properties(agent-precopy-${c} PROPERTIES LABELS func TIMEOUT 900)
  endforeach()
endif()

# TLS on the migration channel: every refusal named on both sides with the
# destination untouched and the source running; x509 and PSK migrations
# with the accelerator workload (tests/func/agent_tls.sh).
if(TARGET vmig-agent)
  foreach(c x509 psk plain)
    add_test(NAME agent-tls-${c}
      COMMAND ${PROJECT_SOURCE_DIR}/tests/func/agent_tls.sh
        $<TARGET_FILE:vmig-agent> ${c})
    set_tests_properties(agent-tls-${c} PROPERTIES LABELS func TIMEOUT 150)
  endforeach()
endif()
