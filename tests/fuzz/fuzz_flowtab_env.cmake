# vmig-flowtab's incoming path: the envelope around the flowtab stream
# (flowtab_env.c + the model in vmig_flowtab, instrumented for coverage
# when fuzzing).
vmig_fuzz_target(fuzz_flowtab_env
  ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_flowtab_env.c
  ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/flowtab_env
  LIBS vmig_flowtab)
