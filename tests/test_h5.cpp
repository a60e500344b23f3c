#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "mdn/h5.hpp"
#include "support/process.hpp"
#include "test_paths.hpp"

namespace mdn {
namespace {

TEST(H5, QuietTurnsOffAutomaticErrorPrinting) {
  h5::quiet();
  H5E_auto2_t func = nullptr;
  void* data = nullptr;
  ASSERT_GE(H5Eget_auto2(H5E_DEFAULT, &func, &data), 0);
  EXPECT_EQ(func, nullptr);
}

TEST(H5, CheckThrowsWithHdf5sReasonAndPrintsNothing) {
  h5::quiet();
  testing::internal::CaptureStderr();
  try {
    h5::checked(H5Fopen("/nonexistent/dir/model.h5", H5F_ACC_RDONLY, H5P_DEFAULT),
                "cannot open '/nonexistent/dir/model.h5'", Exit::input);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Exit::input);
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("cannot open '/nonexistent/dir/model.h5': ", 0), 0u) << what;
    EXPECT_NE(what.find("No such file or directory"), std::string::npos) << what;
  }
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  EXPECT_EQ(h5::take_error_stack(), "") << "the stack is consumed by the error";
}

TEST(H5, CheckPassesSuccessfulResultsThrough) {
  EXPECT_EQ(h5::check(herr_t{0}, "x"), 0);
  EXPECT_EQ(h5::check(hid_t{12345}, "x"), 12345);
  EXPECT_THROW(h5::check(herr_t{-1}, "x"), Error);
}

TEST(H5, HandleReleasesItsIdExactlyOnce) {
  h5::quiet();
  test::TempDir dir;
  const std::string path = dir / "f.h5";
  hid_t raw = H5I_INVALID_HID;
  {
    h5::Handle file =
        h5::checked(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "create");
    raw = file.get();
    EXPECT_GT(H5Iis_valid(raw), 0);
    h5::Handle moved = std::move(file);
    EXPECT_FALSE(file.valid());
    EXPECT_EQ(moved.get(), raw);
    EXPECT_GT(H5Iis_valid(raw), 0);
  }
  EXPECT_LE(H5Iis_valid(raw), 0);
  EXPECT_EQ(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

TEST(H5, CloseReportsAndInvalidates) {
  h5::quiet();
  test::TempDir dir;
  h5::Handle space = h5::checked(H5Screate(H5S_SCALAR), "dataspace");
  ASSERT_TRUE(space.valid());
  space.close("close dataspace");
  EXPECT_FALSE(space.valid());
  EXPECT_NO_THROW(space.close("closing twice is a no-op"));
  h5::Handle bogus(987654321);  // not an id HDF5 knows
  EXPECT_THROW(bogus.close("close bogus id"), Error);
}

TEST(H5, AttributesAndDatasetListingsReadBackAsPythonWouldSeeThem) {
  h5::quiet();
  test::TempDir dir;
  const std::string path = dir / "a.h5";
  {
    const h5::Handle f = h5::checked(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "create");
    const h5::Handle lcpl = h5::checked(H5Pcreate(H5P_LINK_CREATE), "lcpl");
    h5::check(H5Pset_create_intermediate_group(lcpl.get(), 1), "lcpl");
    const hsize_t n = 2;
    const double v[2] = {1, 2};
    for (const char* name : {"b", "a", "g/inner/d"}) {
      const h5::Handle space = h5::checked(H5Screate_simple(1, &n, nullptr), "space");
      const h5::Handle ds = h5::checked(
          H5Dcreate2(f.get(), name, H5T_IEEE_F64LE, space.get(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT), name);
      h5::check(H5Dwrite(ds.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), name);
    }
    h5::write_attribute(f.get(), "/", "text", std::string("hello"), "text");
    h5::write_attribute(f.get(), "/", "utf8", std::string("grüße"), "utf8");
    h5::write_attribute(f.get(), "/", "count", std::int64_t{-7}, "count");
    h5::write_attribute(f.get(), "/g", "real", 0.25, "real");
    h5::write_attribute(f.get(), "/", "list", std::vector<std::int64_t>{3, 4, 5}, "list");
    h5::write_attribute(f.get(), "/", "empty", std::vector<std::int64_t>{}, "empty");
    EXPECT_THROW(h5::write_attribute(f.get(), "/no/such/group", "x", 1.0, "x"), Error);
    EXPECT_EQ(h5::dataset_paths(f.get(), false, "list", Exit::input), (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(h5::dataset_paths(f.get(), true, "list", Exit::input),
              (std::vector<std::string>{"a", "b", "g/inner/d"}));
    const h5::Handle a = h5::checked(H5Aopen_by_name(f.get(), "/", "utf8", H5P_DEFAULT, H5P_DEFAULT), "open");
    EXPECT_EQ(h5::read_string(a, "utf8", Exit::input), "grüße");
  }
  // As another program sees them (h5dump: types and values).
  const test::RunResult r = test::run({"h5dump", "-A", path});
  EXPECT_EQ(r.exit_code, 0) << r.all();
  for (const char* expected : {"H5T_STRING", "CSET H5T_CSET_UTF8", "\"hello\"", "H5T_STD_I64LE", "-7",
                               "H5T_IEEE_F64LE", "0.25", "3, 4, 5"})
    EXPECT_NE(r.out.find(expected), std::string::npos) << expected << "\n" << r.out;
}

TEST(H5, DatasetsWrittenAndReadBackWholeAndByRows) {
  h5::quiet();
  test::TempDir dir;
  const std::string path = dir / "d.h5";
  // A (4, 3) float64 dataset in nested groups; a (4,) one.
  const double m[12] = {0, 1, 2, 10, 11, 12, 20, 21, 22, 30, 31, 32};
  const double v[4] = {-1, -2, -3, -4};
  {
    const h5::Handle f = h5::checked(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "create");
    h5::create_group(f.get(), "g/empty", "group");
    h5::write_dataset(f.get(), "g/inner/m", {4, 3}, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, m, "m");
    h5::write_dataset(f.get(), "v", {4}, H5T_IEEE_F32LE, H5T_NATIVE_DOUBLE, v, "v");
    h5::write_attribute(f.get(), "/", "n", std::int64_t{42}, "n");
  }
  EXPECT_TRUE(h5::is_hdf5(path));
  EXPECT_FALSE(h5::is_hdf5(dir / "missing.h5"));
  const h5::Handle f = h5::open_file(path, "open", Exit::input);
  EXPECT_TRUE(h5::link_exists(f.get(), "g/inner/m"));
  EXPECT_TRUE(h5::link_exists(f.get(), "g/empty"));
  EXPECT_FALSE(h5::link_exists(f.get(), "g/nothing/m"));
  EXPECT_TRUE(h5::attribute_exists(f.get(), "/", "n"));
  EXPECT_FALSE(h5::attribute_exists(f.get(), "/", "m"));
  std::int64_t n = 0;
  h5::read_attribute(h5::open_attribute(f.get(), "/", "n", "n", Exit::input), H5T_NATIVE_INT64, &n, "n", Exit::input);
  EXPECT_EQ(n, 42);

  const h5::Handle ds = h5::open_dataset(f.get(), "g/inner/m", "m", Exit::input);
  const h5::Shape shape = h5::dataset_shape(ds, "m", Exit::input);
  EXPECT_EQ(shape.type_class, H5T_FLOAT);
  EXPECT_EQ(shape.element_bytes, 8u);
  EXPECT_EQ(shape.dims, (std::vector<hsize_t>{4, 3}));
  EXPECT_EQ(shape.points(), 12u);
  EXPECT_EQ(h5::dataset_storage(ds, "m", Exit::input), "contiguous");
  std::vector<float> whole(12);
  h5::read_dataset(ds, H5T_NATIVE_FLOAT, whole.data(), "m", Exit::input);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(whole[static_cast<std::size_t>(i)], static_cast<float>(m[i]));
  // Rows 1..2 into a row-major array of 5 columns at column 1; the vector's rows 1..2 at column 4.
  std::vector<double> rows(10, 7.0);
  h5::read_rows(ds, H5T_NATIVE_DOUBLE, 1, 2, 3, rows.data(), 5, 1, "m", Exit::input);
  const h5::Handle vs = h5::open_dataset(f.get(), "v", "v", Exit::input);
  EXPECT_EQ(h5::dataset_shape(vs, "v", Exit::input).element_bytes, 4u);
  h5::read_rows(vs, H5T_NATIVE_DOUBLE, 1, 2, 1, rows.data(), 5, 4, "v", Exit::input);
  EXPECT_EQ(rows, (std::vector<double>{7, 10, 11, 12, -2, 7, 20, 21, 22, -3}));

  // Failures name what was being done, with the given exit code.
  try {
    h5::open_dataset(f.get(), "g/none", "opening 'none'", Exit::input);
    ADD_FAILURE() << "opened a missing dataset";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Exit::input);
    EXPECT_EQ(std::string(e.what()).rfind("opening 'none': ", 0), 0u) << e.what();
  }
  EXPECT_THROW(h5::open_file(dir / "missing.h5", "open", Exit::input), Error);
}

TEST(H5, NoSourceOutsideTheLayerCallsTheHdf5CApi) {
  // Every HDF5 call of the product goes through h5.hpp's checked operations.
  namespace fs = std::filesystem;
  const fs::path root = MDN_TEST_SOURCE_DIR;
  const std::regex call(R"(\bH5[A-Z][A-Za-z0-9_]*\s*\()");
  std::vector<std::string> offenders;
  std::size_t files = 0;
  for (const char* tree : {"src", "include", "tools/bench"}) {
    for (const auto& e : fs::recursive_directory_iterator(root / tree)) {
      if (!e.is_regular_file()) continue;
      const std::string rel = fs::relative(e.path(), root).string();
      if (rel == "src/h5.cpp" || rel == "include/mdn/h5.hpp") continue;
      ++files;
      std::ifstream in(e.path());
      std::string line;
      for (int no = 1; std::getline(in, line); ++no)
        if (std::regex_search(line, call)) offenders.push_back(rel + ":" + std::to_string(no) + ": " + line);
    }
  }
  EXPECT_GT(files, 40u) << "the sources were not found under " << root;
  std::string list;
  for (const auto& o : offenders) list += o + "\n";
  EXPECT_TRUE(offenders.empty()) << "raw HDF5 calls outside src/h5.cpp:\n" << list;
}

}  // namespace
}  // namespace mdn
