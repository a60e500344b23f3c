// libFuzzer target: mdn's config validation (size and nesting bounds, the key table, every
// setter, the cross-key rules) on arbitrary text. Any outcome but a valid config or an
// mdn::Error is a bug; a valid config must survive a round trip through its resolved YAML.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "mdn/config.hpp"
#include "mdn/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  mdn::Config c;
  try {
    c = mdn::parse_config(text, "fuzz.yaml");
  } catch (const mdn::Error& e) {
    if (e.code() != mdn::Exit::input) std::abort();  // bad input is exit code 2, always
    return 0;
  }
  const std::string yaml = mdn::to_yaml(c);
  try {
    const mdn::Config again = mdn::parse_config(yaml, "resolved.yaml");
    if (mdn::to_yaml(again) != yaml) std::abort();
  } catch (const mdn::Error&) {
    std::abort();  // a resolved config must parse
  }
  return 0;
}
