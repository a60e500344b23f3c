// The tables of the levels built into this binary (src/kernels/, kernels.hpp).
#include <cstdio>
#include <cstdlib>

#include "mdn/kernels.hpp"

// CMake defines MDN_LEVEL_<name> for each built level; each exports two constant tables.
#define MDN_DECLARE_LEVEL(L)                                 \
  extern "C" const mdn::Kernels<float> mdn_kernels_##L##_f;  \
  extern "C" const mdn::Kernels<double> mdn_kernels_##L##_d;
#ifdef MDN_LEVEL_x86_64
MDN_DECLARE_LEVEL(x86_64)
#endif
#ifdef MDN_LEVEL_x86_64_v3
MDN_DECLARE_LEVEL(x86_64_v3)
#endif
#ifdef MDN_LEVEL_x86_64_v4
MDN_DECLARE_LEVEL(x86_64_v4)
#endif

namespace mdn {

namespace {

// One case per built level: CASES(f) or CASES(d).
#ifdef MDN_LEVEL_x86_64
#define MDN_CASE_x86_64(s) case CpuLevel::x86_64: return &mdn_kernels_x86_64_##s;
#else
#define MDN_CASE_x86_64(s)
#endif
#ifdef MDN_LEVEL_x86_64_v3
#define MDN_CASE_x86_64_v3(s) case CpuLevel::x86_64_v3: return &mdn_kernels_x86_64_v3_##s;
#else
#define MDN_CASE_x86_64_v3(s)
#endif
#ifdef MDN_LEVEL_x86_64_v4
#define MDN_CASE_x86_64_v4(s) case CpuLevel::x86_64_v4: return &mdn_kernels_x86_64_v4_##s;
#else
#define MDN_CASE_x86_64_v4(s)
#endif
#define MDN_CASES(s) MDN_CASE_x86_64(s) MDN_CASE_x86_64_v3(s) MDN_CASE_x86_64_v4(s)

const Kernels<float>* table(CpuLevel level, float*) {
  switch (level) {
    MDN_CASES(f)
    default: return nullptr;
  }
}
const Kernels<double>* table(CpuLevel level, double*) {
  switch (level) {
    MDN_CASES(d)
    default: return nullptr;
  }
}

}  // namespace

template <class S>
const Kernels<S>& kernels(CpuLevel level) {
  const Kernels<S>* k = table(level, static_cast<S*>(nullptr));
  // The level is chosen collectively and checked against every rank's CPU before any kernel is
  // asked for (prepare.cpp): reaching this is a bug, and running on would be an illegal instruction.
  if (k == nullptr || !cpu_supports(level)) {
    std::fprintf(stderr, "mdn: internal error: kernels of level %s requested, which this %s\n", to_string(level),
                 k == nullptr ? "binary does not contain" : "CPU cannot run");
    std::abort();
  }
  return *k;
}

template const Kernels<float>& kernels<float>(CpuLevel);
template const Kernels<double>& kernels<double>(CpuLevel);

}  // namespace mdn
