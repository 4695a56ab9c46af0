# libFuzzer harness for descriptor parsing (binary and JSON forms).
vmig_fuzz_target(compat_desc ${PROJECT_SOURCE_DIR}/tests/fuzz/compat_desc.c
  ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/compat_desc)
if(VMIG_FUZZ)
  # vmig_static is not built with coverage instrumentation; compile the
  # library sources into the fuzzer itself so coverage guides mutation.
  target_sources(compat_desc PRIVATE ${VMIG_LIB_SOURCES})
  target_include_directories(compat_desc PRIVATE ${PROJECT_SOURCE_DIR}/lib)
endif()
