// Shared bits of the examples: argument parsing kept tiny on purpose.
#ifndef HSI_EXAMPLES_COMMON_H_
#define HSI_EXAMPLES_COMMON_H_

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"

// Prints `status` with what failed and exits 1.
inline void Check(const absl::Status& status, const char* what) {
  if (!status.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, status.ToString().c_str());
    std::exit(1);
  }
}

// Parses a positive count or exits 2 with a message.
inline long ParseCount(const char* text, const char* name) {
  char* end = nullptr;
  long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v <= 0) {
    std::fprintf(stderr, "%s must be a positive number, got '%s'\n", name, text);
    std::exit(2);
  }
  return v;
}

// CHPID F0 is hsid's built-in default.
constexpr uint32_t kChpid = 0xF0;

#endif  // HSI_EXAMPLES_COMMON_H_
