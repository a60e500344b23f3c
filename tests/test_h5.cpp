#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mdn/h5.hpp"
#include "support/process.hpp"

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

}  // namespace
}  // namespace mdn
