#include "mdn/h5.hpp"

#include <vector>

namespace mdn::h5 {

void quiet() {
  static const bool done = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

namespace {

struct Frame {
  std::string desc;
  std::string minor;
};

herr_t collect(unsigned, const H5E_error2_t* e, void* out) {
  auto* frames = static_cast<std::vector<Frame>*>(out);
  Frame f;
  if (e->desc != nullptr) f.desc = e->desc;
  char text[256];
  H5E_type_t type;
  const ssize_t n = H5Eget_msg(e->min_num, &type, text, sizeof text);
  if (n > 0) f.minor.assign(text, static_cast<std::size_t>(std::min<ssize_t>(n, sizeof text - 1)));
  frames->push_back(std::move(f));
  return 0;
}

}  // namespace

std::string take_error_stack() {
  const hid_t stack = H5Eget_current_stack();  // copies and clears the current stack
  if (stack < 0) return {};
  std::vector<Frame> frames;
  H5Ewalk2(stack, H5E_WALK_DOWNWARD, collect, &frames);
  H5Eclose_stack(stack);
  if (frames.empty()) return {};
  // Downward walk: the API call first, the innermost failure last.
  const Frame& inner = frames.back();
  std::string text = inner.desc;
  if (!inner.minor.empty() && inner.desc.find(inner.minor) == std::string::npos)
    text += text.empty() ? inner.minor : " (" + inner.minor + ")";
  return text;
}

void fail(std::string_view what, Exit code) {
  const std::string detail = take_error_stack();
  if (detail.empty()) throw Error(code, std::string(what));
  throw Error(code, fmt::format("{}: {}", what, detail));
}

void Handle::close(std::string_view what, Exit code) {
  if (!valid()) return;
  const hid_t id = std::exchange(id_, H5I_INVALID_HID);
  check(H5Idec_ref(id), what, code);
}

void Handle::reset() noexcept {
  if (valid()) H5Idec_ref(id_);
  id_ = H5I_INVALID_HID;
}

}  // namespace mdn::h5
