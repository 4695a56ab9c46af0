vmig_fuzz_target(fuzz_fsm ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_fsm.c
  ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/fsm)
