vmig_fuzz_target(fuzz_migproto ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_migproto.c
  ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/migproto)
