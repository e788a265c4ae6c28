#include "spm_process.h"

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "error.h"
#include "spm_protocol.h"

extern char** environ;

namespace s2s {
namespace {

namespace fs = std::filesystem;
namespace proto = spm_protocol;

bool is_executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

}  // namespace

std::string spm_helper_path() {
  if (const char* env = std::getenv("S2S_SPM_HELPER"); env && *env) return env;
  std::error_code ec;
  const auto self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "s2s-spm";
  return (self.parent_path() / "s2s-spm").string();
}

SpmProcess::SpmProcess() : path_(spm_helper_path()) {
  const bool from_env = std::getenv("S2S_SPM_HELPER") && *std::getenv("S2S_SPM_HELPER");
  if (!is_executable_file(path_))
    throw Error("the SentencePiece helper " + path_ + " is missing or not executable (" +
                (from_env ? std::string("set by S2S_SPM_HELPER")
                          : std::string("s2s looks for s2s-spm next to its own program; it is built with s2s when "
                                        "libsentencepiece-dev is installed, or set S2S_SPM_HELPER to its path")) +
                ")");
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
    throw Error("cannot create a socket for the SentencePiece helper: " + std::string(std::strerror(errno)));
  // The child's end becomes its stdin and stdout (dup2 clears close-on-exec on the copies).
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  std::string arg0 = path_;
  char* argv[] = {arg0.data(), nullptr};
  const int rc = ::posix_spawn(&pid_, path_.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    pid_ = -1;
    throw Error("cannot start the SentencePiece helper " + path_ + ": " + std::strerror(rc));
  }
  fd_ = fds[0];
}

SpmProcess::~SpmProcess() {
  if (fd_ >= 0) ::close(fd_);  // the helper reads the end of its input and exits
  if (pid_ > 0) {
    int status = 0;
    for (int i = 0; i < 100; ++i) {  // up to a second, then it is stopped
      if (::waitpid(pid_, &status, WNOHANG) != 0) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
  }
}

std::string SpmProcess::exit_description() {
  if (pid_ <= 0) return "it is not running";
  int status = 0;
  pid_t r = 0;
  for (int i = 0; i < 50 && (r = ::waitpid(pid_, &status, WNOHANG)) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (r == 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return "it was still running and has been stopped";
  }
  pid_ = -1;
  if (r < 0) return "its exit status is unknown";
  if (WIFEXITED(status)) return "it exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "it was killed by signal " + std::to_string(WTERMSIG(status));
  return "it stopped";
}

void SpmProcess::fail(const std::string& context, const std::string& what) {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  broken_ = context + ": the SentencePiece helper " + path_ + " failed: " + what + "; " + exit_description();
  throw Error(broken_);
}

void SpmProcess::disable(const std::string& error) {
  std::lock_guard<std::mutex> lock(mutex_);
  broken_ = error;
}

std::vector<std::string> SpmProcess::call(const std::vector<std::string>& request, const std::string& context,
                                          double timeout_s) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!broken_.empty()) throw Error(broken_);

  const std::string bytes = proto::frame(request);
  for (size_t sent = 0; sent < bytes.size();) {
    const ssize_t w = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail(context, std::string("cannot send it a request (") + std::strerror(errno) + ")");
    sent += static_cast<size_t>(w);
  }

  const int timeout_ms = timeout_s > 0 ? static_cast<int>(timeout_s * 1000) : -1;
  std::string read_error;
  auto reader = proto::make_reader([&](char* buffer, size_t capacity) -> size_t {
    while (true) {
      pollfd p{fd_, POLLIN, 0};
      const int ready = ::poll(&p, 1, timeout_ms);
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) {
        read_error = "no answer within " + std::to_string(static_cast<int>(timeout_s)) + " s";
        return 0;
      }
      const ssize_t r = ::recv(fd_, buffer, capacity, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) read_error = std::strerror(errno);
      return r < 0 ? 0 : static_cast<size_t>(r);
    }
  });
  std::vector<std::string> answer;
  try {
    if (!reader.read(answer)) fail(context, read_error.empty() ? "it closed the connection without answering" : read_error);
  } catch (const proto::ProtocolError& e) {
    fail(context, read_error.empty() ? std::string("unreadable answer: ") + e.what() : read_error);
  }
  if (!answer.empty() && answer[0] == "ok") return {answer.begin() + 1, answer.end()};
  if (answer.size() == 2 && answer[0] == "error") throw Error(context + ": " + answer[1]);
  fail(context, "unexpected answer (neither \"ok\" nor \"error\")");
}

}  // namespace s2s
