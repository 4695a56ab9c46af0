# libFuzzer harness for the vfio-user client against a hostile server.
vmig_fuzz_target(fuzz_vfu_client
  ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_vfu_client.c
  ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/vfu_client)
if(VMIG_FUZZ)
  target_sources(fuzz_vfu_client PRIVATE
    ${PROJECT_SOURCE_DIR}/lib/proto.c ${PROJECT_SOURCE_DIR}/lib/tran_sock.c
    ${PROJECT_SOURCE_DIR}/lib/vfu_client.c)
endif()
