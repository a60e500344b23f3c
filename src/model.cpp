#include "mdn/model.hpp"

#include <cassert>
#include <cmath>

#include "mdn/error.hpp"
#include "mdn/random.hpp"

namespace mdn {


void ModelSpec::validate() const {
  if (input_dim < 1) throw input_error("model input dimension must be positive, got {}", input_dim);
  if (output_dim < 1) throw input_error("model output dimension must be positive, got {}", output_dim);
  if (components < 1) throw input_error("model.components must be positive, got {}", components);
  for (std::size_t i = 0; i < hidden.size(); ++i)
    if (hidden[i] < 1) throw input_error("model.hidden[{}] must be positive, got {}", i, hidden[i]);
  if (!(sigma_min > 0) || !std::isfinite(sigma_min))
    throw input_error("model.sigma_min must be positive and finite, got {}", sigma_min);
}

Layout::Layout(const ModelSpec& spec) : layers_(spec.layers()) {
  for (int i = 0; i < layers_; ++i) {
    const Index in = spec.layer_in(i);
    const Index out = spec.layer_out(i);
    const std::string prefix = "layers/" + std::to_string(i) + "/";
    slots_.push_back({prefix + "weight", size_, out, in, true, i, Slot::Kind::weight});
    size_ += out * in;
    slots_.push_back({prefix + "bias", size_, out, 1, false, i, Slot::Kind::bias});
    size_ += out;
  }
  // The slots tile the buffer: each starts where the previous ends.
  Index end = 0;
  for (const Slot& s : slots_) {
    assert(s.offset == end);
    end = s.offset + s.size();
  }
  assert(end == size_);
  (void)end;
}

template <class S>
void initialize(S* buffer, const Layout& layout, std::uint64_t seed) {
  const auto& slots = layout.slots();
  for (std::size_t s = 0; s < slots.size(); ++s) {
    const Slot& slot = slots[s];
    const Index fan_in = layout.weight(slot.layer).cols;
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    for (Index j = 0; j < slot.size(); ++j) {
      const double u = rng::uniform(seed, rng::kInit, (static_cast<std::uint64_t>(s) << 32) +
                                                          static_cast<std::uint64_t>(j));
      buffer[slot.offset + j] = static_cast<S>((2.0 * u - 1.0) * bound);
    }
  }
}

template void initialize<float>(float*, const Layout&, std::uint64_t);
template void initialize<double>(double*, const Layout&, std::uint64_t);

}  // namespace mdn
