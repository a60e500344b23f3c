#include "mdn/evaluate.hpp"

#include "mdn/exact.hpp"

namespace mdn {

EvalResult evaluate(Network<float>& net, const float* params, const Mat<float>& shard, Comm& comm) {
  const Index D = net.spec().input_dim;
  const Index L = net.spec().output_dim;
  const Index block = net.max_n();
  const Index n = shard.cols();
  Mat<float> x(D, block), y(L, block);
  Eigen::MatrixXd per_sample(1, n);
  for (Index j = 0; j < n; j += block) {
    const Index len = std::min(block, n - j);
    x.leftCols(len) = shard.block(0, j, D, len);
    y.leftCols(len) = shard.block(D, j, L, len);
    net.loss(params, x.leftCols(len), y.leftCols(len), per_sample.data() + j);
  }
  EvalResult r;
  r.nll_sum = exact_sums(per_sample, comm)[0];
  r.rows = comm.sum<std::int64_t>(n);
  return r;
}

}  // namespace mdn
