# The flowtab stream loader (device model compiled in through a library,
# instrumented for coverage when fuzzing).
add_library(flowtab_model_fuzz STATIC
  ${PROJECT_SOURCE_DIR}/devices/flowtab/flowtab_model.c)
target_link_libraries(flowtab_model_fuzz PUBLIC vmig_static)
if(VMIG_FUZZ)
  target_compile_options(flowtab_model_fuzz PRIVATE -fsanitize=fuzzer-no-link)
endif()
vmig_fuzz_target(fuzz_flowtab_stream
  ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_flowtab_stream.c
  ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/flowtab_stream
  LIBS flowtab_model_fuzz)
