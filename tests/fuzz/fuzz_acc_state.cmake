vmig_fuzz_target(fuzz_acc_state
  ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_acc_state.c
  ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/fuzz_acc_state
  LIBS vmig_acc)
