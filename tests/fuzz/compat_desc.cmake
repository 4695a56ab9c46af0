# libFuzzer harness for descriptor parsing (binary and JSON forms).
vmig_fuzz_target(compat_desc ${PROJECT_SOURCE_DIR}/tests/fuzz/compat_desc.c
  ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/compat_desc)
