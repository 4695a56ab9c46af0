# libFuzzer harness over the vfio-user server's message handling.
vmig_fuzz_target(fuzz_vfu_server
  ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_vfu_server.c
  ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/vfu_server)
if(VMIG_FUZZ)
  # libvmig itself is not built with coverage instrumentation; compile the
  # code under test into the fuzzer so libFuzzer can see its edges (these
  # objects take precedence over the archive's members at link time).
  set(srv ${PROJECT_SOURCE_DIR}/lib)
  target_sources(fuzz_vfu_server PRIVATE
    ${srv}/proto.c ${srv}/tran_sock.c ${srv}/vfu_server.c
    ${srv}/vfu_dispatch.c ${srv}/vfu_feature.c ${srv}/vfu_region.c
    ${srv}/vfu_irq.c ${srv}/vfu_dma.c ${srv}/vfu_dirty.c ${srv}/vfu_mig.c
    ${srv}/vfu_fuzz.c ${srv}/device.c ${srv}/fsm.c)
endif()
