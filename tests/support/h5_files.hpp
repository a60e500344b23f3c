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

}  // namespace mdn::test
