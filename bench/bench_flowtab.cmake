# The flowtab device model and guest driver (vmig_flowtab).
vmig_bench(bench_flowtab LIBS vmig_flowtab)
