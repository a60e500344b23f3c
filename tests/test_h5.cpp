#include <gtest/gtest.h>

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

}  // namespace
}  // namespace mdn
