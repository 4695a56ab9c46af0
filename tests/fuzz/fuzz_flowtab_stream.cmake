# The flowtab stream loader (the device, vmig_flowtab, is instrumented for
# coverage when fuzzing).
vmig_fuzz_target(fuzz_flowtab_stream
  ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_flowtab_stream.c
  ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/flowtab_stream
  LIBS vmig_flowtab)
