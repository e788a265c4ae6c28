// The SentencePiece helper program (s2s-spm) as a child process: started on demand, spoken to through
// one socket with the messages of spm_protocol.h, ended when the object goes away.
#pragma once
#include <sys/types.h>

#include <mutex>
#include <string>
#include <vector>

namespace s2s {

// Where s2s looks for the helper: $S2S_SPM_HELPER if set, else s2s-spm next to the running program.
std::string spm_helper_path();

class SpmProcess {
 public:
  // Starts the helper; throws s2s::Error saying where it looked when it is missing or cannot start.
  SpmProcess();
  ~SpmProcess();
  SpmProcess(const SpmProcess&) = delete;
  SpmProcess& operator=(const SpmProcess&) = delete;

  // Sends a request and returns the answer without its leading "ok". An "error" answer becomes an
  // s2s::Error "<context>: <message>"; a helper that dies, closes the pipe, answers garbage or stays
  // silent longer than `timeout_s` (0 = wait as long as it takes) becomes an s2s::Error too, and the
  // process is unusable afterwards. Calls from several threads are serialised.
  std::vector<std::string> call(const std::vector<std::string>& request, const std::string& context,
                                double timeout_s = 300);
  // Makes every later call fail at once with `error` (for a helper that could not load its model).
  void disable(const std::string& error);

 private:
  [[noreturn]] void fail(const std::string& context, const std::string& what);
  std::string exit_description();  // how the child ended, after waiting briefly for it

  std::string path_;
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string broken_;  // why the helper is unusable; empty while it works
  std::mutex mutex_;
};

}  // namespace s2s
