vmig_fuzz_target(fuzz_engine_dst
  ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_engine_dst.c
  ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/engine_dst)
