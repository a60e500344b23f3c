#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "mdn/error.hpp"
#include "mdn/mpi_comm.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace mdn {

// ---- Comm ---------------------------------------------------------------------------------------

void Comm::broadcast(std::string& s, int root) {
  std::uint64_t n = s.size();
  broadcast(&n, 1, root);
  s.resize(n);
  if (n > 0) broadcast(s.data(), n, root);
}

void Comm::settle(const std::exception_ptr& local) {
  std::int32_t first = local ? rank() : size();
  first = min(first);
  if (first == size()) return;

  ErrorReport report;
  if (rank() == first) report = describe(local);
  std::int32_t code = static_cast<std::int32_t>(report.code);
  broadcast(&code, 1, first);
  broadcast(report.message, first);
  throw Error(static_cast<Exit>(code), report.message, /*collective=*/true);
}

namespace {

/// The units of `spec` (its own, or of 2048 elements).
std::vector<std::size_t> units_of(const IntegerSumSpec& spec) {
  if (!spec.units.empty()) {
    MDN_CHECK(spec.units.front() == 0 && spec.units.back() == spec.n);
    return spec.units;
  }
  std::vector<std::size_t> u;
  for (std::size_t i = 0; i < spec.n; i += 2048) u.push_back(i);
  u.push_back(spec.n);
  return u;
}

/// A private buffer summed in place by one allreduce; this rank finishes every unit.
class AllreduceSum final : public IntegerSum {
 public:
  AllreduceSum(Comm& comm, const IntegerSumSpec& spec)
      : comm_(comm), buffer_(spec.n, 0), results_buffer_((spec.result_bytes + 7) / 8) {
    values_ = buffer_.data();
    results_ = results_buffer_.data();
    n_ = spec.n;
    units_ = units_of(spec);
  }
  const std::int64_t* sum(SumFinisher* finisher, int /*wire_bytes*/, int terms) override {
    MDN_CHECK(terms == 0);  // no terms offered
    comm_.allreduce(values_, n_, ReduceOp::sum);
    if (finisher != nullptr) finisher->finish(values_, 0, units_.size() - 1);
    return values_;
  }
  std::string route() const override { return comm_.size() == 1 ? "one rank" : "MPI allreduce"; }

 private:
  Comm& comm_;
  std::vector<std::int64_t> buffer_;
  std::vector<double> results_buffer_;
};

}  // namespace

std::unique_ptr<IntegerSum> Comm::integer_sum(const IntegerSumSpec& spec, const IntegerSumOptions&) {
  return std::make_unique<AllreduceSum>(*this, spec);
}

void SelfComm::exchange_bytes(const char* send, const std::vector<std::size_t>& offsets, std::vector<char>& recv,
                              std::vector<std::size_t>& recv_offsets) {
  MDN_CHECK(offsets.size() == 2);
  recv.assign(send + offsets[0], send + offsets[1]);
  recv_offsets = {0, recv.size()};
}

std::vector<char> SelfComm::gather(const void* data, std::size_t bytes, int root) {
  MDN_CHECK(root == 0);
  (void)root;
  const auto* p = static_cast<const char*>(data);
  return std::vector<char>(p, p + bytes);
}

void SelfComm::broadcast_raw(void*, std::size_t, int root) {
  MDN_CHECK(root == 0);
  (void)root;
}

// ---- MpiComm ------------------------------------------------------------------------------------

void check_mpi(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) len = 0;
  throw run_error("{} failed: {} (MPI error code {})", call,
                  len > 0 ? std::string(text, static_cast<std::size_t>(len)) : "unknown error", rc);
}

namespace {

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::u64: return MPI_UINT64_T;
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
  }
  return MPI_DATATYPE_NULL;
}

std::size_t type_size(DType t) {
  switch (t) {
    case DType::i32:
    case DType::f32: return 4;
    case DType::i64:
    case DType::u64:
    case DType::f64: return 8;
  }
  return 0;
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return MPI_SUM;
    case ReduceOp::max: return MPI_MAX;
    case ReduceOp::min: return MPI_MIN;
  }
  return MPI_OP_NULL;
}

// MPI counts are ints: larger buffers go in pieces.
constexpr std::size_t kMaxCount = static_cast<std::size_t>(INT_MAX) / 8 * 8;

}  // namespace

MpiComm::MpiComm(MPI_Comm parent) {
  check_mpi(MPI_Comm_dup(parent, &comm_), "MPI_Comm_dup");
  check_mpi(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
}

MpiComm::~MpiComm() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);  // error ignored: never throw
}

void MpiComm::wait(MPI_Request& request, const char* call) {
  if (timeout_ <= 0) {
    check_mpi(MPI_Wait(&request, MPI_STATUS_IGNORE), call);
    return;
  }
  // Spin for the first millisecond (the step's collectives), then poll gently: ranks may wait
  // minutes for rank 0's checkpoint write.
  poll([&] {
    int done = 0;
    check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), call);
    return done != 0;
  }, call);
}

void MpiComm::wait_all(MPI_Request* requests, int n, const char* call) {
  if (timeout_ <= 0) {
    check_mpi(MPI_Waitall(n, requests, MPI_STATUSES_IGNORE), call);
    return;
  }
  poll([&] {
    int done = 0;
    check_mpi(MPI_Testall(n, requests, &done, MPI_STATUSES_IGNORE), call);
    return done != 0;
  }, call);
}

void MpiComm::stalled(const char* call) {
  const std::string at = phase_step_ >= 0 ? fmt::format("step {} ({})", phase_step_, phase_) : std::string(phase_);
  std::fprintf(stderr,
               "mdn: error (rank %d of %d): %s made no progress for %.0f s in %s: another rank has stopped "
               "or hangs (comm.timeout_seconds); aborting the job\n",
               rank_, size_, call, timeout_, at.c_str());
  std::fflush(stderr);
  // MPI_Abort asks the launcher to kill the job, and waits for it. When the launcher cannot be
  // reached (this node is cut off, or it hangs itself) that wait has no end, and the process would
  // hold its run directory and its node; so it ends by itself kAbortGraceSeconds later.
  const int rank = rank_;
  std::thread([rank] {
    std::this_thread::sleep_for(std::chrono::seconds(kAbortGraceSeconds));
    std::fprintf(stderr, "mdn: error (rank %d): MPI_Abort did not end this process in %d s; exiting\n", rank,
                 kAbortGraceSeconds);
    std::fflush(stderr);
    _exit(static_cast<int>(Exit::failure));
  }).detach();
  MPI_Abort(comm_, static_cast<int>(Exit::failure));
  std::abort();  // MPI_Abort does not return
}

void MpiComm::barrier() {
  MPI_Request r;
  check_mpi(MPI_Ibarrier(comm_, &r), "MPI_Ibarrier");
  wait(r, "MPI_Ibarrier");
}

void MpiComm::exchange_bytes(const char* send, const std::vector<std::size_t>& offsets, std::vector<char>& recv,
                             std::vector<std::size_t>& recv_offsets) {
  const auto P = static_cast<std::size_t>(size_);
  MDN_CHECK(offsets.size() == P + 1 && offsets[P] < static_cast<std::size_t>(INT_MAX));
  std::vector<std::uint64_t> out(P), in(P, 0);
  for (std::size_t t = 0; t < P; ++t) out[t] = offsets[t + 1] - offsets[t];
  MPI_Request req;
  check_mpi(MPI_Ialltoall(out.data(), 1, MPI_UINT64_T, in.data(), 1, MPI_UINT64_T, comm_, &req), "MPI_Ialltoall");
  wait(req, "MPI_Ialltoall");
  recv_offsets.assign(P + 1, 0);
  for (std::size_t s = 0; s < P; ++s) recv_offsets[s + 1] = recv_offsets[s] + in[s];
  if (recv_offsets[P] >= static_cast<std::size_t>(INT_MAX)) throw run_error("row exchange: 2 GiB or more to receive at once");
  recv.resize(recv_offsets[P]);
  std::vector<int> scounts(P), sdispls(P), rcounts(P), rdispls(P);
  for (std::size_t t = 0; t < P; ++t) {
    scounts[t] = static_cast<int>(out[t]);
    sdispls[t] = static_cast<int>(offsets[t]);
    rcounts[t] = static_cast<int>(in[t]);
    rdispls[t] = static_cast<int>(recv_offsets[t]);
  }
  check_mpi(MPI_Ialltoallv(send, scounts.data(), sdispls.data(), MPI_BYTE, recv.data(), rcounts.data(), rdispls.data(),
                           MPI_BYTE, comm_, &req),
            "MPI_Ialltoallv");
  wait(req, "MPI_Ialltoallv");
}

std::vector<char> MpiComm::gather(const void* data, std::size_t bytes, int root) {
  // Sizes first, then each rank's bytes in pieces of at most kMaxCount (MPI counts are ints).
  std::vector<std::uint64_t> sizes(static_cast<std::size_t>(size_), 0);
  const std::uint64_t mine = bytes;
  MPI_Request req;
  check_mpi(MPI_Igather(&mine, 1, MPI_UINT64_T, sizes.data(), 1, MPI_UINT64_T, root, comm_, &req), "MPI_Igather");
  wait(req, "MPI_Igather");
  std::vector<char> out;
  constexpr int kTag = 7101;
  if (rank_ != root) {
    const auto* p = static_cast<const char*>(data);
    for (std::size_t done = 0; done < bytes;) {
      const std::size_t n = std::min(bytes - done, kMaxCount);
      check_mpi(MPI_Isend(p + done, static_cast<int>(n), MPI_BYTE, root, kTag, comm_, &req), "MPI_Isend");
      wait(req, "MPI_Isend");
      done += n;
    }
    return out;
  }
  std::size_t total = 0;
  for (auto s : sizes) total += s;
  out.resize(total);
  std::size_t at = 0;
  for (int r = 0; r < size_; ++r) {
    const std::size_t n_r = sizes[static_cast<std::size_t>(r)];
    if (r == root) {
      std::memcpy(out.data() + at, data, n_r);
    } else {
      for (std::size_t done = 0; done < n_r;) {
        const std::size_t n = std::min(n_r - done, kMaxCount);
        check_mpi(MPI_Irecv(out.data() + at + done, static_cast<int>(n), MPI_BYTE, r, kTag, comm_, &req),
                  "MPI_Irecv");
        wait(req, "MPI_Irecv");
        done += n;
      }
    }
    at += n_r;
  }
  return out;
}

namespace {

/// In-place allreduce on `on`, in pieces of at most kMaxCount, each polled by `waiter`'s watchdog.
void iallreduce(MpiComm& waiter, MPI_Comm on, void* data, std::size_t n, DType type, ReduceOp op) {
  auto* bytes = static_cast<unsigned char*>(data);
  const std::size_t width = type_size(type);
  std::size_t done = 0;
  do {
    const std::size_t count = std::min(n - done, kMaxCount);
    MPI_Request req;
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, bytes + done * width, static_cast<int>(count), mpi_type(type),
                             mpi_op(op), on, &req),
              "MPI_Iallreduce");
    waiter.wait(req, "MPI_Iallreduce");
    done += count;
  } while (done < n);
}

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the ring's narrowed integers are little-endian");

// Whole 8-byte moves at W-byte steps: a W-byte copy goes through the stack, and its wide reload
// misses store forwarding (5 times slower). Both buffers carry 8 bytes of slack at the end.

/// The low W bytes of each value (little-endian: its first W bytes); writes up to 8 - W bytes
/// past n W (the next value overwrites them).
template <int W>
void narrow(const std::int64_t* v, std::size_t n, unsigned char* out) {
  for (std::size_t i = 0; i < n; ++i) std::memcpy(out + i * W, v + i, 8);
}

/// Adds W-byte two's-complement integers, sign-extended, to v; reads up to 8 - W bytes past n W.
template <int W>
void widen_add(const unsigned char* in, std::size_t n, std::int64_t* v) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t x;
    std::memcpy(&x, in + i * W, 8);  // the bytes past this integer's W leave by the shift
    if constexpr (W < 8) x <<= 64 - 8 * W;
    v[i] += static_cast<std::int64_t>(x) >> (64 - 8 * W);  // arithmetic shift: the sign comes back
  }
}

template <class F>
void with_width(int wire, F&& f) {
  switch (wire) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 5: return f(std::integral_constant<int, 5>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 7: return f(std::integral_constant<int, 7>{});
    default: MDN_CHECK(wire == 8); return f(std::integral_constant<int, 8>{});
  }
}

/// The exact sum between ranks that share no memory, for the units [u_begin, u_end): a ring.
///
/// The units are dealt into Q contiguous groups of about equal length, one per rank of `on`. In
/// Q - 1 steps each rank sends its partial sums of one group to the next rank, narrowed to
/// `wire` bytes, and adds what the previous one sent (a reduce-scatter: after it, rank q holds
/// the complete sums of group q + 1), finishes that group's units, and in Q - 1 more steps passes
/// the groups' results around (an allgather). Every rank sends (Q - 1) / Q of the elements once
/// as narrowed integers and once as results (the mean gradient's floats): 6 + 4 bytes an element
/// against the 4 + 4 of a float allreduce in a ring, where an int64 allreduce moves 8 + 8.
///
/// Each step's group travels in chunks of whole units (about kChunk elements), so that narrowing,
/// sending, receiving and adding overlap; in the last adding step each chunk is finished and its
/// results are sent on as soon as it has arrived, so that the allgather overlaps the
/// reduce-scatter. Integer addition is associative and commutative: no order changes a bit.
class Ring {
 public:
  Ring(MpiComm& waiter, MPI_Comm on, const std::vector<std::size_t>& units, std::size_t u_begin, std::size_t u_end,
       const std::vector<std::vector<std::size_t>>& regions)
      : waiter_(waiter), on_(on), units_(units), regions_(regions) {
    check_mpi(MPI_Comm_rank(on, &rank_), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(on, &size_), "MPI_Comm_size");
    const std::size_t begin = units[u_begin], end = units[u_end];
    std::size_t widest = 0, most_chunks = 0;
    groups_.push_back(u_begin);
    for (int g = 1; g <= size_; ++g) {
      const std::size_t at = begin + (end - begin) * static_cast<std::size_t>(g) / static_cast<std::size_t>(size_);
      std::size_t u = groups_.back();
      while (u < u_end && units[u] < at) ++u;
      groups_.push_back(g == size_ ? u_end : u);
    }
    for (int g = 0; g < size_; ++g) {
      std::vector<std::size_t> c = {groups_[static_cast<std::size_t>(g)]};
      const std::size_t last = groups_[static_cast<std::size_t>(g) + 1];
      while (c.back() < last) {
        std::size_t u = c.back() + 1;
        while (u < last && units[u] - units[c.back()] < kChunk) ++u;
        c.push_back(u);
      }
      most_chunks = std::max(most_chunks, c.size() - 1);
      widest = std::max(widest, units[last] - units[groups_[static_cast<std::size_t>(g)]]);
      chunks_.push_back(std::move(c));
    }
    MDN_CHECK(widest * 8 < kMaxCount);
    send_.resize(widest * 8 + 8);  // the slack narrow and widen_add need
    recv_.resize(widest * 8 + 8);
    const std::size_t per_chunk = std::max<std::size_t>(regions.size(), 1);
    sends_.resize(most_chunks);
    recvs_.resize(most_chunks);
    result_sends_.resize(most_chunks * per_chunk);
    result_recvs_.resize(most_chunks * per_chunk);
  }

  void run(std::int64_t* sums, int wire, SumFinisher* finisher, unsigned char* results) {
    const int Q = size_, q = rank_;
    const int right = (q + 1) % Q, left = (q + Q - 1) % Q;
    int result_sends = 0, result_recvs = 0;
    if (Q == 1) finisher->finish(sums, groups_[0], groups_[1]);
    for (int s = 0; s + 1 < Q; ++s) {
      const int out = (q - s + Q) % Q, in = (q - s - 1 + 2 * Q) % Q;
      const bool last = s + 2 == Q;  // `in` is then this rank's own group, complete once added
      const auto& in_chunks = chunks_[static_cast<std::size_t>(in)];
      const auto& out_chunks = chunks_[static_cast<std::size_t>(out)];
      const std::size_t in_at = element(in_chunks.front()), out_at = element(out_chunks.front());
      for (std::size_t j = 0; j + 1 < in_chunks.size(); ++j) {
        const std::size_t at = element(in_chunks[j]), n = element(in_chunks[j + 1]) - at;
        check_mpi(MPI_Irecv(recv_.data() + (at - in_at) * static_cast<std::size_t>(wire), static_cast<int>(n) * wire,
                            MPI_BYTE, left, kSumTag, on_, &recvs_[j]),
                  "MPI_Irecv");
      }
      if (last) result_recvs = post_results(q, left, results, result_recvs_.data());
      for (std::size_t j = 0; j + 1 < out_chunks.size(); ++j) {
        const std::size_t at = element(out_chunks[j]), n = element(out_chunks[j + 1]) - at;
        unsigned char* buf = send_.data() + (at - out_at) * static_cast<std::size_t>(wire);
        with_width(wire, [&](auto w) { narrow<decltype(w)::value>(sums + at, n, buf); });
        check_mpi(MPI_Isend(buf, static_cast<int>(n) * wire, MPI_BYTE, right, kSumTag, on_, &sends_[j]), "MPI_Isend");
      }
      for (std::size_t j = 0; j + 1 < in_chunks.size(); ++j) {
        const std::size_t at = element(in_chunks[j]), n = element(in_chunks[j + 1]) - at;
        waiter_.wait(recvs_[j], "MPI_Irecv (the exact sum's ring)");
        with_width(wire, [&](auto w) {
          widen_add<decltype(w)::value>(recv_.data() + (at - in_at) * static_cast<std::size_t>(wire), n, sums + at);
        });
        if (!last) continue;
        finisher->finish(sums, in_chunks[j], in_chunks[j + 1]);
        result_sends += send_results(in_chunks[j], in_chunks[j + 1], right, results, result_sends_.data() + result_sends);
      }
      waiter_.wait_all(sends_.data(), static_cast<int>(out_chunks.size() - 1), "MPI_Isend (the exact sum's ring)");
    }
    // The allgather's first step (this rank's own group out, the previous rank's in) is under way.
    waiter_.wait_all(result_sends_.data(), result_sends, "MPI_Isend (the exact sum's ring)");
    waiter_.wait_all(result_recvs_.data(), result_recvs, "MPI_Irecv (the exact sum's ring)");
    for (int s = 1; s + 1 < Q; ++s) {  // the rest: each rank passes on the group it received last
      const int out = (q + 1 - s + Q) % Q, in = (q - s + Q) % Q;
      const int r = post_results(in, left, results, result_recvs_.data());
      const auto& c = chunks_[static_cast<std::size_t>(out)];
      int n = 0;
      for (std::size_t j = 0; j + 1 < c.size(); ++j) n += send_results(c[j], c[j + 1], right, results, result_sends_.data() + n);
      waiter_.wait_all(result_sends_.data(), n, "MPI_Isend (the exact sum's ring)");
      waiter_.wait_all(result_recvs_.data(), r, "MPI_Irecv (the exact sum's ring)");
    }
  }

 private:
  static constexpr int kSumTag = 7, kResultTag = 8;
  static constexpr std::size_t kChunk = 65536;  // elements: 384 KiB of 6-byte integers a message

  std::size_t element(std::size_t unit) const { return units_[unit]; }

  /// Starts sending the results of units [u0, u1) to `to`, a message per region; returns how many.
  int send_results(std::size_t u0, std::size_t u1, int to, unsigned char* results, MPI_Request* requests) {
    int k = 0;
    for (const auto& r : regions_)
      check_mpi(MPI_Isend(results + r[u0], static_cast<int>(r[u1] - r[u0]), MPI_BYTE, to, kResultTag, on_,
                          &requests[k++]),
                "MPI_Isend");
    return k;
  }

  /// Posts the receives of group g's results from `from`, a message per chunk and region, as
  /// they are sent; returns how many.
  int post_results(int g, int from, unsigned char* results, MPI_Request* requests) {
    const auto& c = chunks_[static_cast<std::size_t>(g)];
    int k = 0;
    for (std::size_t j = 0; j + 1 < c.size(); ++j)
      for (const auto& r : regions_)
        check_mpi(MPI_Irecv(results + r[c[j]], static_cast<int>(r[c[j + 1]] - r[c[j]]), MPI_BYTE, from, kResultTag,
                            on_, &requests[k++]),
                  "MPI_Irecv");
    return k;
  }

  MpiComm& waiter_;
  MPI_Comm on_;
  const std::vector<std::size_t>& units_;
  const std::vector<std::vector<std::size_t>>& regions_;
  int rank_ = 0, size_ = 1;
  std::vector<std::size_t> groups_;               // group g: units [groups_[g], groups_[g + 1])
  std::vector<std::vector<std::size_t>> chunks_;  // group g's chunks: units [c[j], c[j + 1])
  std::vector<unsigned char> send_, recv_;
  std::vector<MPI_Request> sends_, recvs_, result_sends_, result_recvs_;
};

/// Owns a communicator made from another (freed unless MPI is finalized).
class OwnedComm {
 public:
  OwnedComm() = default;
  OwnedComm(OwnedComm&& o) noexcept : c_(std::exchange(o.c_, MPI_COMM_NULL)) {}
  OwnedComm& operator=(OwnedComm&&) = delete;
  ~OwnedComm() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && c_ != MPI_COMM_NULL) MPI_Comm_free(&c_);
  }
  MPI_Comm* out() { return &c_; }
  MPI_Comm get() const { return c_; }

 private:
  MPI_Comm c_ = MPI_COMM_NULL;
};

/// A POSIX shared-memory segment mapped into this process (unmapped on destruction: a local
/// call, so that no error path waits for other ranks).
class Mapping {
 public:
  Mapping() = default;
  Mapping(void* p, std::size_t bytes) : p_(p), bytes_(bytes) {}
  Mapping(Mapping&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(o.bytes_) {}
  Mapping& operator=(Mapping&&) = delete;
  ~Mapping() {
    if (p_ != nullptr) munmap(p_, bytes_);
  }
  unsigned char* get() const { return static_cast<unsigned char*>(p_); }

 private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

/// Node rank 0 creates and sizes the segment (its pages reserved with posix_fallocate, so that a
/// full /dev/shm is an error here and not a SIGBUS later) and sends its name; the other ranks map
/// it. Every failure is local and returns an empty mapping; the caller agrees on the outcome and
/// then (node rank 0) unlinks `created`, the segment's name.
Mapping map_node_segment(MpiComm& world, MPI_Comm node, int node_rank, std::size_t bytes, std::string& created) {
  static int serial = 0;
  char name[64] = {};
  if (node_rank == 0) {
    std::snprintf(name, sizeof name, "/mdn-sum-%ld-%d-%lld", static_cast<long>(getpid()), serial++,
                  static_cast<long long>(std::chrono::steady_clock::now().time_since_epoch().count() & 0xffffff));
    const int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    bool ok = fd >= 0 && ftruncate(fd, static_cast<off_t>(bytes)) == 0 &&
              posix_fallocate(fd, 0, static_cast<off_t>(bytes)) == 0;
    if (fd >= 0) close(fd);
    if (ok) {
      created = name;
    } else {
      if (fd >= 0) shm_unlink(name);
      name[0] = '\0';  // tells the others
    }
  }
  MPI_Request req;
  check_mpi(MPI_Ibcast(name, sizeof name, MPI_CHAR, 0, node, &req), "MPI_Ibcast");
  world.wait(req, "MPI_Ibcast (node)");
  if (name[0] == '\0') return {};
  const int fd = shm_open(name, O_RDWR, 0600);
  if (fd < 0) return {};
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  return p == MAP_FAILED ? Mapping() : Mapping(p, bytes);
}

/// The integer sum through a shared-memory segment per node (POSIX shm).
///
/// Each rank writes its values into its own part of the node's segment. After a node barrier,
/// node rank r adds its chunk — the units that start in [r n / R, (r + 1) n / R), R ranks on the
/// node — of every rank's part into the node's sums; when nodes hold equal numbers of ranks, rank
/// r then allreduces that chunk with the node ranks r of the other nodes, so every rank carries
/// 1/R of the inter-node traffic (nodes of unequal size: each node's first rank adds everything
/// and allreduces it with the other nodes' first ranks). The rank then finishes its units into
/// the shared results, and a second barrier publishes sums and results. Against one MPI
/// allreduce over all ranks, no byte is copied into or out of MPI's buffers on the node, and the
/// addition and the finishing are spread over the node's ranks.
///
/// With float terms (IntegerSumSpec::terms) a rank writes its terms into its part instead of
/// integers, and the owner of a unit quantises every rank's terms there as it adds them: per
/// element, a rank reads 4 bytes of another's part where it read 8, and nobody writes integers
/// first. What passes between the cores, not the arithmetic, is what this sum costs on a node.
///
/// Reuse without a race: a rank rewrites its part only after the second barrier (everyone has
/// added), and the sums are rewritten only after the next call's first barrier (everyone has read
/// them). Both barriers live in the segment and are polled by the stall watchdog.
class SharedSum final : public IntegerSum {
 public:
  SharedSum(MpiComm& world, const IntegerSumSpec& spec, OwnedComm node, Mapping segment, std::size_t stride,
            int node_rank, int node_size, int nodes, bool equal_nodes)
      : world_(world), node_(std::move(node)), segment_(std::move(segment)), nodes_(nodes), node_size_(node_size) {
    n_ = spec.n;
    units_ = units_of(spec);
    unsigned char* at = segment_.get();
    for (int r = 0; r < node_size; ++r, at += stride) parts_.push_back(reinterpret_cast<std::int64_t*>(at));
    values_ = parts_[static_cast<std::size_t>(node_rank)];
    if (spec.terms > 0) {
      // A part's terms lie where its integers of [0, term_elements) would (two floats take the
      // bytes of one integer); the rest of its integers keep their places, and a cache line after
      // them says how many terms the part holds this time.
      MDN_CHECK(spec.terms <= 2 && std::binary_search(units_.begin(), units_.end(), spec.term_elements));
      term_elements_ = spec.term_elements;
      for (int k = 0; k < spec.terms; ++k)
        terms_.push_back(reinterpret_cast<float*>(values_) + static_cast<std::size_t>(k) * term_elements_);
      node_terms_.resize(static_cast<std::size_t>(node_size) * 2);
    }
    sums_ = reinterpret_cast<std::int64_t*>(at);
    at += stride;
    results_ = at;
    at += round_to_pages(spec.result_bytes);
    barrier_ = reinterpret_cast<std::uint32_t*>(at);  // its page, zero as created
    // Node rank r owns the units that start in [r n / R, (r + 1) n / R).
    const std::size_t U = units_.size() - 1;
    const auto first_unit_from = [&](std::size_t element) {
      return static_cast<std::size_t>(std::lower_bound(units_.begin(), units_.begin() + static_cast<std::ptrdiff_t>(U), element) -
                                      units_.begin());
    };
    if (equal_nodes) {
      first_ = first_unit_from(n_ * static_cast<std::size_t>(node_rank) / static_cast<std::size_t>(node_size));
      last_ = first_unit_from(n_ * static_cast<std::size_t>(node_rank + 1) / static_cast<std::size_t>(node_size));
      if (nodes > 1) check_mpi(MPI_Comm_split(world.handle(), node_rank, world.rank(), across_.out()), "MPI_Comm_split");
    } else {
      leaders_ = true;
      first_ = 0;
      last_ = node_rank == 0 ? U : 0;
      check_mpi(MPI_Comm_split(world.handle(), node_rank == 0 ? 0 : MPI_UNDEFINED, world.rank(), across_.out()),
                "MPI_Comm_split");
    }
    regions_ = spec.result_regions;
    if (across_.get() != MPI_COMM_NULL && !regions_.empty() && last_ > first_)
      ring_ = std::make_unique<Ring>(world, across_.get(), units_, first_, last_, regions_);
  }

  static std::size_t round_to_pages(std::size_t bytes) { return (bytes + 4095) / 4096 * 4096; }

  const std::int64_t* sum(SumFinisher* finisher, int wire_bytes, int terms) override {
    MDN_CHECK(terms >= 0 && terms <= static_cast<int>(terms_.size()) && (terms_.empty() || finisher != nullptr));
    if (!terms_.empty()) *term_count(values_) = terms;
    publish();  // every rank's values (and terms) are written
    const std::size_t begin = units_[first_], end = units_[last_];
    if (end > begin) {
      int count = 0;  // every rank's terms on the node
      for (std::int64_t* part : parts_) {
        const int held = terms_.empty() ? 0 : *term_count(part);
        for (int k = 0; k < held; ++k)
          node_terms_[static_cast<std::size_t>(count++)] =
              reinterpret_cast<const float*>(part) + static_cast<std::size_t>(k) * term_elements_;
      }
      // On one node nothing is added after this: each unit is finished as soon as it is summed,
      // while its sums are still in the first-level cache.
      const bool at_once = finisher != nullptr && across_.get() == MPI_COMM_NULL;
      for (std::size_t u = first_; u < last_; ++u) {
        if (units_[u] < term_elements_) finisher->quantize(node_terms_.data(), count, u, u + 1, sums_);
        else add_parts(units_[u], units_[u + 1]);
        if (at_once) finisher->finish(sums_, u, u + 1);
      }
      if (!at_once) {  // the other nodes' sums first
        if (ring_ && finisher != nullptr) {
          ring_->run(sums_, wire_bytes, finisher, static_cast<unsigned char*>(results_));
        } else {
          if (across_.get() != MPI_COMM_NULL)
            iallreduce(world_, across_.get(), sums_ + begin, end - begin, DType::i64, ReduceOp::sum);
          if (finisher != nullptr) finisher->finish(sums_, first_, last_);
        }
      }
    }
    publish();  // every unit is summed and finished
    return sums_;
  }

  std::string route() const override {
    const std::string node = fmt::format("shared memory ({} rank{} per node", node_size_, node_size_ == 1 ? "" : "s");
    const char* terms = terms_.empty() ? "" : ", float terms read in place";
    if (nodes_ == 1) return node + ", 1 node)" + terms;
    return fmt::format("{}, {} nodes), between nodes {}{}{}", node, nodes_,
                       regions_.empty() ? "MPI allreduce" : "a ring of narrowed integers and results",
                       leaders_ ? " by each node's first rank (nodes of unequal size)" : " in per-rank chunks", terms);
  }

 private:
  /// sums_[b, e) = the sum of the node's parts there.
  void add_parts(std::size_t b, std::size_t e) {
    constexpr std::size_t kBlock = 2048;  // 16 KB: the block stays in L1 while the parts are added in
    for (; b < e; b += kBlock) {
      const std::size_t be = std::min(e, b + kBlock);
      const std::int64_t* first = parts_[0];
      for (std::size_t i = b; i < be; ++i) sums_[i] = first[i];
      for (std::size_t r = 1; r < parts_.size(); ++r) {
        const std::int64_t* part = parts_[r];
        for (std::size_t i = b; i < be; ++i) sums_[i] += part[i];
      }
    }
  }

  /// How many terms a part holds: the cache line after its n integers.
  std::int32_t* term_count(std::int64_t* part) const {
    return reinterpret_cast<std::int32_t*>(part + (n_ + 7) / 8 * 8);
  }

  /// A barrier of the node's ranks in the segment itself (a sense-reversing counter; a fraction
  /// of an MPI barrier's latency): the last to arrive starts the next generation. Its acquire and
  /// release order every rank's writes to the segment before the others' reads. Polled by the
  /// stall watchdog.
  void publish() {
    std::uint32_t* arrived = barrier_;
    std::uint32_t* generation = barrier_ + 16;  // another cache line
    const std::uint32_t g = __atomic_load_n(generation, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(arrived, 1, __ATOMIC_ACQ_REL) == static_cast<std::uint32_t>(node_size_)) {
      __atomic_store_n(arrived, 0, __ATOMIC_RELAXED);
      __atomic_store_n(generation, g + 1, __ATOMIC_RELEASE);
      return;
    }
    world_.poll([&] { return __atomic_load_n(generation, __ATOMIC_ACQUIRE) != g; }, "the node's barrier");
  }

  MpiComm& world_;
  OwnedComm node_;
  OwnedComm across_;  // the same node rank on every node, or the nodes' first ranks
  Mapping segment_;   // every node rank's part, then the sums
  int nodes_;
  int node_size_;
  bool leaders_ = false;
  std::vector<std::int64_t*> parts_;
  std::int64_t* sums_ = nullptr;
  std::uint32_t* barrier_ = nullptr;
  std::size_t first_ = 0, last_ = 0;  // the units this rank adds and finishes
  std::size_t term_elements_ = 0;     // elements [0, term_elements_) come as float terms
  std::vector<const float*> node_terms_;  // this sum's terms of every rank on the node
  std::vector<std::vector<std::size_t>> regions_;
  std::unique_ptr<Ring> ring_;  // between nodes, when the results can travel instead of the sums
};

/// The integer sum over ranks that share no memory (one rank per node, or comm.shared_memory:
/// false): a Ring over all of them, each finishing a group of units; without a finisher, one
/// int64 allreduce.
class RingSum final : public IntegerSum {
 public:
  RingSum(MpiComm& world, const IntegerSumSpec& spec)
      : world_(world), buffer_(spec.n, 0), results_buffer_((spec.result_bytes + 7) / 8), regions_(spec.result_regions) {
    values_ = buffer_.data();
    results_ = results_buffer_.data();
    n_ = spec.n;
    units_ = units_of(spec);
    check_mpi(MPI_Comm_dup(world.handle(), ring_comm_.out()), "MPI_Comm_dup");
    ring_ = std::make_unique<Ring>(world, ring_comm_.get(), units_, 0, units_.size() - 1, regions_);
  }
  const std::int64_t* sum(SumFinisher* finisher, int wire_bytes, int terms) override {
    MDN_CHECK(terms == 0);  // no terms offered
    if (finisher != nullptr) {
      ring_->run(values_, wire_bytes, finisher, static_cast<unsigned char*>(results_));
    } else {
      iallreduce(world_, ring_comm_.get(), values_, n_, DType::i64, ReduceOp::sum);
    }
    return values_;
  }
  std::string route() const override { return "MPI ring of narrowed integers and results"; }

 private:
  MpiComm& world_;
  std::vector<std::int64_t> buffer_;
  std::vector<double> results_buffer_;
  std::vector<std::vector<std::size_t>> regions_;
  OwnedComm ring_comm_;
  std::unique_ptr<Ring> ring_;
};

}  // namespace

std::unique_ptr<IntegerSum> MpiComm::integer_sum(const IntegerSumSpec& spec, const IntegerSumOptions& options) {
  const std::size_t n = spec.n;
  // Ranks that share no memory: a ring when the results can travel instead of the sums.
  const auto apart = [&]() -> std::unique_ptr<IntegerSum> {
    if (spec.result_regions.empty()) return Comm::integer_sum(spec, options);
    return std::make_unique<RingSum>(*this, spec);
  };
  if (size_ == 1 || n == 0) return Comm::integer_sum(spec, options);
  if (!options.shared_memory) return apart();
  OwnedComm node;
  if (options.node >= 0)
    check_mpi(MPI_Comm_split(comm_, options.node, rank_, node.out()), "MPI_Comm_split");
  else
    check_mpi(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, node.out()),
              "MPI_Comm_split_type");
  int node_rank = 0, node_size = 1;
  check_mpi(MPI_Comm_rank(node.get(), &node_rank), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(node.get(), &node_size), "MPI_Comm_size");
  // Sizes: the largest and smallest node, whether some rank gives no terms, and the number of
  // nodes, agreed by every rank.
  std::int64_t agreed[4] = {node_size, -node_size, spec.terms > 0 ? 0 : 1, node_rank == 0 ? 1 : 0};
  allreduce(agreed, 3, ReduceOp::max);
  allreduce(agreed + 3, 1, ReduceOp::sum);
  // One rank per node: nothing to share.
  if (options.node < 0 && agreed[0] == 1) return apart();

  // Every rank's part, the sums, the results and the barrier, each on pages of their own.
  const std::size_t stride = SharedSum::round_to_pages((n + 7) / 8 * 8 * sizeof(std::int64_t) + 64);
  const std::size_t bytes =
      stride * static_cast<std::size_t>(node_size + 1) + SharedSum::round_to_pages(spec.result_bytes) + 4096;
  std::string created;
  Mapping segment = map_node_segment(*this, node.get(), node_rank, bytes, created);
  // Every rank has tried to map the segment once this returns: its name can go. Where some rank
  // has none (no /dev/shm, too little room in it, a file size limit), every rank sums through MPI.
  const bool everywhere = min(segment.get() != nullptr ? 1 : 0) == 1;
  if (!created.empty()) shm_unlink(created.c_str());
  if (!everywhere) return apart();
  IntegerSumSpec taken = spec;
  if (agreed[2] != 0) taken.terms = 0;  // terms only where every rank gives them
  return std::make_unique<SharedSum>(*this, taken, std::move(node), std::move(segment), stride, node_rank, node_size,
                                     static_cast<int>(agreed[3]), agreed[0] == -agreed[1]);
}

void MpiComm::allreduce_raw(void* data, std::size_t n, DType type, ReduceOp op) {
  iallreduce(*this, comm_, data, n, type, op);
}

void MpiComm::broadcast_raw(void* data, std::size_t bytes, int root) {
  auto* p = static_cast<unsigned char*>(data);
  std::size_t done = 0;
  do {  // at least one call, so that a bad root is reported even for an empty buffer
    const std::size_t count = std::min(bytes - done, kMaxCount);
    MPI_Request req;
    check_mpi(MPI_Ibcast(p + done, static_cast<int>(count), MPI_BYTE, root, comm_, &req), "MPI_Ibcast");
    wait(req, "MPI_Ibcast");
    done += count;
  } while (done < bytes);
}

}  // namespace mdn
