// Files written by h5py (float64, chunked, gzip, 1-D target) read as the same rows as the
// float32 contiguous file.
#include <gtest/gtest.h>

#include "mdn/data.hpp"
#include "support/process.hpp"
#include "test_paths.hpp"

namespace mdn::test {
namespace {

TEST(DataFiles, H5pyChunkedGzipFloat64AndOneDimensionalTargetReadAsTheSameRows) {
  TempDir dir;
  const Index N = 1001;
  const RunResult gen = run({"/usr/bin/python3", std::string(MDN_TEST_SOURCE_DIR) + "/tests/data/write_h5py_files.py",
                             dir.path(), std::to_string(N)});
  ASSERT_EQ(gen.exit_code, 0) << gen.all();

  const DataFileInfo a = inspect_data(dir / "f32.h5", "x", "y", "data.train");
  const DataFileInfo b = inspect_data(dir / "f64gz.h5", "inputs", "target", "data.train");
  EXPECT_EQ(a.x.bytes, 4u);
  EXPECT_EQ(a.x.storage, "contiguous");
  EXPECT_EQ(b.x.bytes, 8u);
  EXPECT_EQ(b.x.storage, "chunked, gzip");
  EXPECT_EQ(b.y.rank, 1);
  EXPECT_EQ(b.y.cols, 1);
  EXPECT_EQ(b.x.rows, N);

  SelfComm self;
  for (const RowRange r : {RowRange{0, N}, RowRange{100, 437}, RowRange{1000, 1001}}) {
    const Mat<float> sa = read_shard(a, r, self, nullptr, nullptr);
    const Mat<float> sb = read_shard(b, r, self, nullptr, nullptr);
    ASSERT_EQ(sa.rows(), 4);
    ASSERT_EQ(sa.cols(), r.size());
    EXPECT_EQ(sa, sb) << "rows " << r.begin << ".." << r.end;
    EXPECT_EQ(sa(2, 0), static_cast<float>(r.begin));  // column 2 holds the row id
  }
  // Normalised the same way too.
  Normalization na, nb;
  const Mat<float> ra = read_shard(a, {0, N}, self, nullptr, &na);
  const Mat<float> rb = read_shard(b, {0, N}, self, nullptr, &nb);
  EXPECT_EQ(ra, rb);
  EXPECT_EQ(na.x_mean, nb.x_mean);
  EXPECT_EQ(na.y_std, nb.y_std);
}

}  // namespace
}  // namespace mdn::test
