// Writes small HDF5 files for tests, including malformed ones.
#pragma once

#include <hdf5.h>

#include <string>
#include <vector>

#include "mdn/h5.hpp"

namespace mdn::test {

/// Writes dataset `name` with the given dims and memory type (e.g. H5T_NATIVE_FLOAT) into file
/// `path` (created when `create`, else opened read-write). chunk_rows > 0: chunked, with gzip
/// when `gzip`.
inline void write_dataset(const std::string& path, bool create, const std::string& name,
                          const std::vector<hsize_t>& dims, hid_t file_type, hid_t mem_type,
                          const void* data, hsize_t chunk_rows = 0, bool gzip = false) {
  h5::quiet();
  h5::Handle file = create ? h5::checked(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "create")
                           : h5::checked(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open");
  const h5::Handle space = h5::checked(
      H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), "space");
  const h5::Handle dcpl = h5::checked(H5Pcreate(H5P_DATASET_CREATE), "dcpl");
  if (chunk_rows > 0) {
    std::vector<hsize_t> chunk = dims;
    chunk[0] = std::min(chunk_rows, dims[0]);
    h5::check(H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()), "chunk");
    if (gzip) h5::check(H5Pset_deflate(dcpl.get(), 4), "deflate");
  }
  const h5::Handle ds = h5::checked(H5Dcreate2(file.get(), name.c_str(), file_type, space.get(),
                                               H5P_DEFAULT, dcpl.get(), H5P_DEFAULT), "dataset");
  if (data != nullptr)
    h5::check(H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "write");
  file.close("close");
}

/// A float32 file with x (N, D) and y (N, L), row-major values given.
inline void write_xy(const std::string& path, const std::vector<float>& x, hsize_t D,
                     const std::vector<float>& y, hsize_t L) {
  const hsize_t N = x.size() / D;
  write_dataset(path, true, "x", {N, D}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, x.data());
  write_dataset(path, false, "y", {N, L}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, y.data());
}

/// A small valid problem in `dir`: train.h5 with 50 rows (D = 2: i * x0_step and i mod 7; L = 1:
/// i / 2) and valid.h5 with its first 20 rows.
inline void write_small_problem(const std::string& dir, float x0_step) {
  std::vector<float> x, y;
  for (int i = 0; i < 50; ++i) {
    x.push_back(static_cast<float>(i) * x0_step);
    x.push_back(static_cast<float>(i % 7));
    y.push_back(static_cast<float>(i) * 0.5f);
  }
  write_xy(dir + "/train.h5", x, 2, y, 1);
  write_xy(dir + "/valid.h5", std::vector<float>(x.begin(), x.begin() + 40), 2,
           std::vector<float>(y.begin(), y.begin() + 20), 1);
}

}  // namespace mdn::test

namespace mdn::test {

/// A whole dataset read as float64, with its dimensions.
struct Array {
  std::vector<hsize_t> dims;
  std::vector<double> data;
  double operator()(std::size_t i, std::size_t j, std::size_t k = 0) const {
    const std::size_t d1 = dims.size() > 1 ? dims[1] : 1;
    const std::size_t d2 = dims.size() > 2 ? dims[2] : 1;
    return data[(i * d1 + j) * d2 + k];
  }
};

inline Array read_array(const std::string& path, const std::string& name) {
  h5::quiet();
  const h5::Handle f = h5::checked(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open " + path);
  const h5::Handle d = h5::checked(H5Dopen2(f.get(), name.c_str(), H5P_DEFAULT), "dataset " + name);
  const h5::Handle s = h5::checked(H5Dget_space(d.get()), "space");
  Array a;
  a.dims.resize(static_cast<std::size_t>(H5Sget_simple_extent_ndims(s.get())));
  H5Sget_simple_extent_dims(s.get(), a.dims.data(), nullptr);
  std::size_t n = 1;
  for (auto v : a.dims) n *= v;
  a.data.resize(n);
  h5::check(H5Dread(d.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.data.data()), "read " + name);
  return a;
}

}  // namespace mdn::test
