#include "worker_threads.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <memory>
#include <vector>

#include <ATen/Parallel.h>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace s2s {
namespace {

thread_local bool on_worker = false;
std::atomic<WorkerThreads*> current{nullptr};

// The pool when work can be shared on it: it exists with 2 or more threads and the caller is not one
// of them; nullptr otherwise.
WorkerThreads* sharing_pool() {
  auto* pool = current.load();
  return pool && pool->size() >= 2 && !on_worker ? pool : nullptr;
}

}  // namespace

WorkerThreads::WorkerThreads(int n) {
  for (int i = 0; i < n; ++i) threads_.emplace_back([this, i] { loop(i); });
}

WorkerThreads::~WorkerThreads() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    quit_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerThreads::run(int n, const std::function<void(int)>& task) {
  std::unique_lock<std::mutex> lock(mutex_);
  task_ = &task;
  tasks_ = n;
  pending_ = n;
  ++generation_;
  wake_.notify_all();
  done_.wait(lock, [&] { return pending_ == 0; });
  task_ = nullptr;
}

void WorkerThreads::loop(int index) {
  on_worker = true;
  at::get_num_threads();  // LibTorch's per-thread set-up first, or it would undo what follows
#ifdef _OPENMP
  omp_set_num_threads(1);  // this thread's OpenMP teams only; the main thread keeps its setting
#else
  at::set_num_threads(1);
#endif
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return quit_ || generation_ != seen; });
    if (quit_) return;
    seen = generation_;
    if (index >= tasks_) continue;
    const auto* task = task_;
    lock.unlock();
    (*task)(index);
    lock.lock();
    if (--pending_ == 0) done_.notify_all();
  }
}

WorkerThreads& worker_threads(int n) {
  static std::unique_ptr<WorkerThreads> pool;
  if (!pool || pool->size() < n) {
    current.store(nullptr);
    pool.reset();
    pool = std::make_unique<WorkerThreads>(n);
    current.store(pool.get());
  }
  return *pool;
}

int worker_thread_count() {
  const auto* pool = current.load();
  return pool ? pool->size() : 0;
}

void parallel_ranges(int64_t n, const std::function<void(int64_t, int64_t)>& f) {
  if (n <= 0) return;
  auto* pool = sharing_pool();
  if (!pool || n == 1) {
    at::parallel_for(0, n, 1, f);
    return;
  }
  const int parts = static_cast<int>(std::min<int64_t>(pool->size(), n));
  std::vector<std::exception_ptr> errors(static_cast<size_t>(parts));
  pool->run(parts, [&](int i) {
    const int64_t begin = n * i / parts, end = n * (i + 1) / parts;
    try {
      if (begin < end) f(begin, end);
    } catch (...) {
      errors[static_cast<size_t>(i)] = std::current_exception();
    }
  });
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

void parallel_tasks(int64_t n, const std::function<void(int64_t)>& f) {
  auto* pool = sharing_pool();
  if (!pool || n < 2) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
  const int threads = static_cast<int>(std::min<int64_t>(pool->size(), n));
  std::atomic<int64_t> next{0};
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  pool->run(threads, [&](int) {
    for (int64_t i = next++; i < n; i = next++) {
      try {
        f(i);
      } catch (...) {
        errors[static_cast<size_t>(i)] = std::current_exception();
      }
    }
  });
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

void parallel_tasks(const c10::Device& device, int64_t n, const std::function<void(int64_t)>& f) {
  if (device.is_cpu()) return parallel_tasks(n, f);
  for (int64_t i = 0; i < n; ++i) f(i);
}

}  // namespace s2s
