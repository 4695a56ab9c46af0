# The agent's QMP framer, serializer and argument checker, compiled in.
vmig_unit_test(test_qmp_wire
  SOURCES ${PROJECT_SOURCE_DIR}/agent/qmp_wire.c
          ${PROJECT_SOURCE_DIR}/agent/qmp_args.c
  LIBS PkgConfig::JSONC)
target_include_directories(test_qmp_wire PRIVATE ${PROJECT_SOURCE_DIR}/agent)
