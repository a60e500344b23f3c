// Files written by h5py (float64, chunked, gzip, 1-D target) read as the same rows as the
// float32 contiguous file; the same rows split over three files read as one; file lists and
// patterns resolve as documented.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "mdn/data.hpp"
#include "mdn/error.hpp"
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
    const Mat<float> sa = read_shard(one_file(a), r, self, nullptr, nullptr);
    const Mat<float> sb = read_shard(one_file(b), r, self, nullptr, nullptr);
    ASSERT_EQ(sa.rows(), 4);
    ASSERT_EQ(sa.cols(), r.size());
    EXPECT_EQ(sa, sb) << "rows " << r.begin << ".." << r.end;
    EXPECT_EQ(sa(2, 0), static_cast<float>(r.begin));  // column 2 holds the row id
  }
  // Normalised the same way too.
  Normalization na, nb;
  ReadStats sta, stb;
  const Mat<float> ra = read_shard(one_file(a), {0, N}, self, nullptr, &na, &sta);
  const Mat<float> rb = read_shard(one_file(b), {0, N}, self, nullptr, &nb, &stb);
  EXPECT_EQ(ra, rb);
  EXPECT_EQ(na.x_mean, nb.x_mean);
  EXPECT_EQ(na.y_std, nb.y_std);
  // float32 is read once; float64 twice when its statistics are computed: once for them, once to
  // normalise.
  EXPECT_EQ(sta.passes, 1);
  EXPECT_EQ(sta.bytes, N * 4 * 4);
  EXPECT_EQ(stb.passes, 2);
  EXPECT_EQ(stb.bytes, 2 * N * 4 * 8);
}

TEST(DataFiles, RowsSplitOverThreeFilesReadAsOneFile) {
  TempDir dir;
  const Index N = 1001;
  const RunResult gen = run({"/usr/bin/python3", std::string(MDN_TEST_SOURCE_DIR) + "/tests/data/write_h5py_files.py",
                             dir.path(), std::to_string(N)});
  ASSERT_EQ(gen.exit_code, 0) << gen.all();
  const DataSet one = inspect_dataset({dir / "f32.h5"}, "x", "y", "data.train");
  // A path and a pattern: the pattern's matches in bytewise order (b before c).
  const DataSet three = inspect_dataset({dir / "part-a.h5", dir / "part-[cb].h5"}, "x", "y", "data.train");
  ASSERT_EQ(three.files.size(), 3u);
  EXPECT_EQ(three.files[1].path, dir / "part-b.h5");
  EXPECT_EQ(three.files[2].path, dir / "part-c.h5");
  EXPECT_EQ(three.rows, N);
  EXPECT_EQ(three.first[1], N * 45 / 100);
  EXPECT_EQ(three.file_of(N * 45 / 100 - 1), 0u);
  EXPECT_EQ(three.file_of(N * 45 / 100), 1u);
  EXPECT_EQ(three.file_of(N - 1), 2u);
  SelfComm self;
  // Shards that start, end and lie inside files, and cross one or two boundaries.
  for (const RowRange r : {RowRange{0, N}, RowRange{0, 450}, RowRange{449, 451}, RowRange{300, 800},
                           RowRange{460, 700}, RowRange{1000, 1001}}) {
    EXPECT_EQ(read_shard(three, r, self, nullptr, nullptr), read_shard(one, r, self, nullptr, nullptr))
        << "rows " << r.begin << ".." << r.end;
  }
  Normalization n1, n3;
  const Mat<float> a = read_shard(one, {0, N}, self, nullptr, &n1);
  const Mat<float> b = read_shard(three, {0, N}, self, nullptr, &n3);
  EXPECT_EQ(a, b);
  EXPECT_EQ(n1.x_mean, n3.x_mean);
  EXPECT_EQ(n1.x_std, n3.x_std);
  EXPECT_EQ(n1.y_mean, n3.y_mean);
  EXPECT_EQ(n1.y_std, n3.y_std);
  // With given statistics (a resumed run, validation rows): normalised in the same single pass.
  ReadStats st;
  EXPECT_EQ(read_shard(three, {300, 800}, self, &n1, nullptr, &st), read_shard(one, {300, 800}, self, &n1, nullptr));
  EXPECT_EQ(st.passes, 1);
}

TEST(DataFiles, FileListsAndPatternsAreCheckedOneMessageEach) {
  TempDir dir;
  const RunResult gen = run({"/usr/bin/python3", std::string(MDN_TEST_SOURCE_DIR) + "/tests/data/write_h5py_files.py",
                             dir.path(), "400"});
  ASSERT_EQ(gen.exit_code, 0) << gen.all();
  const auto error_of = [&](const std::vector<std::string>& entries, const std::string& x = "x") {
    try {
      inspect_dataset(entries, x, "y", "data.train");
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Exit::input);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error_of({dir / "nothing-*.h5"}), "data.train: the pattern '" + (dir / "nothing-*.h5") + "' matches no file");
  EXPECT_EQ(error_of({dir / "part-a.h5", dir / "part-*.h5"}),
            "data.train: '" + (dir / "part-a.h5") + "' is named twice (matched by '" + (dir / "part-*.h5") + "')");
  EXPECT_EQ(error_of({dir / "part-a.h5", dir.path() + "/./part-a.h5"}),
            "data.train: '" + dir.path() + "/./part-a.h5' is named twice (also as '" + (dir / "part-a.h5") + "')");
  EXPECT_EQ(error_of({dir.path()}), "data.train: '" + dir.path() + "' is a directory, not an HDF5 file");
  EXPECT_EQ(error_of({dir / "part-a.h5", dir / "nope.h5"}), "data.train: '" + (dir / "nope.h5") + "': no such file");
  // A file whose D differs: f64gz.h5's inputs have 3 columns like the parts, so write one with 2.
  const RunResult two = run({"/usr/bin/python3", "-c",
                             "import h5py, numpy as np\nwith h5py.File('" + (dir / "narrow.h5") +
                                 "', 'w') as f:\n  f['x'] = np.zeros((5, 2), np.float32)\n  f['y'] = np.zeros((5, 1), np.float32)\n"});
  ASSERT_EQ(two.exit_code, 0) << two.all();
  EXPECT_EQ(error_of({dir / "part-a.h5", dir / "narrow.h5"}),
            "data.train: '" + (dir / "narrow.h5") + "' has 2 inputs and 1 outputs, but '" + (dir / "part-a.h5") +
                "' (the first file) has 3 and 1");
}

}  // namespace
}  // namespace mdn::test

namespace mdn::test {
namespace {

TEST(DataFiles, NormalisationStatisticsAreTheExactRationalOnes) {
  // Columns where float sums go wrong: a large offset with small spread, cancelling magnitudes,
  // tiny values, float64 values that float32 cannot hold; compared bit for bit with the same
  // definition computed in exact rationals (Python's fractions).
  TempDir dir;
  const RunResult gen = run({"/usr/bin/python3", "-c",
                             "import h5py, numpy as np\n"
                             "r = np.random.default_rng(11)\n"
                             "n = 3001\n"
                             "x = np.stack([1e8 + r.normal(size=n), r.choice([1e15, -1e15, 1.0], n) + r.normal(size=n),\n"
                             "              r.normal(size=n) * 1e-300, np.full(n, 0.1)], 1)\n"
                             "y = np.stack([r.normal(size=n) * 3 - 7, np.arange(n) * 0.5], 1)\n"
                             "with h5py.File('" + (dir / "s.h5") + "', 'w') as f:\n"
                             "  f['x'] = x\n  f['y'] = y.astype(np.float32)\n"});
  ASSERT_EQ(gen.exit_code, 0) << gen.all();
  const RunResult ref = run({"/usr/bin/python3", std::string(MDN_TEST_SOURCE_DIR) + "/tests/data/exact_stats.py", dir / "s.h5"});
  ASSERT_EQ(ref.exit_code, 0) << ref.all();
  const DataSet d = inspect_dataset({dir / "s.h5"}, "x", "y", "data.train");
  SelfComm self;
  Normalization n;
  read_shard(d, {0, d.rows}, self, nullptr, &n);
  std::string mine;
  const auto hex = [](double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%a", v);
    return std::string(buf);
  };
  for (Index f = 0; f < 4; ++f) mine += hex(n.x_mean(f)) + " " + hex(n.x_std(f)) + "\n";
  for (Index f = 0; f < 2; ++f) mine += hex(n.y_mean(f)) + " " + hex(n.y_std(f)) + "\n";
  // Python's float.hex and C's %a spell the same number differently: compare the values.
  std::istringstream a(mine), b(ref.out);
  for (int line = 0; line < 6; ++line) {
    std::string am, as, bm, bs;
    a >> am >> as;
    b >> bm >> bs;
    EXPECT_EQ(std::strtod(am.c_str(), nullptr), std::strtod(bm.c_str(), nullptr)) << "mean of column " << line;
    EXPECT_EQ(std::strtod(as.c_str(), nullptr), std::strtod(bs.c_str(), nullptr)) << "std of column " << line;
  }
}

}  // namespace
}  // namespace mdn::test
