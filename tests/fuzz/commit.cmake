vmig_fuzz_target(fuzz_commit ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_commit.c
  ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/commit)
