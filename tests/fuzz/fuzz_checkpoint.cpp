// libFuzzer target: mdn's checkpoint validation layer (read_checkpoint) on well-formed HDF5 files
// with hostile contents. The input drives a generator: a valid checkpoint of a small model is
// written, then mutated through the HDF5 API (attributes with absurd values or the wrong type,
// missing or extra datasets, wrong shapes and types, huge declared dimensions) and read back.
// libhdf5's own parser is not the target: every file is one HDF5 wrote. Any outcome but a loaded
// checkpoint or an mdn::Error is a bug.
#include <fuzzer/FuzzedDataProvider.h>
#include <hdf5.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <limits>
#include <string>

#include "mdn/checkpoint.hpp"
#include "mdn/error.hpp"
#include "mdn/h5.hpp"

namespace {

using mdn::h5::Handle;

const char* kRootInts[] = {"format_version", "step", "epoch", "samples_seen", "world_size"};
const char* kModelInts[] = {"input_dim", "output_dim", "components"};
const char* kStrings[][2] = {{"/", "format"},           {"/", "config"},       {"/model", "activation"},
                             {"/model", "sigma"},        {"/optimizer", "name"}, {"/", "checksum"}};
const char* kDatasets[] = {"model/layers/0/weight", "model/layers/0/bias", "model/layers/1/weight",
                           "model/layers/1/bias", "model/normalization/x_std", "optimizer/exp_avg/layers/0/bias",
                           "optimizer/exp_avg_sq/layers/1/weight"};

std::int64_t hostile_int(FuzzedDataProvider& p) {
  switch (p.ConsumeIntegralInRange<int>(0, 5)) {
    case 0: return 0;
    case 1: return -1;
    case 2: return std::int64_t{1} << p.ConsumeIntegralInRange<int>(20, 62);
    case 3: return p.ConsumeIntegralInRange<std::int64_t>(-5, 5);
    case 4: return std::numeric_limits<std::int64_t>::max();
    default: return p.ConsumeIntegral<std::int64_t>();
  }
}

void replace_attribute(hid_t file, const char* obj, const char* name, FuzzedDataProvider& p) {
  H5Adelete_by_name(file, obj, name, H5P_DEFAULT);
  const int kind = p.ConsumeIntegralInRange<int>(0, 4);
  if (kind == 0) return;  // missing
  hsize_t n = kind == 3 ? p.ConsumeIntegralInRange<hsize_t>(0, 5) : 1;
  Handle space(kind == 3 ? H5Screate_simple(1, &n, nullptr) : H5Screate(H5S_SCALAR));
  if (kind == 1 || kind == 3) {  // integers
    Handle a(H5Acreate_by_name(file, obj, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    std::int64_t v[5];
    for (auto& x : v) x = hostile_int(p);
    H5Awrite(a.get(), H5T_NATIVE_INT64, v);
  } else if (kind == 2) {  // a float where something else is expected
    Handle a(H5Acreate_by_name(file, obj, name, H5T_IEEE_F64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    const double v = p.ConsumeFloatingPoint<double>();
    H5Awrite(a.get(), H5T_NATIVE_DOUBLE, &v);
  } else {  // a fixed-length string
    const std::string s = p.ConsumeRandomLengthString(64);
    Handle t(H5Tcopy(H5T_C_S1));
    H5Tset_size(t.get(), s.size() + 1);
    Handle a(H5Acreate_by_name(file, obj, name, t.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Awrite(a.get(), t.get(), s.c_str());
  }
}

void replace_dataset(hid_t file, const char* path, FuzzedDataProvider& p) {
  H5Ldelete(file, path, H5P_DEFAULT);
  const int kind = p.ConsumeIntegralInRange<int>(0, 3);
  if (kind == 0) return;  // missing
  hsize_t dims[3];
  const int rank = p.ConsumeIntegralInRange<int>(1, 3);
  for (int i = 0; i < rank; ++i) dims[i] = p.ConsumeBool() ? p.ConsumeIntegralInRange<hsize_t>(0, 40) : hostile_int(p) & 0xffffffffffULL;
  Handle space(H5Screate_simple(rank, dims, nullptr));
  if (!space.valid()) return;
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE));
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE));
  hsize_t chunk[3] = {1, 1, 1};
  H5Pset_chunk(dcpl.get(), rank, chunk);  // declared, not written: huge dimensions stay small
  const hid_t type = kind == 1 ? H5T_IEEE_F32LE : kind == 2 ? H5T_STD_I32LE : H5T_IEEE_F64LE;
  Handle ds(H5Dcreate2(file, path, type, space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  mdn::h5::quiet();
  FuzzedDataProvider p(data, size);
  // One scratch file per fuzzing process, removed when it exits (kept after a crash, with the input).
  static const struct Scratch {
    std::string path = "/dev/shm/mdn-fuzz-checkpoint-" + std::to_string(getpid()) + ".h5";
    ~Scratch() { std::remove(path.c_str()); }
  } scratch;
  const std::string& path = scratch.path;

  mdn::Checkpoint c;
  c.model.input_dim = p.ConsumeIntegralInRange<int>(1, 3);
  c.model.output_dim = p.ConsumeIntegralInRange<int>(1, 2);
  c.model.components = p.ConsumeIntegralInRange<int>(1, 3);
  c.model.hidden.assign(static_cast<std::size_t>(p.ConsumeIntegralInRange<int>(0, 2)), p.ConsumeIntegralInRange<int>(1, 4));
  c.params = mdn::Vec<float>::Constant(mdn::Layout(c.model).size(), 0.25f);
  c.norm = mdn::Normalization::identity(c.model.input_dim, c.model.output_dim);
  c.norm.enabled = p.ConsumeBool();
  c.optimizer_state = {{"exp_avg", c.params}, {"exp_avg_sq", c.params}};
  c.config = "run: {dir: r}\ndata: {train: t.h5}\ntrain: {epochs: 1}\n";  // a valid config: reading accepts the unmutated file
  try {
    mdn::write_checkpoint(path, c);
  } catch (const mdn::Error& e) {
    std::fprintf(stderr, "writing the valid checkpoint failed: %s\n", e.what());
    std::abort();
  }
  {
    Handle f(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
    if (!f.valid()) std::abort();
    for (int n = p.ConsumeIntegralInRange<int>(0, 6); n > 0 && p.remaining_bytes() > 0; --n) {
      switch (p.ConsumeIntegralInRange<int>(0, 3)) {
        case 0: replace_attribute(f.get(), "/", p.PickValueInArray(kRootInts), p); break;
        case 1: replace_attribute(f.get(), "/model", p.PickValueInArray(kModelInts), p); break;
        case 2: {
          const auto& s = kStrings[p.ConsumeIntegralInRange<std::size_t>(0, std::size(kStrings) - 1)];
          replace_attribute(f.get(), s[0], s[1], p);
          break;
        }
        default: replace_dataset(f.get(), p.PickValueInArray(kDatasets), p); break;
      }
    }
    if (p.ConsumeBool()) replace_attribute(f.get(), "/model", "hidden", p);
  }
  mdn::h5::take_error_stack();
  try {
    mdn::ChecksumStatus status;
    mdn::read_checkpoint(path, p.ConsumeBool() ? &status : nullptr);
  } catch (const mdn::Error& e) {
    if (e.code() != mdn::Exit::input) std::abort();
  }
  return 0;
}
