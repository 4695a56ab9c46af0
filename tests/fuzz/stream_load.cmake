# libFuzzer harness for the envelope loader; the corpus includes the golden
# stream so mutations start from a fully valid envelope.
vmig_fuzz_target(stream_load ${PROJECT_SOURCE_DIR}/tests/fuzz/stream_load.c
  ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/stream_load)
if(VMIG_FUZZ)
  # vmig_static is not built with coverage instrumentation; compile the
  # library sources into the fuzzer itself so coverage guides mutation.
  target_sources(stream_load PRIVATE ${VMIG_LIB_SOURCES})
  target_include_directories(stream_load PRIVATE ${PROJECT_SOURCE_DIR}/lib)
endif()
