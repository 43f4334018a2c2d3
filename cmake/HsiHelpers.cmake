# Small helpers in the spirit of absl_cc_library / absl_cc_test.

# Warnings for our own code only; third-party headers come in as SYSTEM.
set(HSI_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
    -Wcast-align -Wunused -Woverloaded-virtual -Wnull-dereference
    -Wimplicit-fallthrough -Werror)

# -Wnull-dereference rests on the optimizer's flow analysis, and under
# sanitizer instrumentation (at -O1, see CMakePresets.json) GCC 12 reports
# paths inside absl::Status that cannot happen. The release build keeps it.
if(HSI_SANITIZE)
  list(REMOVE_ITEM HSI_WARNINGS -Wnull-dereference)
endif()

function(hsi_warnings target)
  target_compile_options(${target} PRIVATE ${HSI_WARNINGS})
endfunction()

# How test code is compiled: the house warnings, plus -O1 instead of -O3 in
# a release build (the code under test is the libraries', compiled at -O3;
# a test file at -O1 compiles in about two thirds of the time; at -O1
# GCC 12's -Wnull-dereference reports impossible paths, as in the sanitizer
# builds above, so tests go without it), and -Winvalid-pch so that a precompiled header GCC refuses fails the build
# instead of silently costing its time again.
function(hsi_test_compile_options target)
  hsi_warnings(${target})
  target_compile_options(${target} PRIVATE $<$<CONFIG:Release>:-O1 -Wno-null-dereference> -Winvalid-pch)
endfunction()

# The target that compiles the tests' precompiled header once; every test
# reuses it (the same flags: both come from hsi_test_compile_options).
set(HSI_HELPERS_DIR ${CMAKE_CURRENT_LIST_DIR})
function(hsi_test_pch_target)
  if(TARGET hsi_test_pch)
    return()
  endif()
  add_executable(hsi_test_pch ${HSI_HELPERS_DIR}/test_pch_host.cc)
  hsi_test_compile_options(hsi_test_pch)
  target_link_libraries(hsi_test_pch PRIVATE absl::status absl::statusor absl::strings absl::time
                        GTest::gtest GTest::gmock)
  target_precompile_headers(hsi_test_pch PRIVATE ${HSI_HELPERS_DIR}/test_pch.h)
endfunction()

# hsi_cc_test(NAME name SRCS ... DEPS ... [TIMEOUT s] [LABELS ...])
# One binary per test file, registered with ctest under a timeout.
function(hsi_cc_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  hsi_test_pch_target()
  add_executable(${T_NAME} ${T_SRCS})
  hsi_test_compile_options(${T_NAME})
  target_link_libraries(${T_NAME} PRIVATE ${T_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  # One precompiled header for all tests, compiled once (cmake/test_pch.h).
  target_precompile_headers(${T_NAME} REUSE_FROM hsi_test_pch)
  add_test(NAME ${T_NAME} COMMAND ${T_NAME})
  # Serial: spinning tests on a 2-core machine must not share it.
  set_tests_properties(${T_NAME} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}" RUN_SERIAL TRUE)
  # `cmake --build ... --target hsi_sanitize_tests` builds just what the
  # sanitizer runs of packaging/test.sh execute (label "sanitize").
  if(NOT TARGET hsi_sanitize_tests)
    add_custom_target(hsi_sanitize_tests)
    # The ASan+UBSan run adds the tests labelled "asan": programs whose own
    # code (hsi-ifd's pump) needs ASan+UBSan but whose tests are no place for
    # TSan (network namespaces, real programs, minutes under TSan).
    add_custom_target(hsi_asan_tests)
    add_dependencies(hsi_asan_tests hsi_sanitize_tests)
  endif()
  if("sanitize" IN_LIST T_LABELS)
    add_dependencies(hsi_sanitize_tests ${T_NAME})
  endif()
  if("asan" IN_LIST T_LABELS)
    add_dependencies(hsi_asan_tests ${T_NAME})
  endif()
endfunction()

include(GNUInstallDirs)

# hsi_program(NAME name SRCS ... DEPS ... [DESTINATION bin|sbin] [NOINSTALL])
# An executable of ours: warnings as errors, lands in build/bin/, and is
# installed to ${CMAKE_INSTALL_BINDIR} (or SBINDIR) with component "tools"
# (or "daemon" for sbin) unless NOINSTALL.
function(hsi_program)
  cmake_parse_arguments(P "NOINSTALL" "NAME;DESTINATION;COMPONENT" "SRCS;DEPS" ${ARGN})
  add_executable(${P_NAME} ${P_SRCS})
  target_link_libraries(${P_NAME} PRIVATE ${P_DEPS})
  hsi_warnings(${P_NAME})
  if(NOT P_NOINSTALL)
    if(P_DESTINATION STREQUAL "sbin")
      set(dest ${CMAKE_INSTALL_SBINDIR})
      set(comp daemon)
    else()
      set(dest ${CMAKE_INSTALL_BINDIR})
      set(comp tools)
    endif()
    if(P_COMPONENT)
      set(comp ${P_COMPONENT})
    endif()
    install(TARGETS ${P_NAME} RUNTIME DESTINATION ${dest} COMPONENT ${comp})
  endif()
  hsi_help_test(${P_NAME})
endfunction()

# Every program's --help prints its usage on stdout and exits 0.
function(hsi_help_test name)
  if(HSI_BUILD_TESTS)
    add_test(NAME ${name}_help_exits_zero
             COMMAND sh -c "out=$(\"$0\" --help) && [ -n \"$out\" ]" $<TARGET_FILE:${name}>)
    set_tests_properties(${name}_help_exits_zero PROPERTIES LABELS "tools;unit" TIMEOUT 30)
  endif()
endfunction()
