# flowtab precopy over vfio-user: vmig-flowtab servers in forked children.
vmig_bench(bench_flowtab_vfu LIBS vmig_flowtab)
