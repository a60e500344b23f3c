#include "mdn/error.hpp"

#include <new>

namespace mdn {

void check_failed(const char* condition, const char* file, int line) {
  throw std::logic_error(fmt::format("check failed: {} ({}:{})", condition, file, line));
}

ErrorReport describe(const std::exception_ptr& e) {
  ErrorReport r;
  try {
    std::rethrow_exception(e);
  } catch (const Error& err) {
    r = {err.code(), err.what(), err.collective()};
  } catch (const std::bad_alloc&) {
    r = {Exit::failure, "out of memory", false};
  } catch (const std::exception& err) {
    r = {Exit::failure, std::string("internal error: ") + err.what(), false};
  } catch (...) {
    r = {Exit::failure, "internal error: unknown exception", false};
  }
  return r;
}

}  // namespace mdn
