# The fault proxy's own test, against a plain TCP peer (tests/faults/).
# The whole fault matrix runs with `make faults` (tests/faults/matrix.py);
# ctest (so make check) runs its sample: every fault once, every phase at
# least twice (docs/faults.md).
find_package(Python3 COMPONENTS Interpreter)
if(TARGET vmig-faultproxy AND Python3_Interpreter_FOUND)
  add_test(NAME faultproxy
    COMMAND ${Python3_EXECUTABLE}
      ${PROJECT_SOURCE_DIR}/tests/faults/test_faultproxy.py
      $<TARGET_FILE:vmig-faultproxy>)
  set_tests_properties(faultproxy PROPERTIES LABELS func TIMEOUT 150)
endif()

# A device server that dies, between agent processes (tests/faults/
# test_devfail.py): noticed at once, named everywhere, the VM goes on.
if(TARGET vmig-agent AND Python3_Interpreter_FOUND)
  foreach(c idle dstidle srcmig dstmig agentkill)
    add_test(NAME agent-devfail-${c}
      COMMAND ${Python3_EXECUTABLE}
        ${PROJECT_SOURCE_DIR}/tests/faults/test_devfail.py
        $<TARGET_FILE:vmig-agent> ${c})
    set_tests_properties(agent-devfail-${c} PROPERTIES LABELS func TIMEOUT 300)
  endforeach()
endif()

# A destination already receiving refuses a second source at once
# (tests/faults/test_busy.py).
if(TARGET vmig-agent AND Python3_Interpreter_FOUND)
  add_test(NAME agent-busy
    COMMAND ${Python3_EXECUTABLE}
      ${PROJECT_SOURCE_DIR}/tests/faults/test_busy.py $<TARGET_FILE:vmig-agent>)
  set_tests_properties(agent-busy PROPERTIES LABELS func TIMEOUT 300)
endif()

# A peer silent during stop-copy, detected within the downtime budget plus
# x-vmig-peer-timeout (tests/faults/test_silent.py).
if(TARGET vmig-agent AND TARGET vmig-faultproxy AND Python3_Interpreter_FOUND)
  add_test(NAME agent-silent
    COMMAND ${Python3_EXECUTABLE}
      ${PROJECT_SOURCE_DIR}/tests/faults/test_silent.py
      $<TARGET_FILE:vmig-agent> $<TARGET_FILE:vmig-faultproxy>)
  set_tests_properties(agent-silent PROPERTIES LABELS func TIMEOUT 300)
endif()

if(TARGET vmig-agent AND TARGET vmig-faultproxy AND Python3_Interpreter_FOUND)
  add_test(NAME fault-matrix-sample
    COMMAND ${Python3_EXECUTABLE}
      ${PROJECT_SOURCE_DIR}/tests/faults/matrix.py
      --vmig $<TARGET_FILE:vmig-agent> --proxy $<TARGET_FILE:vmig-faultproxy>
      --sample --table ${CMAKE_BINARY_DIR}/faults-sample.md
      --json ${CMAKE_BINARY_DIR}/faults-sample.json)
  set_tests_properties(fault-matrix-sample PROPERTIES LABELS func TIMEOUT 900)
endif()

# The commit protocol between real agents: GO lost and sent again, the
# outcome unknown and the operator's override, the source gone after
# READY, a cancel after GO honoured only because GO never arrived
# (tests/faults/test_commit.py).
if(TARGET vmig-agent AND TARGET vmig-faultproxy AND Python3_Interpreter_FOUND)
  add_test(NAME agent-commit
    COMMAND ${Python3_EXECUTABLE}
      ${PROJECT_SOURCE_DIR}/tests/faults/test_commit.py
      $<TARGET_FILE:vmig-agent> $<TARGET_FILE:vmig-faultproxy>)
  set_tests_properties(agent-commit PROPERTIES LABELS func TIMEOUT 600)
endif()

# The cells of the fault matrix that ran the VM twice before the commit
# protocol (the return path cut, reset, truncated, flipped or stalled past
# the peer timeout at CONFIRM; the destination stopped during stop-copy
# device state; a cancel at confirm): each must end with exactly one VM.
if(TARGET vmig-agent AND TARGET vmig-faultproxy AND Python3_Interpreter_FOUND)
  add_test(NAME fault-matrix-split-brain
    COMMAND ${Python3_EXECUTABLE}
      ${PROJECT_SOURCE_DIR}/tests/faults/matrix.py
      --vmig $<TARGET_FILE:vmig-agent> --proxy $<TARGET_FILE:vmig-faultproxy>
      --cells cut:confirm,reset:confirm,truncate:confirm,flip:confirm,stall-long:confirm,stop-dst:sc-dev,cancel:confirm
      --table ${CMAKE_BINARY_DIR}/faults-split-brain.md)
  set_tests_properties(fault-matrix-split-brain PROPERTIES LABELS func TIMEOUT 600)
endif()

# Parallel channels between agent processes (tests/faults/test_channels.py):
# one extra channel cut fails the whole migration cleanly; over TLS every
# channel authenticates; a destination with one channel gets one.
if(TARGET vmig-agent AND TARGET vmig-faultproxy AND Python3_Interpreter_FOUND)
  foreach(c cut tls one)
    add_test(NAME agent-channels-${c}
      COMMAND ${Python3_EXECUTABLE}
        ${PROJECT_SOURCE_DIR}/tests/faults/test_channels.py
        $<TARGET_FILE:vmig-agent> $<TARGET_FILE:vmig-faultproxy> ${c})
    set_tests_properties(agent-channels-${c} PROPERTIES LABELS func TIMEOUT 300)
  endforeach()
endif()

# The cells where the guest made no progress after the migration: a device
# reset the guest's accelerator driver did not recover from (in precopy,
# the migration completes; in stop-copy, it rolls back), and a migration
# long enough (held to 2 MB/s) that the guest's ledger program finished,
# which must not pass for a stalled vCPU (issue 14; docs/faults.md).
if(TARGET vmig-agent AND TARGET vmig-faultproxy AND Python3_Interpreter_FOUND)
  add_test(NAME fault-matrix-progress
    COMMAND ${Python3_EXECUTABLE}
      ${PROJECT_SOURCE_DIR}/tests/faults/matrix.py
      --vmig $<TARGET_FILE:vmig-agent> --proxy $<TARGET_FILE:vmig-faultproxy>
      --cells device-reset:pass1,device-reset:sc-ram,bandwidth-raise:after
      --table ${CMAKE_BINARY_DIR}/faults-progress.md)
  set_tests_properties(fault-matrix-progress PROPERTIES LABELS func TIMEOUT 600)
endif()

# What the two-phase P2P quiesce buys (tests/faults/test_p2p.py): two
# flowtab devices forwarding into each other lose no P2P record across a
# migration, and lose some with the P2P phase skipped
# (x-vmig-test-one-phase-stop), by the guest's counters.
if(TARGET vmig-agent AND TARGET vmig-flowtab AND Python3_Interpreter_FOUND)
  foreach(c two-phase one-phase)
    add_test(NAME agent-p2p-${c}
      COMMAND ${Python3_EXECUTABLE}
        ${PROJECT_SOURCE_DIR}/tests/faults/test_p2p.py
        $<TARGET_FILE:vmig-agent> ${c})
    set_tests_properties(agent-p2p-${c} PROPERTIES LABELS func TIMEOUT 600)
  endforeach()
endif()
