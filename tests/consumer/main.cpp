// Prints what the embedding API gives for the rows of a text file, for test_embed to compare
// with `mdn predict`, `mdn eval` and `mdn sample`.
//
//   consumer CHECKPOINT ROWS.txt SEED
//
// ROWS.txt: "N D L", then N lines of D inputs and L targets. Prints, one line each:
//   model D L K full LEVEL
//   mix i pi... mu... sigma... [covariance...]     (Model::mixtures over all rows)
//   one i pi... mu... sigma...                     (Model::mixture of row i alone)
//   logp i value                                   (Model::log_density)
//   quantiles i q...                               (Model::quantiles at 0.05, 0.5, 0.95: (3, L))
//   sample i y...                                  (Model::sample: 3 draws, seed SEED, row i)
#include <mdn/mdn.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <vector>

namespace {

void print(const char* tag, std::size_t i, const std::vector<double>& v) {
  std::printf("%s %zu", tag, i);
  for (double d : v) std::printf(" %.17g", d);
  std::printf("\n");
}

std::vector<double> flat(const mdn::MixtureParams& p) {
  std::vector<double> v = p.pi;
  v.insert(v.end(), p.mu.begin(), p.mu.end());
  v.insert(v.end(), p.sigma.begin(), p.sigma.end());
  v.insert(v.end(), p.covariance.begin(), p.covariance.end());
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: consumer CHECKPOINT ROWS.txt SEED\n");
    return 2;
  }
  try {
    const mdn::Model model = mdn::Model::load(argv[1]);
    std::ifstream in(argv[2]);
    std::size_t N = 0, D = 0, L = 0;
    in >> N >> D >> L;
    if (static_cast<int>(D) != model.input_dim() || static_cast<int>(L) != model.output_dim())
      throw std::runtime_error("the rows do not fit the model");
    std::vector<float> x(N * D), y(N * L);
    for (std::size_t i = 0; i < N; ++i) {
      for (std::size_t d = 0; d < D; ++d) in >> x[i * D + d];
      for (std::size_t l = 0; l < L; ++l) in >> y[i * L + l];
    }
    std::printf("model %d %d %d %d %s\n", model.input_dim(), model.output_dim(), model.components(),
                model.full_covariance() ? 1 : 0, model.cpu_level().c_str());
    const std::vector<mdn::MixtureParams> all = model.mixtures(x.data(), N);
    const auto seed = static_cast<std::uint64_t>(std::strtoull(argv[3], nullptr, 10));
    for (std::size_t i = 0; i < N; ++i) {
      print("mix", i, flat(all[i]));
      print("one", i, flat(model.mixture(x.data() + i * D)));
      print("logp", i, {model.log_density(x.data() + i * D, y.data() + i * L)});
      print("quantiles", i, model.quantiles(x.data() + i * D, {0.05, 0.5, 0.95}));
      print("sample", i, model.sample(x.data() + i * D, 3, seed, i));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return 1;
  }
  return 0;
}
