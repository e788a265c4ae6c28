// Creating the folders a command writes into, with errors that name the option or config key.
#pragma once
#include <string>

namespace s2s {

// Creates `dir` and its parents if missing. Throws s2s::Error "WHAT DIR: cannot create the folder: REASON"
// (e.g. what = "output_dir", "--attention-svg") instead of std::filesystem's bare message.
void ensure_directory(const std::string& dir, const std::string& what);

}  // namespace s2s
