// Helpers shared by the Config, Data and Cli tests: temporary folders, small files, and running the
// built `s2s` program (S2S_BINARY) as a child process with its output captured in files.
#pragma once
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "error.h"

namespace s2s::testing {

namespace fs = std::filesystem;

// A fresh folder under $TMPDIR (or /tmp), removed with everything in it when the object goes away.
// Set S2S_KEEP_TEST_DIRS=1 to keep it for a look after a failure.
// The message of the s2s::Error that `f` throws; fails the test when it throws nothing or something else.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const s2s::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected s2s::Error, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected s2s::Error, nothing was thrown";
  return "";
}

// Removes a folder and everything in it, with POSIX nftw rather than std::filesystem::remove_all: the
// CUDA LibTorch 2.11 of the lent GPU machine's python3 torch exports its own copy of that function from
// libtorch.so, which the dynamic linker picks, and it crashed there (a call through a null pointer).
inline void remove_tree(const std::string& path) {
  ::nftw(
      path.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/s2s-test-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed for " + pattern);
    path_ = buf.data();
  }
  ~TempDir() {
    const char* keep = std::getenv("S2S_KEEP_TEST_DIRS");
    if (keep && *keep && std::string(keep) != "0") return;
    remove_tree(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

inline void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error("cannot write " + path);
  out << content;
  if (!out) throw std::runtime_error("cannot write " + path);
}

inline const std::vector<std::string> kSourceWords = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"};

// Pairs of 3-8 tokens: the target spells each source word as "x" + word, in the same order.
inline void write_corpus(const std::string& src_path, const std::string& tgt_path, int pairs, uint32_t seed) {
  uint32_t state = seed;
  auto next = [&] {
    state = state * 1664525u + 1013904223u;
    return state >> 8;
  };
  std::ostringstream src, tgt;
  for (int i = 0; i < pairs; ++i) {
    const int n = 3 + static_cast<int>(next() % 6);
    for (int k = 0; k < n; ++k) {
      const auto& w = kSourceWords[next() % kSourceWords.size()];
      src << (k ? " " : "") << w;
      tgt << (k ? " " : "") << "x" << w;
    }
    src << "\n";
    tgt << "\n";
  }
  write_file(src_path, src.str());
  write_file(tgt_path, tgt.str());
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

inline std::string s2s_binary() {
#ifdef S2S_BINARY
  return S2S_BINARY;
#else
  return "s2s";
#endif
}

// Starts `s2s args...` with stdin from `stdin_path` (/dev/null when empty) and stdout/stderr written to
// the two files, with this process's environment plus `extra_env` ("NAME=value" entries, which win).
// Returns the child's pid.
inline pid_t spawn_s2s(const std::vector<std::string>& args, const std::string& stdin_path,
                       const std::string& stdout_path, const std::string& stderr_path,
                       const std::vector<std::string>& extra_env = {}) {
  const std::string binary = s2s_binary();
  std::vector<std::string> argv_storage;
  argv_storage.push_back(binary);
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string in_path = stdin_path.empty() ? "/dev/null" : stdin_path;
  // The environment is built before fork: the child may only make async-signal-safe calls.
  std::vector<std::string> env_storage = extra_env;
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e;
    const auto name = entry.substr(0, entry.find('=') + 1);
    bool overridden = false;
    for (const auto& x : extra_env) overridden |= x.rfind(name, 0) == 0;
    if (!overridden) env_storage.push_back(entry);
  }
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    const int in = ::open(in_path.c_str(), O_RDONLY);
    const int out = ::open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0 || err < 0) ::_exit(126);
    ::dup2(in, STDIN_FILENO);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(err, STDERR_FILENO);
    ::close(in);
    ::close(out);
    ::close(err);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

// Waits for `pid` at most `timeout_s` seconds. Returns true with the waitpid status when it ended;
// false (after killing it) when it did not.
inline bool wait_for(pid_t pid, double timeout_s, int* status) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (true) {
    const pid_t r = ::waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (r < 0) return false;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, status, 0);
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

struct RunResult {
  bool finished = false;  // false: it ran past the timeout and was killed
  int status = 0;         // raw waitpid status
  std::string out, err;
  std::string files;      // where stdout and stderr were captured (stem.out, stem.err)

  bool exited() const { return finished && WIFEXITED(status); }
  // The exit code, or -1 when it did not exit normally (signal, timeout).
  int code() const { return exited() ? WEXITSTATUS(status) : -1; }
  std::string describe() const {
    std::ostringstream s;
    if (!finished) s << "timed out";
    else if (WIFEXITED(status)) s << "exit " << WEXITSTATUS(status);
    else if (WIFSIGNALED(status)) s << "killed by signal " << WTERMSIG(status);
    s << " (" << files << ".out/.err)\n--- stdout ---\n" << out << "\n--- stderr ---\n" << err;
    return s.str();
  }
};

// Runs `s2s args...` to completion, stdin from `stdin_path` ("" = /dev/null); the output files go to
// the folder `scratch`.
inline RunResult run_s2s_from(const std::vector<std::string>& args, const std::string& scratch,
                              const std::string& stdin_path, double timeout_s = 120) {
  static int counter = 0;
  const std::string stem = (fs::path(scratch) / ("run-" + std::to_string(++counter))).string();
  RunResult r;
  r.files = stem;
  const pid_t pid = spawn_s2s(args, stdin_path, stem + ".out", stem + ".err");
  r.finished = wait_for(pid, timeout_s, &r.status);
  r.out = read_file(stem + ".out");
  r.err = read_file(stem + ".err");
  return r;
}

inline RunResult run_s2s(const std::vector<std::string>& args, const std::string& scratch, double timeout_s = 120) {
  return run_s2s_from(args, scratch, "", timeout_s);
}

// Same, with `stdin_text` as the program's standard input.
inline RunResult run_s2s_with_input(const std::vector<std::string>& args, const std::string& scratch,
                                    const std::string& stdin_text, double timeout_s = 120) {
  static int counter = 0;
  const std::string path = (fs::path(scratch) / ("stdin-" + std::to_string(++counter) + ".txt")).string();
  write_file(path, stdin_text);
  return run_s2s_from(args, scratch, path, timeout_s);
}

}  // namespace s2s::testing
