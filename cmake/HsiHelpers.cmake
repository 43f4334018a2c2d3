# Small helpers in the spirit of absl_cc_library / absl_cc_test.

# Warnings for our own code only; third-party headers come in as SYSTEM.
set(HSI_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
    -Wcast-align -Wunused -Woverloaded-virtual -Wnull-dereference
    -Wimplicit-fallthrough -Werror)

function(hsi_warnings target)
  target_compile_options(${target} PRIVATE ${HSI_WARNINGS})
endfunction()

# hsi_cc_test(NAME name SRCS ... DEPS ... [TIMEOUT s] [LABELS ...])
# One binary per test file, registered with ctest under a timeout.
function(hsi_cc_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  add_executable(${T_NAME} ${T_SRCS})
  hsi_warnings(${T_NAME})
  target_link_libraries(${T_NAME} PRIVATE ${T_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  add_test(NAME ${T_NAME} COMMAND ${T_NAME})
  # Serial: spinning tests on a 2-core machine must not share it.
  set_tests_properties(${T_NAME} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}" RUN_SERIAL TRUE)
endfunction()
