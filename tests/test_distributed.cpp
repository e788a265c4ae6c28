// Multi-process training over c10d's Gloo process group, with the processes started by the tests
// themselves on 127.0.0.1 (a free port each time), as torchrun would start them: the same parameters as
// one process training on the union of the ranks' batches, resume with another number of processes,
// agreement on Ctrl-C, and a dead or hung rank making the other stop within the timeout.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "checkpoint.h"
#include "distributed.h"
#include "test_util.h"

namespace s2s {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using s2s::testing::contains;
using s2s::testing::read_file;
using s2s::testing::RunResult;
using s2s::testing::TempDir;

// A port that was free a moment ago (the kernel picks it; the small race is acceptable in a test).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw std::runtime_error("no free port");
  ::close(fd);
  return ntohs(addr.sin_port);
}

// 40 pairs in batches of 8: 5 batches an epoch. No dropout: the ranks' dropout masks would differ from
// one process's.
std::string write_config(const TempDir& dir, const std::string& name, const std::string& output_dir,
                         int64_t max_steps, int64_t accumulate, json training_extra = json::object()) {
  if (!fs::exists(dir.file("train.src"))) {
    s2s::testing::write_corpus(dir.file("train.src"), dir.file("train.tgt"), 40, 1);
    s2s::testing::write_corpus(dir.file("valid.src"), dir.file("valid.tgt"), 8, 2);
  }
  json training = {{"batch_size", 8},   {"learning_rate", 0.01}, {"max_steps", max_steps},
                   {"epochs", 1000},    {"seed", 3},             {"threads", 1},
                   {"device", "cpu"},   {"log_every", 1},        {"valid_every", 4},
                   {"checkpoint_every", 3}, {"keep_checkpoints", 3}, {"accumulate", accumulate},
                   {"dist_timeout", 30}};
  training.update(training_extra);
  const json config = {{"data",
                        {{"train_src", dir.file("train.src")},
                         {"train_tgt", dir.file("train.tgt")},
                         {"valid_src", dir.file("valid.src")},
                         {"valid_tgt", dir.file("valid.tgt")}}},
                       {"model", {{"embedding_size", 8}, {"hidden_size", 16}, {"attention", "bahdanau"}}},
                       {"training", training},
                       {"output_dir", output_dir}};
  const auto path = dir.file(name);
  s2s::testing::write_file(path, config.dump(2));
  return path;
}

struct Rank {
  pid_t pid = -1;
  std::string out, err;
};

// Starts `world` ranks of `s2s train --config config extra...` with torchrun's variables.
std::vector<Rank> start_ranks(const TempDir& dir, int world, const std::string& config,
                              const std::vector<std::string>& extra = {}) {
  static int counter = 0;
  const int port = free_port();
  const int run = ++counter;
  std::vector<Rank> ranks(world);
  for (int r = 0; r < world; ++r) {
    ranks[r].out = dir.file("rank" + std::to_string(r) + "-" + std::to_string(run) + ".out");
    ranks[r].err = dir.file("rank" + std::to_string(r) + "-" + std::to_string(run) + ".err");
    std::vector<std::string> args = {"train", "--config", config};
    args.insert(args.end(), extra.begin(), extra.end());
    ranks[r].pid = s2s::testing::spawn_s2s(
        args, "", ranks[r].out, ranks[r].err,
        {"WORLD_SIZE=" + std::to_string(world), "RANK=" + std::to_string(r), "LOCAL_RANK=" + std::to_string(r),
         "LOCAL_WORLD_SIZE=" + std::to_string(world), "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + std::to_string(port),
         "OMP_NUM_THREADS=1"});
  }
  return ranks;
}

// Waits for every rank; returns their exit codes (-1: did not exit normally within the time).
std::vector<int> wait_ranks(const std::vector<Rank>& ranks, double timeout_s = 180) {
  std::vector<int> codes;
  for (const auto& r : ranks) {
    int status = 0;
    const bool done = s2s::testing::wait_for(r.pid, timeout_s, &status);
    codes.push_back(done && WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  }
  return codes;
}

std::string logs(const std::vector<Rank>& ranks) {
  std::string s;
  for (size_t r = 0; r < ranks.size(); ++r) s += "--- rank " + std::to_string(r) + " ---\n" + read_file(ranks[r].err);
  return s;
}

std::vector<torch::Tensor> parameters_of(const std::string& checkpoint) {
  auto model = restore_model(read_checkpoint(checkpoint), torch::kCPU);
  std::vector<torch::Tensor> out;
  for (const auto& p : model->parameters()) out.push_back(p.detach().clone());
  return out;
}

double max_difference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) d = std::max(d, (a[i] - b[i]).abs().max().item<double>());
  return d;
}

RunResult run_single(const TempDir& dir, const std::string& config, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"train", "--config", config};
  args.insert(args.end(), extra.begin(), extra.end());
  return s2s::testing::run_s2s(args, dir.path());
}

// Polls a log file until it contains `text`; false after `timeout_s`.
bool wait_for_text(const std::string& path, const std::string& text, double timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    if (contains(read_file(path), text)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

TEST(Distributed, TwoProcessesEqualOneProcessOnTheUnionOfTheirBatches) {
  TempDir dir;
  // 6 updates of 2 batches from 5-batch epochs: one update straddles nothing, and the last update of
  // each epoch has a single batch, so one rank has none then.
  constexpr int kSteps = 6;
  const auto two = write_config(dir, "two.json", dir.file("two"), kSteps, 1);
  auto ranks = start_ranks(dir, 2, two);
  const auto codes = wait_ranks(ranks);
  ASSERT_EQ(codes, (std::vector<int>{0, 0})) << logs(ranks);
  EXPECT_TRUE(contains(read_file(ranks[0].err), "rank 0 of 2: gloo process group")) << logs(ranks);
  // Rank 1 keeps quiet (warnings and errors only) and writes nothing.
  EXPECT_FALSE(contains(read_file(ranks[1].err), "[info]")) << logs(ranks);

  const auto one = write_config(dir, "one.json", dir.file("one"), kSteps, 2);
  const auto single = run_single(dir, one);
  ASSERT_EQ(single.code(), 0) << single.describe();

  const auto a = read_checkpoint(dir.file("two/last.pt")), b = read_checkpoint(dir.file("one/last.pt"));
  EXPECT_EQ(a.state.step, kSteps);
  EXPECT_EQ(a.state.epoch, b.state.epoch);
  EXPECT_EQ(a.state.batch_in_epoch, b.state.batch_in_epoch);
  EXPECT_EQ(a.state.batches_per_update, 2);
  const auto pa = parameters_of(dir.file("two/last.pt")), pb = parameters_of(dir.file("one/last.pt"));
  EXPECT_LT(max_difference(pa, pb), 1e-5);
  // The comparison means something: training moved the parameters well beyond that tolerance, and one
  // process taking one batch per update ends elsewhere.
  EXPECT_GT(max_difference(pa, parameters_of(dir.file("two/step-0000003.pt"))), 1e-3);
  const auto plain = write_config(dir, "plain.json", dir.file("plain"), kSteps, 1);
  ASSERT_EQ(run_single(dir, plain).code(), 0);
  EXPECT_GT(max_difference(pa, parameters_of(dir.file("plain/last.pt"))), 1e-3);

  // Rank 0 alone wrote the run's files: one metrics line per step, not two.
  int train_lines = 0;
  for (const auto& line : s2s::testing::split_lines(read_file(dir.file("two/metrics.jsonl"))))
    train_lines += contains(line, "\"type\":\"train\"");
  EXPECT_EQ(train_lines, kSteps);
}

TEST(Distributed, ResumeWithAnotherNumberOfProcessesContinuesTheSameRun) {
  TempDir dir;
  // Reference: two processes, 6 updates.
  const auto full = write_config(dir, "full.json", dir.file("full"), 6, 1);
  auto ranks = start_ranks(dir, 2, full);
  ASSERT_EQ(wait_ranks(ranks), (std::vector<int>{0, 0})) << logs(ranks);
  // Two processes for 3 updates, then one process with 2 batches per update for the other 3.
  const auto half = write_config(dir, "half.json", dir.file("half"), 3, 1);
  ranks = start_ranks(dir, 2, half);
  ASSERT_EQ(wait_ranks(ranks), (std::vector<int>{0, 0})) << logs(ranks);
  const auto rest = write_config(dir, "rest.json", dir.file("half"), 6, 2);
  const auto resumed = run_single(dir, rest, {"--resume", "auto"});
  ASSERT_EQ(resumed.code(), 0) << resumed.describe();
  EXPECT_TRUE(contains(resumed.err, "resumed from")) << resumed.err;
  EXPECT_LT(max_difference(parameters_of(dir.file("full/last.pt")), parameters_of(dir.file("half/last.pt"))), 1e-5);
  // And two processes resuming a two-process checkpoint.
  const auto again = write_config(dir, "again.json", dir.file("half"), 8, 1);
  ranks = start_ranks(dir, 2, again, {"--resume", "auto"});
  ASSERT_EQ(wait_ranks(ranks), (std::vector<int>{0, 0})) << logs(ranks);
  EXPECT_EQ(read_checkpoint(dir.file("half/last.pt")).state.step, 8);
}

TEST(Distributed, SigintToOneRankStopsBothAfterTheSameStep) {
  TempDir dir;
  const auto config = write_config(dir, "c.json", dir.file("run"), 1000000, 1, {{"checkpoint_every", 1000000}});
  auto ranks = start_ranks(dir, 2, config);
  ASSERT_TRUE(wait_for_text(ranks[0].err, "] [train] step 5 ", 120)) << logs(ranks);
  ::kill(ranks[1].pid, SIGINT);
  const auto codes = wait_ranks(ranks, 60);
  EXPECT_EQ(codes, (std::vector<int>{130, 130})) << logs(ranks);
  EXPECT_TRUE(contains(read_file(ranks[0].err), "another process's signal")) << logs(ranks);
  const auto ckpt = read_checkpoint(dir.file("run/last.pt"));
  EXPECT_GT(ckpt.state.step, 5);
}

TEST(Distributed, KilledRankMakesTheOtherStopWithAnError) {
  TempDir dir;
  const auto config = write_config(dir, "c.json", dir.file("run"), 1000000, 1, {{"dist_timeout", 20}});
  auto ranks = start_ranks(dir, 2, config);
  ASSERT_TRUE(wait_for_text(ranks[0].err, "] [train] step 7 ", 120)) << logs(ranks);
  ::kill(ranks[1].pid, SIGKILL);
  const auto t0 = std::chrono::steady_clock::now();
  const auto codes = wait_ranks(ranks, 60);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(codes[0], 1) << logs(ranks);
  EXPECT_LT(seconds, 20 + 15) << logs(ranks);
  EXPECT_TRUE(contains(read_file(ranks[0].err), "failed: another rank stopped, died or did not answer")) << logs(ranks);
  // The checkpoints written so far load.
  EXPECT_GE(read_checkpoint(dir.file("run/last.pt")).state.step, 6);
}

TEST(Distributed, HungRankMakesTheOtherStopWithinTheTimeout) {
  TempDir dir;
  const auto config = write_config(dir, "c.json", dir.file("run"), 1000000, 1, {{"dist_timeout", 3}});
  auto ranks = start_ranks(dir, 2, config);
  ASSERT_TRUE(wait_for_text(ranks[0].err, "] [train] step 5 ", 120)) << logs(ranks);
  ::kill(ranks[1].pid, SIGSTOP);
  const auto t0 = std::chrono::steady_clock::now();
  int status = 0;
  const bool done = s2s::testing::wait_for(ranks[0].pid, 60, &status);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::kill(ranks[1].pid, SIGKILL);
  wait_ranks({ranks[1]}, 10);
  ASSERT_TRUE(done) << logs(ranks);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << logs(ranks);
  EXPECT_LT(seconds, 3 + 20) << logs(ranks);
  EXPECT_TRUE(contains(read_file(ranks[0].err), "within 3 s (training.dist_timeout)")) << logs(ranks);
}

TEST(Distributed, LauncherVariablesAreChecked) {
  ::setenv("WORLD_SIZE", "2", 1);
  ::setenv("RANK", "2", 1);
  EXPECT_TRUE(contains(s2s::testing::error_of([] { distributed_env_from_environment(); }), "RANK=2 must be below WORLD_SIZE=2"));
  ::setenv("RANK", "x", 1);
  EXPECT_TRUE(contains(s2s::testing::error_of([] { distributed_env_from_environment(); }), "RANK=\"x\""));
  ::setenv("RANK", "1", 1);
  ::unsetenv("MASTER_ADDR");
  EXPECT_TRUE(contains(s2s::testing::error_of([] { distributed_env_from_environment(); }), "MASTER_ADDR is not set"));
  ::setenv("MASTER_ADDR", "127.0.0.1", 1);
  ::setenv("MASTER_PORT", "70000", 1);
  EXPECT_TRUE(contains(s2s::testing::error_of([] { distributed_env_from_environment(); }), "MASTER_PORT is \"70000\""));
  ::setenv("MASTER_PORT", "29500", 1);
  const auto env = distributed_env_from_environment();
  EXPECT_EQ(env.rank, 1);
  EXPECT_EQ(env.world_size, 2);
  EXPECT_TRUE(env.active());
  for (const char* v : {"WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"}) ::unsetenv(v);
  EXPECT_FALSE(distributed_env_from_environment().active());
}

TEST(Distributed, UnreachableRendezvousIsAnErrorWithinTheTimeout) {
  TempDir dir;
  const auto config = write_config(dir, "c.json", dir.file("run"), 5, 1, {{"dist_timeout", 2}});
  // Rank 1 alone: rank 0, which hosts the rendezvous, never comes.
  const int port = free_port();
  const auto out = dir.file("lonely.out"), err = dir.file("lonely.err");
  const pid_t pid = s2s::testing::spawn_s2s({"train", "--config", config}, "", out, err,
                                            {"WORLD_SIZE=2", "RANK=1", "MASTER_ADDR=127.0.0.1",
                                             "MASTER_PORT=" + std::to_string(port)});
  int status = 0;
  ASSERT_TRUE(s2s::testing::wait_for(pid, 60, &status)) << read_file(err);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << read_file(err);
  EXPECT_TRUE(contains(read_file(err), "127.0.0.1:" + std::to_string(port))) << read_file(err);
}

// Runs `command` through /bin/sh with its output in files; returns the exit status and the output.
std::pair<int, std::string> shell(const TempDir& dir, const std::string& command) {
  const auto out = dir.file("shell.out"), err = dir.file("shell.err");
  const int rc = std::system((command + " > " + out + " 2> " + err).c_str());
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, read_file(err) + read_file(out)};
}

// The way users start it without torchrun: scripts/launch.sh sets the same variables.
TEST(Distributed, LaunchScriptStartsTwoRanks) {
  TempDir dir;
  const auto config = write_config(dir, "c.json", dir.file("run"), 4, 1);
  const auto [rc, log] = shell(dir, std::string(S2S_SOURCE_DIR) + "/scripts/launch.sh --nproc 2 -- " +
                                        s2s::testing::s2s_binary() + " train --config " + config);
  ASSERT_EQ(rc, 0) << log;
  EXPECT_TRUE(contains(log, "rank 0 of 2: gloo process group")) << log;
  EXPECT_EQ(read_checkpoint(dir.file("run/last.pt")).state.step, 4);
}

// torchrun itself, where it works: Debian bookworm's torchrun 1.13 fails under Python 3.11 before it
// starts anything (its Std enum handling), which the probe detects.
TEST(Distributed, TorchrunStartsTwoRanks) {
  const std::string torchrun = "/usr/bin/torchrun";
  if (!fs::exists(torchrun)) GTEST_SKIP() << "torchrun is not installed (python3-torch)";
  TempDir dir;
  const auto probe = shell(dir, torchrun + " --no_python --standalone --nproc_per_node 1 /bin/true");
  if (probe.first != 0) GTEST_SKIP() << "torchrun does not work on this machine:\n" << probe.second;
  const auto config = write_config(dir, "c.json", dir.file("run"), 4, 1);
  const auto [rc, log] = shell(dir, torchrun + " --no_python --standalone --nproc_per_node 2 " +
                                        s2s::testing::s2s_binary() + " train --config " + config);
  ASSERT_EQ(rc, 0) << log;
  EXPECT_TRUE(contains(log, "rank 0 of 2: gloo process group")) << log;
  EXPECT_EQ(read_checkpoint(dir.file("run/last.pt")).state.step, 4);
}

}  // namespace
}  // namespace s2s
