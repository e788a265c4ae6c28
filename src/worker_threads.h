// The CPU training step's own threads (training.cpu_parallel "batch", update.h): they run the shards of a
// batch side by side, and then the step's passes over all parameters (adding up the shards' gradients,
// the optimiser's update) split between them.
//
// Why the passes do not use at::parallel_for: Debian's LibTorch parallelises with OpenMP, and after a
// parallel region libgomp's idle worker spins (GOMP_SPINCOUNT, 300,000 turns by default) before it
// sleeps. Those turns ran while the shard threads had started the next step, on the same cores: with 2
// shards on 2 cores the step ran 2-5% faster under OMP_WAIT_POLICY=PASSIVE (an AMD EPYC VM). Threads
// that sleep on a condition variable between tasks take no core from the shards.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <c10/core/Device.h>

namespace s2s {

// Threads that live as long as the process. They are made once: LibTorch sets up every new thread that
// runs an operation (and rebuilds a thread pool of its own for it), which costs more than a step's shard
// when done per step. Each thread runs its LibTorch operations with one intra-op thread: the cores are
// taken by the threads side by side.
class WorkerThreads {
 public:
  explicit WorkerThreads(int n);
  ~WorkerThreads();
  WorkerThreads(const WorkerThreads&) = delete;
  WorkerThreads& operator=(const WorkerThreads&) = delete;

  int size() const { return static_cast<int>(threads_.size()); }
  // task(i) for i in [0, n) on threads 0..n-1 (n <= size()); returns when all have finished. The task
  // must not throw. Not to be called from one of this pool's threads.
  void run(int n, const std::function<void(int)>& task);

 private:
  void loop(int index);

  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* task_ = nullptr;
  int tasks_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool quit_ = false;
};

// The process's pool, with at least n threads (made, or remade larger, on first use; from one thread at
// a time, the one that trains).
WorkerThreads& worker_threads(int n);

// f(begin, end) over [0, n) in contiguous ranges: on the worker threads, one range each, when the pool
// exists with 2 or more threads and the caller is not one of them; otherwise through at::parallel_for
// with grain 1 (LibTorch's threads, or inline inside a worker). An exception from f reaches the caller
// (the first range's first) after every range has finished. f must not depend on how [0, n) is split
// (callers that sum keep a partial result per index and add them in order).
void parallel_ranges(int64_t n, const std::function<void(int64_t, int64_t)>& f);

// f(i) for i in [0, n), independent tasks taken in order by the pool's threads as each becomes free (a
// thread runs several when they are short), under the same conditions as parallel_ranges and n >= 2;
// otherwise in order on the calling thread. The first failed task's exception (by index) reaches the
// caller after all tasks have run.
void parallel_tasks(int64_t n, const std::function<void(int64_t)>& f);
// The same for work on `device`: parallel_tasks on the CPU; elsewhere (a GPU, one stream) in order on the
// calling thread.
void parallel_tasks(const c10::Device& device, int64_t n, const std::function<void(int64_t)>& f);

// The number of threads of the pool (0 before it is made).
int worker_thread_count();

}  // namespace s2s
