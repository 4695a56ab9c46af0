# `make install` (DESTDIR and --prefix) gives a complete, usable tree: a
# program built with pkg-config, man pages the Debian tools read, bash
# completion, the systemd unit (not under sanitizers: the test program is
# built without them).
if(NOT VMIG_SANITIZE)
  add_test(NAME install-pkgconfig
    COMMAND ${PROJECT_SOURCE_DIR}/tests/func/install-pkgconfig.sh
      ${PROJECT_BINARY_DIR} ${CMAKE_C_COMPILER} ${PROJECT_SOURCE_DIR})
  set_tests_properties(install-pkgconfig PROPERTIES LABELS func TIMEOUT 300)
endif()
