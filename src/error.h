// The one exception type for errors a user can act on: bad config, bad input file, bad checkpoint.
// main() prints what() and exits non-zero; the message must say what is wrong and where.
#pragma once
#include <stdexcept>
#include <string>

namespace s2s {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace s2s
