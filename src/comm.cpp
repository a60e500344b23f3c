#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "mdn/error.hpp"
#include "mdn/mpi_comm.hpp"

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

void SelfComm::exchange_rows(const float* send, std::size_t width,
                             const std::vector<std::vector<std::int32_t>>& send_rows, float* recv,
                             const std::vector<std::int64_t>& recv_counts) {
  MDN_CHECK(send_rows.size() == 1 && recv_counts.size() == 1 &&
         static_cast<std::int64_t>(send_rows[0].size()) == recv_counts[0]);
  (void)recv_counts;
  for (std::size_t k = 0; k < send_rows[0].size(); ++k)
    std::copy_n(send + static_cast<std::size_t>(send_rows[0][k]) * width, width, recv + k * width);
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
  using Clock = std::chrono::steady_clock;
  if (timeout_ <= 0) {
    check_mpi(MPI_Wait(&request, MPI_STATUS_IGNORE), call);
    return;
  }
  const auto start = Clock::now();
  int done = 0;
  for (long spins = 0;; ++spins) {
    check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), call);
    if (done) return;
    if (spins % 1024 != 1023) continue;  // the clock only now and then
    // Spin for the first millisecond (the step's collectives), then poll gently: ranks may wait
    // minutes for rank 0's checkpoint write.
    const double waited = std::chrono::duration<double>(Clock::now() - start).count();
    if (waited > 1e-3) std::this_thread::sleep_for(std::chrono::microseconds(100));
    if (waited > timeout_) {
      const std::string at = phase_step_ >= 0 ? fmt::format("step {} ({})", phase_step_, phase_) : std::string(phase_);
      std::fprintf(stderr,
                   "mdn: error (rank %d of %d): %s made no progress for %.0f s in %s: another rank has stopped "
                   "or hangs (comm.timeout_seconds); aborting the job\n",
                   rank_, size_, call, timeout_, at.c_str());
      std::fflush(stderr);
      MPI_Abort(comm_, static_cast<int>(Exit::failure));
    }
  }
}

void MpiComm::barrier() {
  MPI_Request r;
  check_mpi(MPI_Ibarrier(comm_, &r), "MPI_Ibarrier");
  wait(r, "MPI_Ibarrier");
}

namespace {

/// Owns a committed MPI datatype.
class Datatype {
 public:
  Datatype() = default;
  explicit Datatype(MPI_Datatype t) : t_(t) { check_mpi(MPI_Type_commit(&t_), "MPI_Type_commit"); }
  ~Datatype() {
    if (t_ != MPI_DATATYPE_NULL) MPI_Type_free(&t_);
  }
  Datatype(Datatype&& o) noexcept : t_(std::exchange(o.t_, MPI_DATATYPE_NULL)) {}
  Datatype& operator=(Datatype&& o) noexcept {
    std::swap(t_, o.t_);
    return *this;
  }
  MPI_Datatype get() const { return t_; }

 private:
  MPI_Datatype t_ = MPI_DATATYPE_NULL;
};

}  // namespace

void MpiComm::exchange_rows(const float* send, std::size_t width,
                            const std::vector<std::vector<std::int32_t>>& send_rows, float* recv,
                            const std::vector<std::int64_t>& recv_counts) {
  const auto P = static_cast<std::size_t>(size_);
  MDN_CHECK(send_rows.size() == P && recv_counts.size() == P);
  MPI_Datatype raw = MPI_DATATYPE_NULL;
  check_mpi(MPI_Type_contiguous(static_cast<int>(width), MPI_FLOAT, &raw), "MPI_Type_contiguous");
  const Datatype row(raw);

  // Send: one indexed datatype per destination picks its rows in place (no packing buffer).
  // Receive: one datatype per source places its block at a 64-bit byte offset (Alltoallw's own
  // displacements are ints).
  std::vector<Datatype> send_types(P), recv_types(P);
  std::vector<MPI_Datatype> stypes(P, row.get()), rtypes(P, row.get());
  std::vector<int> scounts(P, 0), rcounts(P, 0), displs(P, 0);
  MPI_Aint offset = 0;
  for (std::size_t t = 0; t < P; ++t) {
    if (!send_rows[t].empty()) {
      if (send_rows[t].size() > static_cast<std::size_t>(INT_MAX))
        throw run_error("row exchange: more than {} rows for one rank", INT_MAX);
      check_mpi(MPI_Type_create_indexed_block(static_cast<int>(send_rows[t].size()), 1,
                                              send_rows[t].data(), row.get(), &raw),
                "MPI_Type_create_indexed_block");
      send_types[t] = Datatype(raw);
      stypes[t] = send_types[t].get();
      scounts[t] = 1;
    }
    if (recv_counts[t] > 0) {
      if (recv_counts[t] > INT_MAX) throw run_error("row exchange: more than {} rows from one rank", INT_MAX);
      const int count = static_cast<int>(recv_counts[t]);
      check_mpi(MPI_Type_create_hindexed(1, &count, &offset, row.get(), &raw), "MPI_Type_create_hindexed");
      recv_types[t] = Datatype(raw);
      rtypes[t] = recv_types[t].get();
      rcounts[t] = 1;
      offset += static_cast<MPI_Aint>(recv_counts[t]) * static_cast<MPI_Aint>(width * sizeof(float));
    }
  }
  MPI_Request req;
  check_mpi(MPI_Ialltoallw(send, scounts.data(), displs.data(), stypes.data(), recv, rcounts.data(),
                           displs.data(), rtypes.data(), comm_, &req),
            "MPI_Ialltoallw");
  wait(req, "MPI_Ialltoallw");
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

void MpiComm::allreduce_raw(void* data, std::size_t n, DType type, ReduceOp op) {
  auto* bytes = static_cast<unsigned char*>(data);
  const std::size_t width = type_size(type);
  std::size_t done = 0;
  do {
    const std::size_t count = std::min(n - done, kMaxCount);
    MPI_Request req;
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, bytes + done * width, static_cast<int>(count),
                             mpi_type(type), mpi_op(op), comm_, &req),
              "MPI_Iallreduce");
    wait(req, "MPI_Iallreduce");
    done += count;
  } while (done < n);
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
