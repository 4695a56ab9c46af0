vmig_fuzz_target(fuzz_acc_mmio
  ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_acc_mmio.c
  ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/fuzz_acc_mmio
  LIBS vmig_acc)
