#include "op_count.h"

#include <atomic>
#include <mutex>
#include <set>
#include <vector>

#include <ATen/record_function.h>

#include "error.h"

namespace s2s {

struct OpCount::State {
  std::mutex mutex;
  std::map<std::string, int64_t> counts;
};

namespace {

// The one OpCount counting now (RecordFunction's callbacks are plain functions).
std::atomic<OpCount::State*> active{nullptr};

// Operations that do no work of their own: views, allocations, dispatch wrappers.
const std::set<std::string>& no_work() {
  static const std::set<std::string> names{
      "aten::view",        "aten::_unsafe_view", "aten::reshape",     "aten::_reshape_alias", "aten::unsqueeze",
      "aten::squeeze",     "aten::select",       "aten::slice",       "aten::narrow",         "aten::t",
      "aten::transpose",   "aten::permute",      "aten::expand",      "aten::expand_as",      "aten::as_strided",
      "aten::unbind",      "aten::split",        "aten::chunk",       "aten::alias",          "aten::detach",
      "aten::view_as",     "aten::empty",        "aten::empty_like",  "aten::empty_strided",  "aten::resize_",
      "aten::lift_fresh",  "aten::contiguous",   "aten::to",          "aten::_to_copy",       "aten::matmul",
      "aten::linear",      "aten::dropout",      "aten::flatten",     "aten::movedim",        "aten::resolve_conj",
      "aten::resolve_neg", "aten::conj",         "aten::_conj",       "aten::result_type",    "aten::size",
      "aten::stride",      "aten::is_nonzero",   "aten::item",        "aten::scalar_tensor",  "aten::zeros",
      "aten::zeros_like",  "aten::ones_like",    "aten::full",        "aten::numpy_T",        "aten::_local_scalar_dense",
  };
  return names;
}

// One kernel or library call on a GPU, whatever the CPU makes of it: the products and reductions, and
// the arithmetic whose Scalar forms convert the scalar to a tensor first (a copy_ on the CPU).
const std::set<std::string>& whole() {
  static const std::set<std::string> names{
      "aten::mm",  "aten::addmm", "aten::addmm_", "aten::bmm",  "aten::baddbmm", "aten::baddbmm_", "aten::mv",
      "aten::addmv_", "aten::sum", "aten::add",   "aten::add_", "aten::sub",     "aten::sub_",     "aten::mul",
      "aten::mul_", "aten::div",  "aten::div_",  "aten::where"};
  return names;
}

struct Frame {
  bool has_work_inside = false;
};
thread_local std::vector<Frame> frames;
thread_local int inside_whole = 0;  // > 0: within a product or reduction, whose parts are not counted

std::unique_ptr<at::ObserverContext> on_enter(const at::RecordFunction& fn) {
  frames.push_back({});
  if (whole().count(fn.name())) ++inside_whole;
  return nullptr;
}

void on_exit(const at::RecordFunction& fn, at::ObserverContext*) {
  if (frames.empty()) return;  // entered before counting began
  const std::string name = fn.name();
  bool inner = frames.back().has_work_inside;
  frames.pop_back();
  const bool is_whole = whole().count(name) > 0;
  if (is_whole) {
    --inside_whole;
    inner = false;
  }
  const bool works = name.rfind("aten::", 0) == 0 && !no_work().count(name);
  if (works && !inner && inside_whole == 0) {
    if (auto* state = active.load()) {
      std::lock_guard<std::mutex> lock(state->mutex);
      ++state->counts[name];
    }
  }
  if ((works || inner) && !frames.empty()) frames.back().has_work_inside = true;
}

}  // namespace

OpCount::OpCount() : state_(std::make_shared<State>()) {
  State* expected = nullptr;
  if (!active.compare_exchange_strong(expected, state_.get())) throw Error("OpCount: one count at a time");
  handle_ = at::addGlobalCallback(
      at::RecordFunctionCallback(on_enter, on_exit).scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION}));
}

OpCount::~OpCount() {
  at::removeCallback(handle_);
  active.store(nullptr);
}

int64_t OpCount::total() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  int64_t n = 0;
  for (const auto& [name, count] : state_->counts) n += count;
  return n;
}

std::map<std::string, int64_t> OpCount::by_name() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->counts;
}

}  // namespace s2s
