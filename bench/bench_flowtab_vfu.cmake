# flowtab precopy over vfio-user: vmig-flowtab servers in forked children.
vmig_bench(bench_flowtab_vfu
  SOURCES ${PROJECT_SOURCE_DIR}/devices/flowtab/flowtab_server.c
  ${PROJECT_SOURCE_DIR}/devices/flowtab/flowtab_env.c
          ${PROJECT_SOURCE_DIR}/devices/flowtab/flowtab_model.c
          ${PROJECT_SOURCE_DIR}/devices/flowtab/ft_guest.c
  LIBS PkgConfig::XXHASH)
target_include_directories(bench_flowtab_vfu PRIVATE
  ${PROJECT_SOURCE_DIR}/devices/flowtab)
