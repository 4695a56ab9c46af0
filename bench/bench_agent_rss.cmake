# Peak RSS of the vmig agent processes (source and destination) migrating
# a vfio-user test device with a large state; runs the built agent.
vmig_bench(bench_agent_rss)
target_compile_definitions(bench_agent_rss PRIVATE
  VMIG_AGENT_BIN="$<TARGET_FILE:vmig-agent>"
  VFU_TESTDEV_BIN="$<TARGET_FILE:vfu-testdev>")
add_dependencies(bench_agent_rss vmig-agent vfu-testdev)
