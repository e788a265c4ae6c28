// Counts the LibTorch operations that do work, on every thread, while an OpCount lives: what a step
// launches as kernels on a GPU, where a training step of this model is bound by how many it launches
// (README, "On a GPU"). Used by `s2s bench --count-ops`.
//
// An operation is counted once, by its name, when it is a leaf: none of the operations it calls does
// work. Views (view, select, unsqueeze, transpose, ...), allocations (empty, empty_like, ...) and
// dispatch wrappers (to, contiguous, matmul, linear, ...) do no work themselves and are not counted. The
// products and reductions (mm, addmm, bmm, baddbmm, mv, addmv, sum) and the arithmetic (add, sub, mul,
// div, where) count as one even where the CPU builds them from several operations (a copy of addmm's
// input, a scalar made a tensor): on a GPU each is one kernel or library call. Work done outside LibTorch's
// operations (this project's CPU kernels) is not seen; `--cpu-kernels off` gives a GPU's route on the CPU.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace s2s {

class OpCount {
 public:
  OpCount();   // starts counting
  ~OpCount();  // stops
  OpCount(const OpCount&) = delete;
  OpCount& operator=(const OpCount&) = delete;

  int64_t total() const;
  std::map<std::string, int64_t> by_name() const;  // "aten::mm" -> count

 struct State;  // the counts (op_count.cpp)

 private:
  std::shared_ptr<State> state_;
  uint64_t handle_ = 0;
};

}  // namespace s2s
