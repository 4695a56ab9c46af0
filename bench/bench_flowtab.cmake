# The flowtab device model and guest driver are compiled into the benchmark.
vmig_bench(bench_flowtab
  SOURCES ${PROJECT_SOURCE_DIR}/devices/flowtab/flowtab_model.c
          ${PROJECT_SOURCE_DIR}/devices/flowtab/ft_guest.c)
