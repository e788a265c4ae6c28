// worker_threads.h: parallel_ranges covers [0, n) exactly once in contiguous ranges, on the pool's threads
// when the pool exists and inline (LibTorch's parallel_for) from inside one of them; run() runs each task
// index once on a thread of its own.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "worker_threads.h"

namespace s2s {
namespace {

// The ranges parallel_ranges hands out for n, and the threads that ran them.
struct Seen {
  std::mutex mutex;
  std::vector<std::pair<int64_t, int64_t>> ranges;
  std::set<std::thread::id> threads;
};

void collect(int64_t n, Seen& seen) {
  parallel_ranges(n, [&](int64_t begin, int64_t end) {
    std::lock_guard<std::mutex> lock(seen.mutex);
    seen.ranges.emplace_back(begin, end);
    seen.threads.insert(std::this_thread::get_id());
  });
}

void expect_each_index_once(int64_t n, const Seen& seen) {
  std::vector<int> count(static_cast<size_t>(n), 0);
  for (const auto& [begin, end] : seen.ranges) {
    ASSERT_LE(0, begin);
    ASSERT_LT(begin, end) << "an empty range was handed out";
    ASSERT_LE(end, n);
    for (int64_t i = begin; i < end; ++i) ++count[static_cast<size_t>(i)];
  }
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(count[static_cast<size_t>(i)], 1) << "index " << i << " of " << n;
}

TEST(WorkerThreads, ParallelRangesCoverEachIndexOnce) {
  // Before the pool exists (ctest runs each test in a process of its own): LibTorch's parallel_for.
  for (int64_t n : {0, 1, 7}) {
    Seen seen;
    collect(n, seen);
    expect_each_index_once(n, seen);
  }
  for (int size : {2, 3}) {
    worker_threads(size);
    const int threads = worker_thread_count();
    ASSERT_GE(threads, size);
    for (int64_t n : {0, 1, 2, 5, 1000}) {
      Seen seen;
      collect(n, seen);
      expect_each_index_once(n, seen);
      if (n >= threads) {
        EXPECT_EQ(seen.ranges.size(), static_cast<size_t>(threads)) << "n " << n;
        EXPECT_EQ(seen.threads.size(), static_cast<size_t>(threads)) << "one range per worker thread";
        EXPECT_EQ(seen.threads.count(std::this_thread::get_id()), 0u) << "the caller only waits";
      }
    }
  }
}

TEST(WorkerThreads, RunGivesEachTaskItsOwnThreadAndNestedRangesRunInline) {
  auto& pool = worker_threads(3);
  ASSERT_GE(pool.size(), 3);
  std::mutex mutex;
  std::set<std::thread::id> threads;
  std::vector<Seen> nested(3);
  std::atomic<int> ran{0};
  pool.run(3, [&](int i) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      threads.insert(std::this_thread::get_id());
    }
    ++ran;
    collect(10, nested[static_cast<size_t>(i)]);  // from a worker: must not wait on its own pool
  });
  EXPECT_EQ(ran.load(), 3);
  EXPECT_EQ(threads.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    expect_each_index_once(10, nested[static_cast<size_t>(i)]);
    ASSERT_EQ(nested[static_cast<size_t>(i)].threads.size(), 1u) << "task " << i;
    EXPECT_EQ(nested[static_cast<size_t>(i)].threads.count(std::this_thread::get_id()), 0u);
  }
  // Fewer tasks than threads: the rest stay idle, and the pool runs again afterwards.
  std::atomic<int> second{0};
  pool.run(1, [&](int i) { second += i + 1; });
  EXPECT_EQ(second.load(), 1);
}

TEST(WorkerThreads, AnErrorInARangeReachesTheCallerAfterAllRangesRan) {
  worker_threads(2);
  const int threads = worker_thread_count();
  ASSERT_GE(threads, 2);
  std::atomic<int> finished{0};
  try {
    parallel_ranges(100, [&](int64_t begin, int64_t) {
      if (begin == 0) throw std::runtime_error("range 0 failed");
      ++finished;
    });
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "range 0 failed");
  }
  EXPECT_EQ(finished.load(), threads - 1) << "the other ranges ran to the end";
  Seen seen;  // and the pool still works
  collect(50, seen);
  expect_each_index_once(50, seen);
}

TEST(WorkerThreads, ParallelTasksRunEachTaskOnceAndPassTheFirstErrorOn) {
  worker_threads(2);
  ASSERT_GE(worker_thread_count(), 2);
  for (int64_t n : {0, 1, 2, 37}) {
    std::vector<std::atomic<int>> runs(static_cast<size_t>(n));
    std::mutex mutex;
    std::set<std::thread::id> threads;
    parallel_tasks(n, [&](int64_t i) {
      ++runs[static_cast<size_t>(i)];
      std::lock_guard<std::mutex> lock(mutex);
      threads.insert(std::this_thread::get_id());
    });
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(runs[static_cast<size_t>(i)].load(), 1) << "task " << i << " of " << n;
    if (n == 1) EXPECT_EQ(threads.count(std::this_thread::get_id()), 1u) << "one task: on the caller";
    if (n >= 2) EXPECT_EQ(threads.count(std::this_thread::get_id()), 0u) << "several: on the workers";
  }
  std::atomic<int> ran{0};
  try {
    parallel_tasks(10, [&](int64_t i) {
      ++ran;
      if (i == 7 || i == 3) throw std::runtime_error("task " + std::to_string(i));
    });
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "task 3") << "the first failed task by index";
  }
  EXPECT_EQ(ran.load(), 10) << "the other tasks still ran";
}

}  // namespace
}  // namespace s2s
