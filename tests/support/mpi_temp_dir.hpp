// A temporary directory shared by every rank of an MPI test (created by rank 0).
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "mdn/comm.hpp"
#include "support/process.hpp"

namespace mdn::test {

class SharedTempDir {
 public:
  explicit SharedTempDir(Comm& comm) : comm_(comm) {
    if (comm.is_root()) {
      dir_ = std::make_unique<TempDir>();
      path_ = dir_->path();
    }
    comm.broadcast(path_);
  }
  ~SharedTempDir() { comm_.barrier(); }  // nobody still reads when rank 0 removes it
  SharedTempDir(const SharedTempDir&) = delete;
  SharedTempDir& operator=(const SharedTempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  Comm& comm_;
  std::string path_;
  std::unique_ptr<TempDir> dir_;
};

}  // namespace mdn::test
