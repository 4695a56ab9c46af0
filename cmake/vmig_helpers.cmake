# Helpers shared by tests/, tools/, devices/ and agent/.

# vmig_unit_test(<name> [SOURCES extra.c...] [LIBS lib...] [TIMEOUT s])
# Builds tests/unit/<name>.c against the static library and cmocka.
function(vmig_unit_test name)
  cmake_parse_arguments(U "" "TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT U_TIMEOUT)
    set(U_TIMEOUT 120)
  endif()
  add_executable(${name} ${PROJECT_SOURCE_DIR}/tests/unit/${name}.c
    ${U_SOURCES})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/lib
    ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE vmig_static vmig_testkit
    PkgConfig::CMOCKA ${U_LIBS})
  target_compile_definitions(${name} PRIVATE
    VMIG_TEST_DATA="${PROJECT_SOURCE_DIR}/tests/data")
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES LABELS unit TIMEOUT ${U_TIMEOUT})
endfunction()

# vmig_fuzz_target(<name> <source> <corpus-dir> [LIBS lib...])
# Always builds <name>-replay (gcc or clang), a program that feeds every
# corpus file to LLVMFuzzerTestOneInput, registered as a "fuzz" test.
# With VMIG_FUZZ (clang), also builds the libFuzzer binary <name> and a
# time-boxed smoke run over a scratch copy of the corpus.
function(vmig_fuzz_target name source corpus)
  cmake_parse_arguments(F "" "" "LIBS" ${ARGN})
  add_executable(${name}-replay ${source}
    ${PROJECT_SOURCE_DIR}/tests/fuzz/replay_main.c)
  target_include_directories(${name}-replay PRIVATE ${PROJECT_SOURCE_DIR}/lib)
  target_link_libraries(${name}-replay PRIVATE vmig_static vmig_testkit
    ${F_LIBS})
  add_test(NAME ${name}-replay COMMAND ${name}-replay ${corpus})
  set_tests_properties(${name}-replay PROPERTIES LABELS fuzz TIMEOUT 300)
  if(VMIG_FUZZ)
    add_executable(${name} ${source})
    target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/lib)
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_libraries(${name} PRIVATE vmig_static vmig_testkit ${F_LIBS})
    add_test(NAME ${name}-smoke
      COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=1
        ${PROJECT_SOURCE_DIR}/tests/fuzz/run-smoke.sh
        $<TARGET_FILE:${name}> ${corpus} ${VMIG_FUZZ_SECONDS})
    set_tests_properties(${name}-smoke PROPERTIES LABELS fuzz
      TIMEOUT 600)
  endif()
endfunction()
