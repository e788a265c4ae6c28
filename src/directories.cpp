#include "directories.h"

#include <filesystem>
#include <system_error>

#include "error.h"

namespace s2s {

void ensure_directory(const std::string& dir, const std::string& what) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!ec && !fs::is_directory(dir, ec)) ec = std::make_error_code(std::errc::not_a_directory);
  if (ec) throw Error(what + " " + dir + ": cannot create the folder: " + ec.message());
}

}  // namespace s2s
