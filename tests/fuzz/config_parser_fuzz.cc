// libFuzzer target: hsid's TOML config parser. Any input must give either a
// config that passes hsid's own CHPID checks or a kInvalidArgument whose
// message names the source; never a crash, an uncaught exception or a hang.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "config.h"
#include "hsi/ring.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto config = hsid::ParseConfig(text, "fuzz.toml", 1000);
  if (config.ok()) {
    for (const auto& [id, c] : config->chpids) {
      if (id > 0xff || c.id != id || !hsi::RingGeometry{c.queue_size, c.mtu}.Validate().ok()) {
        std::fprintf(stderr, "config_parser_fuzz: accepted an invalid CHPID\n");
        std::abort();
      }
    }
  } else if (config.status().code() != absl::StatusCode::kInvalidArgument ||
             config.status().message().find("fuzz.toml") == absl::string_view::npos) {
    std::fprintf(stderr, "config_parser_fuzz: bad error: %s\n", config.status().ToString().c_str());
    std::abort();
  }
  return 0;
}
