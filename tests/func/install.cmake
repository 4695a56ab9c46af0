# Installing works and the pkg-config file is usable (not under sanitizers:
# the test program is built without them).
if(NOT VMIG_SANITIZE)
  add_test(NAME install-pkgconfig
    COMMAND ${PROJECT_SOURCE_DIR}/tests/func/install-pkgconfig.sh
      ${PROJECT_BINARY_DIR} ${CMAKE_C_COMPILER})
  set_tests_properties(install-pkgconfig PROPERTIES LABELS func TIMEOUT 120)
endif()
