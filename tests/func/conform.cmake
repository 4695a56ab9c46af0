# `vmig conform` over vmig's devices (everything they advertise passes)
# and over the foreign test server (exactly its deliberate deviations
# fail); tests/func/conform.sh.
find_program(VMIG_PYTHON3 NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
find_program(VMIG_PYTHON3 NAMES python3)
if(TARGET vmig-agent AND VMIG_PYTHON3)
  foreach(c acc flowtab testdev foreign cli)
    add_test(NAME conform-${c}
      COMMAND ${PROJECT_SOURCE_DIR}/tests/func/conform.sh
        $<TARGET_FILE:vmig-agent> ${PROJECT_BINARY_DIR} ${VMIG_PYTHON3}
        ${PROJECT_SOURCE_DIR}/tests/data/fsm-next-step.txt ${c})
    set_tests_properties(conform-${c} PROPERTIES LABELS func TIMEOUT 300)
  endforeach()
endif()
