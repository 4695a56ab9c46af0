# libFuzzer harness for the vfio-user codec and VERSION JSON parsing.
vmig_fuzz_target(fuzz_vfu_decode
  ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_vfu_decode.c
  ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/vfu_decode)
if(VMIG_FUZZ)
  target_sources(fuzz_vfu_decode PRIVATE ${PROJECT_SOURCE_DIR}/lib/proto.c)
endif()
