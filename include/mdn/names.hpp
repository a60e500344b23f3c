// The names of mdn's enumerations: one table per enumeration, defined next to it
// (`template <> struct EnumNames<E>`), through which the config, the checkpoint, metrics and
// messages read and write them. A name written by one is always read back by the others.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace mdn {

/// Specialised next to each enumeration: `static constexpr std::pair<E, const char*> table[]`,
/// every value with its name, in the order that messages list them.
template <class E>
struct EnumNames;

/// The name of a value ("?" for a value outside the table, which a cast could make).
template <class E, class = decltype(EnumNames<E>::table)>
const char* to_string(E e) {
  for (const auto& [value, name] : EnumNames<E>::table)
    if (value == e) return name;
  return "?";
}

/// The value of a name; none for anything else.
template <class E>
std::optional<E> from_name(std::string_view s) {
  for (const auto& [value, name] : EnumNames<E>::table)
    if (s == name) return value;
  return std::nullopt;
}

/// Every name, as messages and the config reference list them: "tanh | relu".
template <class E>
std::string names_of() {
  std::string out;
  for (const auto& [value, name] : EnumNames<E>::table) out += (out.empty() ? "" : " | ") + std::string(name);
  return out;
}

}  // namespace mdn
