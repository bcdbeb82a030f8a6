// Config files: whatever a TOML file holds, loading it gives a config or a config_error that
// says what is wrong (never a crash, never another exception).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "txbox/inbox.hpp"
#include "txbox/relay.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/tmp/txbox_fuzz_config_" + std::to_string(::getpid()) + ".toml";
  if (FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(data, 1, size, f);
    std::fclose(f);
  }
  try {
    (void)txbox::load_consumer_config(path);
  } catch (const txbox::config_error&) {
  }
  try {
    (void)txbox::load_relay_config(path);
  } catch (const txbox::config_error&) {
  }
  return 0;
}
