vmig_unit_test(test_acc_model_state
  SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/acc_rig.c
    ${PROJECT_SOURCE_DIR}/tests/unit/acc_model_fixture.c
  LIBS vmig_acc PkgConfig::ZSTD PkgConfig::ZLIB PkgConfig::CRYPTO
  TIMEOUT 120)
