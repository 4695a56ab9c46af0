# libFuzzer harness for the envelope loader; the corpus includes the golden
# stream so mutations start from a fully valid envelope.
vmig_fuzz_target(stream_load ${PROJECT_SOURCE_DIR}/tests/fuzz/stream_load.c
  ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/stream_load)
