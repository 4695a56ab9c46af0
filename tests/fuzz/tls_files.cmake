vmig_fuzz_target(fuzz_tls_files ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_tls_files.c
  ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/tls_files)
