# vmig-flowtab's incoming path: the envelope around the flowtab stream
# (flowtab_env.c + the model, instrumented for coverage when fuzzing).
add_library(flowtab_env_fuzz STATIC
  ${PROJECT_SOURCE_DIR}/devices/flowtab/flowtab_env.c
  ${PROJECT_SOURCE_DIR}/devices/flowtab/flowtab_model.c)
target_link_libraries(flowtab_env_fuzz PUBLIC vmig_static PkgConfig::XXHASH)
if(VMIG_FUZZ)
  target_compile_options(flowtab_env_fuzz PRIVATE -fsanitize=fuzzer-no-link)
endif()
vmig_fuzz_target(fuzz_flowtab_env
  ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_flowtab_env.c
  ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/flowtab_env
  LIBS flowtab_env_fuzz)
