// Matrix products with their workspace allocated once and a blocking that does not depend on
// the machine.
//
// Float products (the training step's) run mdn's own kernel, in the layered scheme of Goto and
// van de Geijn ("Anatomy of high-performance matrix multiplication", 2008) and BLIS:
//   for each block of KC depth:    pack B's rows into panels of NR columns   (kc x NR each)
//     for each block of MC rows:   pack A's rows into panels of MR rows      (MR x kc each)
//       for each (NR, MR) tile:    the register tile C[MR x NR] += A_panel B_panel
// The tile lives in MR/W x NR vector registers (W floats each) for the whole depth block; each
// step of the depth loads MR/W vectors of A, broadcasts NR elements of B and does MR/W x NR fused
// multiply-adds. The tile starts from zero in the first depth block and from C in the next ones,
// so every element of C is one chain of multiply-adds over k = 0, 1, ..., K-1 in order: its bits
// depend on its row of A, its column of B and the level, not on the blocking, the shapes, or
// where the element sits (edge tiles are computed in the same register tile on zero-padded
// panels). No product writes C twice, and nothing is allocated per call.
//
// The blocking constants are fixed per level (never derived from the cache sizes a CPU reports),
// chosen by measurement (tools/bench/bench_step, alternating builds; the depth block of 512 at
// x86-64-v3 by alternating two blockings call by call in one process: +1% on the medium step,
// +3% on the large one, against 256) among tiles that fill the registers:
//   x86-64-v4 (32 zmm registers):  MR = 32 (2 x 16), NR = 14: 28 accumulators
//   x86-64-v3 (16 ymm registers):  MR = 16 (2 x 8),  NR = 6:  12 accumulators
//   x86-64    (16 xmm registers):  MR = 16 (4 x 4),  NR = 3:  12 accumulators, multiply then add
// (48 x 8 and 64 x 6 tiles were within a few percent on v4; the 32-row tile also divides the
// usual layer widths, so no rows are computed for nothing.) Products of few columns take
// narrower tiles where they pad fewer columns (kWidths, panel_width: 13 or 12, 5 or 4, 2).
// Products too small to fill one tile in some dimension, and double products (used in tests),
// run Eigen's GEMM kernel instead, with its blocking computed once from fixed reference cache
// sizes and packing buffers the site owns.
#include "level.hpp"

#include <immintrin.h>

#include <cstring>
#include <iterator>
#include <utility>

namespace mdn::MDN_LEVEL {

namespace {

// ---- mdn's float kernel ----------------------------------------------------------------------------

using PF = Packet<float>;
constexpr Index W = kPacket<float>;
#if defined(__AVX512F__)
constexpr int kMV = 2;
constexpr int kWidths[] = {14, 13, 12};  // B's panel widths, widest (NR) first; panel_width picks
constexpr Index kKC = 384, kMC = 192;
#elif defined(__AVX2__)
constexpr int kMV = 2;
constexpr int kWidths[] = {6, 5, 4};
constexpr Index kKC = 512, kMC = 96;
#else
constexpr int kMV = 4;
constexpr int kWidths[] = {3, 2};
constexpr Index kKC = 256, kMC = 96;
#endif
constexpr int kNR = kWidths[0];
constexpr Index kMR = kMV * W;
constexpr Index kNC = 4096;
// Depths below this run Eigen's kernel: a tile's loads and stores would outweigh its work.
constexpr Index kMinDepth = 4;
// Steps of the depth that packing a column-major block fetches ahead: the block's rows are short
// runs a column apart, which the hardware's prefetchers do not follow far enough (measured: +1-2%
// on the benchmark's medium and large steps, at x86-64-v3 on a Zen 3 EPYC).
constexpr Index kPackAhead = 8;
// Floats between a packed panel's end and the next panel's start: one cache line (panel_offset).
constexpr Index kPanelPad = 64 / sizeof(float);

Index round_up(Index x, Index to) { return (x + to - 1) / to * to; }
/// Where panel q of a packed block starts: panels of `width` values per step of a depth of kc,
/// each followed by one cache line. Without the line, panels whose size is a multiple of 4 KiB
/// (512 steps of 6 values: 12 KiB; of 16 values: 32 KiB) put step k of every panel in the same
/// set of the L1 cache, and packing a row-major B (or a column-major A), which writes step k of
/// every panel in turn, finds 8 ways for the 43 panels of a 256-column block. (Measured at
/// x86-64-v3, in one process alternating with and without: on a Zen 3 EPYC -2% on the medium
/// step, -0.6% on the large one, the 1024^3 product unchanged, and between separate processes
/// lost in their spread; on a Zen 5 EPYC -7.5% on the medium step and -1.5% on the large one. At
/// x86-64-v4 B's panels of 384 steps of 14 values are 21 KiB: the Zen 5 showed no difference.)
Index panel_offset(Index q, Index width, Index kc) { return q * (width * kc + kPanelPad); }

/// The register tile: C (MR x NR, column-major, leading dimension ldc) = (accumulate ? C : 0)
/// + A (MR x kc) * B (kc x NR), where step k of A is MR adjacent values at ap + k * a_step and
/// step k of B is NR adjacent values at bp + k * b_step (packed panels: MR and NR).
template <Act A>
inline PF activate(const PF& x) {
  if constexpr (A == Act::tanh) return ptanh(x);
  else if constexpr (A == Act::relu) return ei::pmax(x, ei::pzero(x));
  else return x;
}

/// ... with `last` (the final depth block): C = act(C + row_bias + col_bias) in the same pass;
/// row_bias holds the tile's MR rows, col_bias its NR columns (either may be null).
/// `InPlaceA`: A is read in place, a column apart per step, and fetched ahead (the hardware does
/// not follow a stream of short columns).
/// `next_c`: where the tile run after this one starts, in C with the same ldc, when that tile
/// reads C (null if there is none, or if it does not).
template <int NR, Act A, bool InPlaceA = false>
void tile(Index kc, const float* __restrict ap, Index a_step, const float* __restrict bp, Index b_step, float* c,
          Index ldc, bool accumulate, bool last, const float* row_bias, const float* col_bias, const float* next_c) {
  // C's lines are fetched a whole tile's work ahead of their use. A tile that writes C fresh
  // fetches its own: the product's result is mostly in no cache yet (the forward pass writes
  // each layer's output for the first time in the step), and stores into lines that miss would
  // hold the next tile up. A tile that adds to C loads it at its start, so the tile before it
  // fetches those lines. (Measured at x86-64-v3 on a Zen 3 EPYC, in one process alternating with
  // and without: 1.5-5% off the medium step and 1.5-2.5% off the large one in four runs of
  // tools/bench/bench_step; whole medium trainings, 8 alternating pairs: +1.7% samples/s.)
  if (const float* f = accumulate ? next_c : c; f != nullptr) {
    for (int j = 0; j < NR; ++j) {
      _mm_prefetch(reinterpret_cast<const char*>(f + j * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(f + j * ldc + kMR - 1), _MM_HINT_T0);
    }
  }
  PF acc[NR][kMV];
  if (accumulate) {
    for (int j = 0; j < NR; ++j)
      for (int v = 0; v < kMV; ++v) acc[j][v] = ei::ploadu<PF>(c + j * ldc + v * W);
  } else {
    for (int j = 0; j < NR; ++j)
      for (int v = 0; v < kMV; ++v) acc[j][v] = ei::pset1<PF>(0.0f);
  }
#pragma GCC unroll 2
  for (Index k = 0; k < kc; ++k) {
    if constexpr (InPlaceA) {
      constexpr Index kAhead = 16;
      for (Index i = 0; i < kMR; i += 64 / Index{sizeof(float)})
        _mm_prefetch(reinterpret_cast<const char*>(ap + kAhead * a_step + i), _MM_HINT_T0);
    }
    PF a[kMV];
#pragma GCC unroll 8
    for (int v = 0; v < kMV; ++v) a[v] = ei::ploadu<PF>(ap + v * W);
#pragma GCC unroll 32
    for (int j = 0; j < NR; ++j) {
      const PF b = ei::pset1<PF>(bp[j]);
#pragma GCC unroll 8
      for (int v = 0; v < kMV; ++v) acc[j][v] = ei::pmadd(a[v], b, acc[j][v]);
    }
    ap += a_step;
    bp += b_step;
  }
  if (last && (row_bias != nullptr || col_bias != nullptr || A != Act::none)) {
    PF rb[kMV];
    for (int v = 0; v < kMV; ++v) rb[v] = row_bias != nullptr ? ei::ploadu<PF>(row_bias + v * W) : ei::pzero(rb[0]);
    for (int j = 0; j < NR; ++j) {
      const PF cb = ei::pset1<PF>(col_bias != nullptr ? col_bias[j] : 0.0f);
      for (int v = 0; v < kMV; ++v) {
        PF x = acc[j][v];
        if (row_bias != nullptr) x = ei::padd(x, rb[v]);
        if (col_bias != nullptr) x = ei::padd(x, cb);
        acc[j][v] = activate<A>(x);
      }
    }
  }
  for (int j = 0; j < NR; ++j)
    for (int v = 0; v < kMV; ++v) ei::pstoreu(c + j * ldc + v * W, acc[j][v]);
}

// Transposes of square blocks: dst[i * ds + j] = src[j * ss + i], i.e. rows of dst from columns
// of src: 8 x 8 in AVX registers where the level has them, 4 x 4 in SSE registers everywhere.
inline void transpose4(const float* src, Index ss, float* dst, Index ds) {
  __m128 r0 = _mm_loadu_ps(src), r1 = _mm_loadu_ps(src + ss), r2 = _mm_loadu_ps(src + 2 * ss),
         r3 = _mm_loadu_ps(src + 3 * ss);
  _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
  _mm_storeu_ps(dst, r0);
  _mm_storeu_ps(dst + ds, r1);
  _mm_storeu_ps(dst + 2 * ds, r2);
  _mm_storeu_ps(dst + 3 * ds, r3);
}
#if defined(__AVX__)
inline void transpose8(const float* src, Index ss, float* dst, Index ds) {
  const __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ss), r2 = _mm256_loadu_ps(src + 2 * ss),
               r3 = _mm256_loadu_ps(src + 3 * ss), r4 = _mm256_loadu_ps(src + 4 * ss),
               r5 = _mm256_loadu_ps(src + 5 * ss), r6 = _mm256_loadu_ps(src + 6 * ss),
               r7 = _mm256_loadu_ps(src + 7 * ss);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
               t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
               t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
               u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
               u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
               u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + ds, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * ds, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * ds, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * ds, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * ds, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * ds, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * ds, _mm256_permute2f128_ps(u3, u7, 0x31));
}
/// Copies n floats (short runs: memcpy would go through `rep movs`, whose start-up costs more).
inline void copy_run(const float* src, float* dst, Index n) {
  Index i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_loadu_ps(src + i));
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(dst + i, _mm_loadu_ps(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}
#else
inline void copy_run(const float* src, float* dst, Index n) {
  Index i = 0;
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(dst + i, _mm_loadu_ps(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}
#endif

/// Copies one whole panel's step, Width floats, in as few moves as the width allows (the
/// panel widths are the register tile's: 6 and 16 at x86-64-v3), without copy_run's loop.
template <Index Width>
inline void copy_panel(const float* src, float* dst) {
  Index i = 0;
#if defined(__AVX__)
  for (; i + 8 <= Width; i += 8) _mm256_storeu_ps(dst + i, _mm256_loadu_ps(src + i));
#endif
  for (; i + 4 <= Width; i += 4) _mm_storeu_ps(dst + i, _mm_loadu_ps(src + i));
  if constexpr (Width % 4 >= 2) {
    _mm_store_sd(reinterpret_cast<double*>(dst + i), _mm_load_sd(reinterpret_cast<const double*>(src + i)));
    i += 2;
  }
  if constexpr (Width % 2 == 1) dst[i] = src[i];
}

/// Rows [r, ...) of a panel from the operand's rows (x(r, k) at x[r * stride + k]), B rows at a
/// time while B are left, with Transpose (B x B blocks) along the depth and single steps at its
/// end; returns the first row not done.
template <Index B, void (*Transpose)(const float*, Index, float*, Index)>
Index transpose_rows(const float* x, Index stride, Index top, Index p0, Index kc, Index rows, Index width, float* pd,
                     Index r) {
  for (; r + B <= rows; r += B) {
    const float* src = x + (top + r) * stride + p0;
    Index k = 0;
    for (; k + B <= kc; k += B) Transpose(src + k, stride, pd + k * width + r, width);
    for (; k < kc; ++k)
      for (Index i = 0; i < B; ++i) pd[k * width + r + i] = src[i * stride + k];
  }
  return r;
}

/// Packs rows [first, first + count) x depth [p0, p0 + kc) of an operand into panels of `width`
/// rows, panel q at dst + panel_offset(q, width, kc), with `width` values per step of the depth:
/// element (r, k) of panel q is x(first + q * width + r, p0 + k), rows past `count` zero.
/// `along_rows`: the operand's elements (r, k) and (r + 1, k) are adjacent in memory; otherwise
/// (r, k) and (r, k + 1) are.
template <Index width>
void pack_block(const float* x, Index stride, bool along_rows, Index first, Index count, Index p0, Index kc,
                float* dst) {
  const Index panels = (count + width - 1) / width;
  if (along_rows) {
    // x(r, k) at x[k * stride + r]. Each step of the depth reads the block's `count` adjacent
    // values in one run and deals them to the panels: one stream through memory per step, which
    // the hardware fetches ahead, where a panel at a time would jump a column apart per 64 bytes.
    for (Index k = 0; k < kc; ++k) {
      const float* src = x + (p0 + k) * stride + first;
      if (k + kPackAhead < kc)
        for (Index i = 0; i < count; i += 64 / Index{sizeof(float)})
          _mm_prefetch(reinterpret_cast<const char*>(src + kPackAhead * stride + i), _MM_HINT_T0);
      for (Index q = 0; q < panels; ++q) {
        float* out = dst + panel_offset(q, width, kc) + k * width;
        const Index n = std::min(width, count - q * width);
        if (n == width) {
          copy_panel<width>(src + q * width, out);
          continue;
        }
        copy_run(src + q * width, out, n);
        for (Index i = n; i < width; ++i) out[i] = 0.0f;
      }
    }
    return;
  }
  // x(r, k) at x[r * stride + k]: per panel, transpose square blocks of rows (8, then 4), then
  // pairs of rows, then a last row.
  for (Index q = 0; q < panels; ++q) {
    const Index rows = std::min(width, count - q * width);
    float* pd = dst + panel_offset(q, width, kc);
    const Index top = first + q * width;
    Index r = 0;
#if defined(__AVX__)
    r = transpose_rows<8, transpose8>(x, stride, top, p0, kc, rows, width, pd, r);
#endif
    r = transpose_rows<4, transpose4>(x, stride, top, p0, kc, rows, width, pd, r);
    for (; r + 2 <= rows; r += 2) {  // two rows interleaved: 4 steps of the depth per pair of loads
      const float* s0 = x + (top + r) * stride + p0;
      const float* s1 = s0 + stride;
      Index k = 0;
      for (; k + 4 <= kc; k += 4) {
        const __m128 a = _mm_loadu_ps(s0 + k), b = _mm_loadu_ps(s1 + k);
        const __m128 lo = _mm_unpacklo_ps(a, b), hi = _mm_unpackhi_ps(a, b);
        _mm_storel_pi(reinterpret_cast<__m64*>(pd + k * width + r), lo);
        _mm_storeh_pi(reinterpret_cast<__m64*>(pd + (k + 1) * width + r), lo);
        _mm_storel_pi(reinterpret_cast<__m64*>(pd + (k + 2) * width + r), hi);
        _mm_storeh_pi(reinterpret_cast<__m64*>(pd + (k + 3) * width + r), hi);
      }
      for (; k < kc; ++k) {
        pd[k * width + r] = s0[k];
        pd[k * width + r + 1] = s1[k];
      }
    }
    for (; r < rows; ++r)
      for (Index k = 0; k < kc; ++k) pd[k * width + r] = x[(top + r) * stride + p0 + k];
    if (rows < width)
      for (Index k = 0; k < kc; ++k) std::fill(pd + k * width + rows, pd + (k + 1) * width, 0.0f);
  }
}

/// C (m x n, column-major) = A (m x k) B (k x n) with mdn's kernel; ap and bp hold the packed
/// panels (sizes from packed_*_size()). (Reading column-major A or row-major B in place instead
/// of packing them was measured: no faster on the medium model, 40% slower on the large one.)
/// With `transposed` the result is stored transposed: C(i, j) at c.data[i * c.stride + j] (a
/// product with few rows runs as its transpose, whose many rows fill the register tile).
// Long because it is the five loops of the BLIS design (jc, pc, ic over blocks, jr, ir over
// register tiles) with the edge tile inline: the blocking state lives in one scope.
template <Act A, int NR>
void sgemm(const Operand<const float>& a, const Operand<const float>& b, const Operand<float>& c, float* ap,
           float* bp, const Epilogue<float>& ep, bool transposed) {
  const Index m = c.rows, n = c.cols, K = a.cols;
  const bool direct_a = !a.row_major && n <= 2 * kNR;
  // Element (i, j) of C, in either storage.
  const auto at = [&](Index i, Index j) -> float& {
    return transposed ? c.data[i * c.stride + j] : c.data[j * c.stride + i];
  };
  alignas(64) float edge[kMR * kNR];
  alignas(64) float edge_rows[kMR];  // the row bias of an edge tile, zero-padded
  alignas(64) float edge_cols[kNR];  // the column bias of an edge tile, zero-padded
  for (Index jc = 0; jc < n; jc += kNC) {
    const Index nc = std::min(kNC, n - jc);
    for (Index pc = 0; pc < K; pc += kKC) {
      const Index kc = std::min(kKC, K - pc);
      const bool accumulate = pc > 0;
      const bool last = pc + kc == K;
      // B's block: panels of NR columns. B(k, j) is adjacent to B(k, j + 1) when B is row-major.
      pack_block<NR>(b.data, b.stride, b.row_major, jc, nc, pc, kc, bp);
      for (Index ic = 0; ic < m; ic += kMC) {
        const Index mc = std::min(kMC, m - ic);
        // A's block: panels of MR rows. A(i, k) is adjacent to A(i + 1, k) when A is column-major.
        // With one panel of B (n <= NR) every value of A is used once: a column-major A is then
        // read in place by whole-row tiles, and only a last, partial panel of rows is packed.
        if (!direct_a) {
          pack_block<kMR>(a.data, a.stride, !a.row_major, ic, mc, pc, kc, ap);
        } else if (mc % kMR != 0) {
          const Index ip = mc / kMR * kMR;
          pack_block<kMR>(a.data, a.stride, !a.row_major, ic + ip, mc - ip, pc, kc,
                          ap + panel_offset(ip / kMR, kMR, kc));
        }
        for (Index jr = 0; jr < nc; jr += NR) {
          const Index cols = std::min<Index>(NR, nc - jr);
          const float* b_panel = bp + panel_offset(jr / NR, NR, kc);
          for (Index ir = 0; ir < mc; ir += kMR) {
            const Index rows = std::min<Index>(kMR, mc - ir);
            const Index i0 = ic + ir, j0 = jc + jr;
            const float* rb = ep.row_bias != nullptr ? ep.row_bias + i0 : nullptr;
            const float* cb = ep.col_bias != nullptr ? ep.col_bias + j0 : nullptr;
            // Step k of the tile's A: packed, MR values apart; in place, a column apart.
            const bool in_place = direct_a && rows == kMR;
            const auto run_tile = [&](float* cp, Index ldc, const float* next_c) {
              if (in_place)
                tile<NR, A, true>(kc, a.data + pc * a.stride + i0, a.stride, b_panel, NR, cp, ldc, accumulate, last, rb,
                                  cb, next_c);
              else
                tile<NR, A>(kc, ap + panel_offset(ir / kMR, kMR, kc), kMR, b_panel, NR, cp, ldc, accumulate, last, rb,
                            cb, next_c);
            };
            if (rows == kMR && cols == NR && !transposed) {
              // The next tile, when it adds to C: further down these columns, or at the top of the
              // next ones. Only a whole tile reads C in place (an edge tile reads it into its buffer).
              const float* next_c = nullptr;
              if (accumulate) {
                const bool down = ir + kMR < mc;
                const Index ni = down ? i0 + kMR : ic, nj = down ? j0 : j0 + NR;
                if (ni + kMR <= ic + mc && nj + NR <= jc + nc) next_c = c.data + nj * c.stride + ni;
              }
              run_tile(c.data + j0 * c.stride + i0, c.stride, next_c);
              continue;
            }
            // An edge tile, or a transposed result: the same register tile, through a buffer (and
            // padded biases).
            if (accumulate)
              for (Index j = 0; j < cols; ++j)
                for (Index i = 0; i < rows; ++i) edge[j * kMR + i] = at(i0 + i, j0 + j);
            if (rb != nullptr) {
              std::fill(edge_rows, edge_rows + kMR, 0.0f);
              std::copy(rb, rb + rows, edge_rows);
              rb = edge_rows;
            }
            if (cb != nullptr) {
              std::fill(edge_cols, edge_cols + NR, 0.0f);
              std::copy(cb, cb + cols, edge_cols);
              cb = edge_cols;
            }
            run_tile(edge, kMR, nullptr);
            for (Index j = 0; j < cols; ++j)
              for (Index i = 0; i < rows; ++i) at(i0 + i, j0 + j) = edge[j * kMR + i];
          }
        }
      }
    }
  }
}

template <Act A, std::size_t... I, class... Args>
void sgemm_of_width(std::index_sequence<I...>, int width, const Args&... args) {
  ((width == kWidths[I] ? sgemm<A, kWidths[I]>(args...) : void()), ...);
}

/// sgemm with panels of `width` columns (panel_width's choice among kWidths).
template <Act A, class... Args>
void sgemm_of_width(int width, const Args&... args) {
  sgemm_of_width<A>(std::make_index_sequence<std::size(kWidths)>(), width, args...);
}

/// Sizes of the packed panels for products of up to (max_m, max_n, max_k); B's for the panel
/// width that needs the most (a narrower width may take more panels, each with its line).
Index packed_a_size(Index max_m, Index max_k) {
  return panel_offset(round_up(std::min(kMC, max_m), kMR) / kMR, kMR, std::min(kKC, max_k));
}
Index packed_b_size(Index max_n, Index max_k) {
  const Index n = std::min(kNC, max_n), kc = std::min(kKC, max_k);
  Index size = 0;
  for (const int w : kWidths) size = std::max(size, panel_offset(round_up(n, w) / w, w, kc));
  return size;
}

bool own_kernel(Index m, Index n, Index k) { return m >= kMR && n >= kNR && k >= kMinDepth; }

/// The width of B's panels (the register tile's columns) for a product of n columns: NR, or for
/// fewer than 6 panels' worth of columns the width among NR and the level's narrower ones that
/// pads the fewest columns (the widest of equals). The mixture head's 25 columns take 5 panels
/// of 5 instead of 5 of 6 (one of them for a single column), the first layer's 8-column weight
/// gradient 2 of 4 instead of 2 of 6. A narrower tile does fewer multiply-adds per load, which
/// costs less than computing padded columns only while the product is narrow. The width changes
/// no bits: each element of C is the same chain of multiply-adds whatever tile computes it.
/// (Measured at x86-64-v3 on a Zen 3 EPYC, in one process alternating with and without: -0.6%
/// on the medium step.)
int panel_width(Index n) {
  if (n >= 6 * kNR) return kNR;
  int best = kNR;
  for (const int w : kWidths)
    if (round_up(n, w) < round_up(n, best)) best = w;
  return best;
}

/// Whether a product too short for the register tile (m < MR) runs as its transpose instead: C^T =
/// B^T A^T has n rows, and its columns (m of them) fill a panel of NR well enough.
bool own_kernel_transposed(Index m, Index n, Index k) { return m < kMR && 2 * m >= kNR && own_kernel(n, kNR, k); }

// ---- Eigen's kernel ------------------------------------------------------------------------------

// Reference cache sizes for Eigen's blocking heuristic (a common server core: 32 KiB L1d, 1 MiB
// L2, 32 MiB L3). Only the blocking depends on them, never the result's correctness.
constexpr std::ptrdiff_t kL1 = 32 * 1024;
constexpr std::ptrdiff_t kL2 = 1024 * 1024;
constexpr std::ptrdiff_t kL3 = 32 * 1024 * 1024;

/// Eigen's level-3 blocking object over buffers that the site owns.
template <class S>
class FixedBlocking : public ei::level3_blocking<S, S> {
 public:
  FixedBlocking(S* a, S* b, Index mc, Index nc, Index kc) {
    this->m_blockA = a;
    this->m_blockB = b;
    this->m_mc = mc;
    this->m_nc = nc;
    this->m_kc = kc;
  }
};

template <class S, int LhsOrder, int RhsOrder>
void eigen_kernel(Index m, Index n, Index k, const Operand<const S>& a, const Operand<const S>& b,
                  const Operand<S>& c, ei::level3_blocking<S, S>& blocking) {
  ei::general_matrix_matrix_product<Index, S, LhsOrder, false, S, RhsOrder, false, Eigen::ColMajor, 1>::run(
      m, n, k, a.data, a.stride, b.data, b.stride, c.data, 1, c.stride, S(1), blocking, nullptr);
}

}  // namespace

template <class S>
Gemm<S>::Gemm(Index max_rows, Index max_cols, Index max_depth, bool result_row_major, GemmWorkspace<S>& ws,
              bool eigen_only)
    : ws_(&ws),
      result_row_major_(result_row_major),
      eigen_only_(eigen_only),
      max_rows_(result_row_major ? max_cols : max_rows),
      max_cols_(result_row_major ? max_rows : max_cols),
      max_depth_(max_depth) {
  // Set every time: something else in the process may have changed Eigen's cache sizes.
  Eigen::setCpuCacheSizes(kL1, kL2, kL3);
  kc_ = max_depth_;
  mc_ = max_rows_;
  nc_ = max_cols_;
  ei::computeProductBlockingSizes<S, S, 1, Index>(kc_, mc_, nc_, 1);
  Index a_size = kc_ * mc_, b_size = kc_ * nc_;
  if (std::is_same_v<S, float>) {
    // A product with fewer than MR rows may run transposed (own_kernel_transposed): its packed A
    // then holds up to max_cols_ rows, its packed B fewer than MR columns.
    a_size = std::max({a_size, packed_a_size(max_rows_, max_depth_), packed_a_size(max_cols_, max_depth_)});
    b_size = std::max({b_size, packed_b_size(max_cols_, max_depth_), packed_b_size(kMR, max_depth_)});
  }
  ws.a.resize(std::max(ws.a.size(), static_cast<std::size_t>(a_size)));
  ws.b.resize(std::max(ws.b.size(), static_cast<std::size_t>(b_size)));
}

template <class S>
void Gemm<S>::run_eigen(const Operand<const S>& a, const Operand<const S>& b, const Operand<S>& c) const {
  // C = 0, then C += A B.
  for (Index j = 0; j < c.cols; ++j) std::fill_n(c.data + j * c.stride, c.rows, S(0));
  FixedBlocking<S> blocking(ws_->a.data(), ws_->b.data(), mc_, nc_, kc_);
  const Index m = c.rows, n = c.cols, k = a.cols;
  if (a.row_major) {
    if (b.row_major) eigen_kernel<S, Eigen::RowMajor, Eigen::RowMajor>(m, n, k, a, b, c, blocking);
    else eigen_kernel<S, Eigen::RowMajor, Eigen::ColMajor>(m, n, k, a, b, c, blocking);
  } else {
    if (b.row_major) eigen_kernel<S, Eigen::ColMajor, Eigen::RowMajor>(m, n, k, a, b, c, blocking);
    else eigen_kernel<S, Eigen::ColMajor, Eigen::ColMajor>(m, n, k, a, b, c, blocking);
  }
}

namespace {

/// The epilogue as a pass of its own over C (m x n, column-major), after a product that did not
/// apply it: whole packets down each column, the column's tail through a packet buffer, the same
/// instructions as the register tile's.
template <class S, Act A>
void epilogue_pass(const Epilogue<S>& ep, const Operand<S>& c) {
  using PS = Packet<S>;
  constexpr Index P = kPacket<S>;
  const auto f = [&](PS x, const S* rb, S cb) {
    if (rb != nullptr) x = ei::padd(x, ei::ploadu<PS>(rb));
    if (ep.col_bias != nullptr) x = ei::padd(x, ei::pset1<PS>(cb));
    if constexpr (A == Act::tanh) return ptanh(x);
    else if constexpr (A == Act::relu) return ei::pmax(x, ei::pzero(x));
    else return x;
  };
  const Index whole = c.rows / P * P;
  for (Index j = 0; j < c.cols; ++j) {
    S* col = c.data + j * c.stride;
    const S cb = ep.col_bias != nullptr ? ep.col_bias[j] : S(0);
    for (Index i = 0; i < whole; i += P)
      ei::pstoreu(col + i, f(ei::ploadu<PS>(col + i), ep.row_bias != nullptr ? ep.row_bias + i : nullptr, cb));
    if (whole < c.rows) {
      alignas(64) S buf[P] = {};
      alignas(64) S bias[P] = {};
      const Index tail = c.rows - whole;
      std::copy(col + whole, col + c.rows, buf);
      if (ep.row_bias != nullptr) std::copy(ep.row_bias + whole, ep.row_bias + c.rows, bias);
      ei::pstore(buf, f(ei::pload<PS>(buf), ep.row_bias != nullptr ? bias : nullptr, cb));
      std::copy(buf, buf + tail, col + whole);
    }
  }
}

template <class S>
void apply_epilogue(const Epilogue<S>& ep, const Operand<S>& c) {
  switch (ep.activation) {
    case Act::none: epilogue_pass<S, Act::none>(ep, c); break;
    case Act::tanh: epilogue_pass<S, Act::tanh>(ep, c); break;
    case Act::relu: epilogue_pass<S, Act::relu>(ep, c); break;
  }
}

}  // namespace

template <class S>
void Gemm<S>::run(Operand<const S> a, Operand<const S> b, Operand<S> c, const Epilogue<S>& epilogue) const {
  MDN_CHECK(c.row_major == result_row_major_);
  Epilogue<S> ep = epilogue;
  if (c.row_major) {  // C = A B  <=>  C^T = B^T A^T, with C^T column-major
    const Operand<const S> at = a.t();
    a = b.t();
    b = at;
    c = c.t();
    std::swap(ep.row_bias, ep.col_bias);
  }
  const Index m = c.rows;
  const Index n = c.cols;
  const Index k = a.cols;
  MDN_CHECK(a.rows == m && b.rows == k && b.cols == n);
  MDN_CHECK(m <= max_rows_ && n <= max_cols_ && k <= max_depth_);
  if (m == 0 || n == 0) return;
  if constexpr (std::is_same_v<S, float>) {
    const bool transposed = !eigen_only_ && own_kernel_transposed(m, n, k);
    if (!eigen_only_ && (own_kernel(m, n, k) || transposed)) {
      if (transposed) {  // C^T (n x m) = B^T A^T, written into C's storage
        const Operand<const S> at = a.t();
        a = b.t();
        b = at;
        c = {c.data, n, m, c.stride, false};
        std::swap(ep.row_bias, ep.col_bias);
      }
      const int width = panel_width(c.cols);
      switch (ep.activation) {
        case Act::none: sgemm_of_width<Act::none>(width, a, b, c, ws_->a.data(), ws_->b.data(), ep, transposed); break;
        case Act::tanh: sgemm_of_width<Act::tanh>(width, a, b, c, ws_->a.data(), ws_->b.data(), ep, transposed); break;
        case Act::relu: sgemm_of_width<Act::relu>(width, a, b, c, ws_->a.data(), ws_->b.data(), ep, transposed); break;
      }
      return;
    }
  }
  if (k == 0) {
    for (Index j = 0; j < n; ++j) std::fill_n(c.data + j * c.stride, m, S(0));
  } else {
    run_eigen(a, b, c);
  }
  if (ep.any()) apply_epilogue(ep, c);
}

template class Gemm<float>;
template class Gemm<double>;

namespace {

/// A product site with its own workspace, for code outside the network (tests, benchmarks).
template <class S>
class GemmSite final : public GemmKernel<S> {
 public:
  GemmSite(Index max_rows, Index max_cols, Index max_depth, bool result_row_major, bool eigen_only)
      : gemm_(max_rows, max_cols, max_depth, result_row_major, ws_, eigen_only) {}
  void run(Operand<const S> a, Operand<const S> b, Operand<S> c) override {
    const FlushDenormals flush;
    gemm_.run(a, b, c);
  }
  Index kc() const override { return gemm_.kc(); }
  Index mc() const override { return gemm_.mc(); }
  Index nc() const override { return gemm_.nc(); }

 private:
  GemmWorkspace<S> ws_;
  Gemm<S> gemm_;
};

}  // namespace

template <class S>
std::unique_ptr<GemmKernel<S>> make_gemm(Index max_rows, Index max_cols, Index max_depth, bool result_row_major) {
  return std::make_unique<GemmSite<S>>(max_rows, max_cols, max_depth, result_row_major, false);
}
template <class S>
std::unique_ptr<GemmKernel<S>> make_reference_gemm(Index max_rows, Index max_cols, Index max_depth,
                                                   bool result_row_major) {
  return std::make_unique<GemmSite<S>>(max_rows, max_cols, max_depth, result_row_major, true);
}

template std::unique_ptr<GemmKernel<float>> make_gemm<float>(Index, Index, Index, bool);
template std::unique_ptr<GemmKernel<double>> make_gemm<double>(Index, Index, Index, bool);
template std::unique_ptr<GemmKernel<float>> make_reference_gemm<float>(Index, Index, Index, bool);
template std::unique_ptr<GemmKernel<double>> make_reference_gemm<double>(Index, Index, Index, bool);

}  // namespace mdn::MDN_LEVEL
