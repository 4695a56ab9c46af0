# libFuzzer harness over the vfio-user server's message handling.
vmig_fuzz_target(fuzz_vfu_server
  ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_vfu_server.c
  ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/vfu_server)
if(VMIG_FUZZ)
  # libvmig itself is not built with coverage instrumentation; compile the
  # code under test into the fuzzer so libFuzzer can see its edges (these
  # objects take precedence over the archive's members at link time).
  target_sources(fuzz_vfu_server PRIVATE
    ${PROJECT_SOURCE_DIR}/lib/proto.c ${PROJECT_SOURCE_DIR}/lib/tran_sock.c
    ${PROJECT_SOURCE_DIR}/lib/vfu_server.c ${PROJECT_SOURCE_DIR}/lib/mig.c
    ${PROJECT_SOURCE_DIR}/lib/fsm.c)
endif()
