# The engine migrating vfio-user test device server processes through the
# vfio-user backend, with failure injection (tests/func/test_engine_vfu.c).
add_executable(test_engine_vfu ${PROJECT_SOURCE_DIR}/tests/func/test_engine_vfu.c
  ${PROJECT_SOURCE_DIR}/tests/func/vfu_testdev.c)
target_link_libraries(test_engine_vfu PRIVATE vmig_static vmig_testkit
  PkgConfig::XXHASH Threads::Threads)
foreach(case ok refuse corrupt cut middev rss killed cancel config cfgreplay)
  add_test(NAME engine-vfu-${case} COMMAND test_engine_vfu ${case})
  set_tests_properties(engine-vfu-${case} PROPERTIES LABELS func TIMEOUT 60)
endforeach()
