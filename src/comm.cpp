#include <algorithm>
#include <cassert>
#include <climits>
#include <cstring>
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

void SelfComm::broadcast_raw(void*, std::size_t, int root) {
  assert(root == 0);
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

void MpiComm::barrier() { check_mpi(MPI_Barrier(comm_), "MPI_Barrier"); }

void MpiComm::allreduce_raw(void* data, std::size_t n, DType type, ReduceOp op) {
  auto* bytes = static_cast<unsigned char*>(data);
  const std::size_t width = type_size(type);
  std::size_t done = 0;
  do {
    const std::size_t count = std::min(n - done, kMaxCount);
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, bytes + done * width, static_cast<int>(count),
                            mpi_type(type), mpi_op(op), comm_),
              "MPI_Allreduce");
    done += count;
  } while (done < n);
}

void MpiComm::broadcast_raw(void* data, std::size_t bytes, int root) {
  auto* p = static_cast<unsigned char*>(data);
  std::size_t done = 0;
  do {  // at least one call, so that a bad root is reported even for an empty buffer
    const std::size_t count = std::min(bytes - done, kMaxCount);
    check_mpi(MPI_Bcast(p + done, static_cast<int>(count), MPI_BYTE, root, comm_), "MPI_Bcast");
    done += count;
  } while (done < bytes);
}

}  // namespace mdn
