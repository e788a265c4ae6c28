#include "cuda_graph_update.h"

#include <map>
#include <optional>

#include <spdlog/spdlog.h>

#include "error.h"
#include "graph_adam.h"

#ifdef S2S_WITH_CUDA_GRAPHS
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace s2s {
namespace {

constexpr int64_t kRowStep = 8;  // sentences: the last batch of an epoch shares the others' graph or one near it

int64_t round_up(int64_t n, int64_t step) { return (n + step - 1) / step * step; }

const char* const kNoCuda =
    "training.cuda_graphs: this s2s was built against a LibTorch without CUDA; build it against a CUDA "
    "LibTorch (README, \"On a GPU\") or set training.cuda_graphs to false";

}  // namespace

void graph_step_body(Seq2Seq& model, const std::vector<torch::Tensor>& params, const Batch& in,
                     const TrainingConfig& t, std::vector<torch::Tensor>& grads, torch::Tensor& loss) {
  auto out = model->forward(in, t.scheduled_sampling);
  auto mean = mean_token_loss(out.logits, in.tgt_out, t.label_smoothing);
  auto g = torch::autograd::grad({mean}, params, /*grad_outputs=*/{}, /*retain_graph=*/false,
                                 /*create_graph=*/false, /*allow_unused=*/true);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) {
    if (g[i].defined())
      grads[i].copy_(g[i]);
    else
      grads[i].zero_();  // a parameter the loss does not reach (as after zero_grad and backward)
  }
  loss.copy_(mean.detach());
}

std::vector<int64_t> CudaGraphUpdate::shape_of(const Batch& batch) const {
  return {round_up(batch.src.size(0), kRowStep), round_up(batch.src.size(1), length_step_),
          round_up(batch.tgt_in.size(1), length_step_)};
}

#ifdef S2S_WITH_CUDA_GRAPHS

struct CudaGraphUpdate::Impl {
  struct Shape {
    Batch inputs;  // on the device, outside the graphs' pool: each step copies its batch in
    int64_t runs = 0;
    std::unique_ptr<at::cuda::CUDAGraph> graph;
  };
  std::map<std::vector<int64_t>, Shape> shapes;
  std::vector<torch::Tensor> grads;  // what every run writes, eager or replayed: the parameters' .grad
  torch::Tensor loss;                // [] the mean token loss
  decltype(at::cuda::graph_pool_handle()) pool = at::cuda::graph_pool_handle();
  std::optional<c10::cuda::CUDAStream> stream;  // the recording stream (never the default one)
  int64_t max_graphs = 256, graphs = 0, replays = 0, eager = 0;
  std::vector<double> replay_ms;
  bool bound = false;  // to the optimizer of the first run (none, or the one in `adam`)
  torch::optim::Optimizer* optimizer = nullptr;
  std::unique_ptr<GraphAdam> adam;  // the optimizer's step as part of every run, when it can be

  void bind(torch::optim::Optimizer* o, const std::vector<torch::Tensor>& params, const TrainingConfig& t) {
    if (bound) {
      TORCH_CHECK(o == optimizer, "CudaGraphUpdate: the graphs were recorded with another optimizer");
      return;
    }
    bound = true;
    optimizer = o;
    if (!o || !optimizer_in_graph()) return;
    std::string why;
    adam = GraphAdam::make(*o, params, t.clip_norm, &why);
    if (adam)
      spdlog::info("[train] CUDA graphs: the clipping and Adam's update are recorded with the step{}",
                   adam->fused() ? " (Adam's update as one fused kernel)" : "");
    else
      spdlog::info("[train] CUDA graphs: the optimizer's step runs after each replay ({})", why);
  }

  void allocate(const std::vector<torch::Tensor>& params) {
    if (!grads.empty()) return;
    torch::NoGradGuard no_grad;
    for (const auto& p : params) grads.push_back(torch::zeros_like(p.detach(), torch::MemoryFormat::Contiguous));
    loss = torch::zeros({}, torch::TensorOptions().dtype(params.front().dtype()).device(params.front().device()));
  }

  void body(Seq2Seq& model, const std::vector<torch::Tensor>& params, const Batch& in, const TrainingConfig& t) {
    graph_step_body(model, params, in, t, grads, loss);
    if (adam) adam->apply(grads);
  }

  // Warms the shape up on the recording stream (this run's results are the step's), then records it.
  void record(Shape& s, Seq2Seq& model, const std::vector<torch::Tensor>& params, const TrainingConfig& t,
              const torch::Device& device) {
    c10::cuda::device_synchronize();  // the default stream's copies and last update are done
    if (!stream) stream = c10::cuda::getStreamFromPool(false, device.index());
    {
      c10::cuda::CUDAStreamGuard guard(*stream);
      body(model, params, s.inputs, t);
      auto graph = std::make_unique<at::cuda::CUDAGraph>();
      graph->capture_begin(pool);
      try {
        body(model, params, s.inputs, t);
      } catch (const std::exception& e) {
        try {
          graph->capture_end();
        } catch (...) {
        }
        throw Error(std::string("training.cuda_graphs: recording the training step failed (set "
                                "training.cuda_graphs to false to train without graphs): ") +
                    e.what());
      }
      graph->capture_end();
      s.graph = std::move(graph);
    }
    c10::cuda::device_synchronize();
    ++graphs;
  }
};

CudaGraphUpdate::CudaGraphUpdate(int64_t length_step, int64_t max_graphs)
    : impl_(std::make_unique<Impl>()), length_step_(std::max<int64_t>(1, length_step)) {
  impl_->max_graphs = max_graphs;
}

bool CudaGraphUpdate::available() { return true; }

Update CudaGraphUpdate::run(Seq2Seq& model, const std::vector<torch::Tensor>& params, const Batch& batch,
                            const TrainingConfig& t, const torch::Device& device, torch::optim::Optimizer* optimizer,
                            bool defer_loss) {
  TORCH_CHECK(device.is_cuda(), "CudaGraphUpdate: a CUDA device expected, got ", device.str());
  auto& I = *impl_;
  I.bind(optimizer, params, t);
  I.allocate(params);
  const auto shape = shape_of(batch);
  const auto padded = pad_batch(batch, shape[0], shape[1], shape[2]);
  auto& s = I.shapes[shape];
  if (!s.inputs.src.defined()) {
    s.inputs = padded.to(device);
  } else {
    // From page-locked memory, without waiting: a copy from pageable memory waits for the stream's work
    // (the step before), which leaves the GPU idle while the CPU prepares this step. The stream runs the
    // copies after the step before has read the inputs.
    s.inputs.src.copy_(padded.src.pin_memory(), /*non_blocking=*/true);
    s.inputs.src_lengths.copy_(padded.src_lengths.pin_memory(), /*non_blocking=*/true);
    s.inputs.tgt_in.copy_(padded.tgt_in.pin_memory(), /*non_blocking=*/true);
    s.inputs.tgt_out.copy_(padded.tgt_out.pin_memory(), /*non_blocking=*/true);
  }
  ++s.runs;
  if (I.adam) I.adam->begin_step();
  const bool replay = s.graph != nullptr;
  std::shared_ptr<at::cuda::CUDAEvent> replay_start, replay_end;  // with timing (the default disables it)
  if (replay) {
    replay_start = std::make_shared<at::cuda::CUDAEvent>(cudaEventDefault);
    replay_end = std::make_shared<at::cuda::CUDAEvent>(cudaEventDefault);
    replay_start->record();
    s.graph->replay();
    replay_end->record();
    ++I.replays;
  } else if (s.runs >= 2 && I.graphs < I.max_graphs) {
    I.record(s, model, params, t, device);  // a second batch of this shape: worth a graph
    ++I.eager;
  } else {
    I.body(model, params, s.inputs, t);
    ++I.eager;
  }
  for (size_t i = 0; i < params.size(); ++i)
    if (!params[i].grad().is_same(I.grads[i])) params[i].mutable_grad() = I.grads[i];
  // The loss into page-locked memory, and an event after it: reading it waits for this step only.
  auto host_loss = torch::empty({}, I.loss.options().device(torch::kCPU).pinned_memory(true));
  host_loss.copy_(I.loss, /*non_blocking=*/true);
  auto done = std::make_shared<at::cuda::CUDAEvent>();
  done->record();
  auto* impl = impl_.get();
  auto read = [impl, host_loss, done, replay_start, replay_end]() {
    done->synchronize();
    if (replay_start) impl->replay_ms.push_back(static_cast<double>(replay_start->elapsed_time(*replay_end)));
    return host_loss.item<double>();
  };
  Update u;
  if (defer_loss)
    u.pending = read;
  else
    u.loss = read();  // waits for the step
  u.stepped = I.adam != nullptr;
  u.tokens = batch.tgt_tokens;
  u.padded_cells = padded.padded_tokens;
  u.real_cells = batch.real_tokens;
  return u;
}

void CudaGraphUpdate::prepare(Seq2Seq& model, const std::vector<torch::Tensor>& params,
                              const std::vector<Batch>& batches, const TrainingConfig& t, const torch::Device& device,
                              torch::optim::Optimizer* optimizer) {
  auto& I = *impl_;
  I.bind(optimizer, params, t);
  I.allocate(params);
  // A recording's warm-up run updates the model when the step includes the optimizer's: put back after.
  std::optional<GraphAdam::Saved> saved;
  if (I.adam) saved = I.adam->save();
  // The warm-up runs draw dropout masks: the generator is put back, so the run continues as without them.
  auto generator = at::globalContext().defaultGenerator(device);
  torch::Tensor rng;
  {
    std::lock_guard<std::mutex> lock(generator.mutex());
    rng = generator.get_state();
  }
  for (const auto& batch : batches) {
    const auto shape = shape_of(batch);
    auto& s = I.shapes[shape];
    if (s.graph || I.graphs >= I.max_graphs) continue;
    s.inputs = pad_batch(batch, shape[0], shape[1], shape[2]).to(device);
    if (I.adam) I.adam->begin_step();
    I.record(s, model, params, t, device);
  }
  if (saved) I.adam->restore(*saved);
  {
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(rng);
  }
}

int64_t CudaGraphUpdate::graphs() const { return impl_->graphs; }
int64_t CudaGraphUpdate::replays() const { return impl_->replays; }
int64_t CudaGraphUpdate::eager() const { return impl_->eager; }
bool CudaGraphUpdate::optimizer_recorded() const { return impl_->adam != nullptr; }
bool CudaGraphUpdate::optimizer_fused() const { return impl_->adam && impl_->adam->fused(); }
const std::vector<double>& CudaGraphUpdate::replay_gpu_ms() const { return impl_->replay_ms; }

#else  // a LibTorch without CUDA

struct CudaGraphUpdate::Impl {};

CudaGraphUpdate::CudaGraphUpdate(int64_t length_step, int64_t)
    : impl_(std::make_unique<Impl>()), length_step_(std::max<int64_t>(1, length_step)) {}

bool CudaGraphUpdate::available() { return false; }

Update CudaGraphUpdate::run(Seq2Seq&, const std::vector<torch::Tensor>&, const Batch&, const TrainingConfig&,
                            const torch::Device&, torch::optim::Optimizer*, bool) {
  throw Error(kNoCuda);
}

void CudaGraphUpdate::prepare(Seq2Seq&, const std::vector<torch::Tensor>&, const std::vector<Batch>&,
                              const TrainingConfig&, const torch::Device&, torch::optim::Optimizer*) {
  throw Error(kNoCuda);
}

int64_t CudaGraphUpdate::graphs() const { return 0; }
int64_t CudaGraphUpdate::replays() const { return 0; }
int64_t CudaGraphUpdate::eager() const { return 0; }
bool CudaGraphUpdate::optimizer_recorded() const { return false; }
bool CudaGraphUpdate::optimizer_fused() const { return false; }
const std::vector<double>& CudaGraphUpdate::replay_gpu_ms() const {
  static const std::vector<double> none;
  return none;
}

#endif

CudaGraphUpdate::~CudaGraphUpdate() = default;

std::unique_ptr<CudaGraphUpdate> make_graph_update(const TrainingConfig& t, const torch::Device& device,
                                                   bool one_process) {
  if (!t.cuda_graphs) {
    if (device.is_cuda() && CudaGraphUpdate::available() && one_process && t.accumulate == 1)
      spdlog::info("[train] training.cuda_graphs is off: with it the GPU replays each batch shape's recorded "
                   "step instead of launching its kernels one by one (2.5-6.4x the steps per second on an H200)");
    return nullptr;
  }
  if (!device.is_cuda()) {
    spdlog::warn("[train] training.cuda_graphs is for a GPU; training on {} without graphs", device.str());
    return nullptr;
  }
  if (!CudaGraphUpdate::available()) throw Error(kNoCuda);
  if (!one_process || t.accumulate > 1) {
    spdlog::warn("[train] training.cuda_graphs takes one batch per update in one process (training.accumulate 1, "
                 "no torchrun); training without graphs");
    return nullptr;
  }
  spdlog::info("[train] CUDA graphs: each batch shape's step is recorded once and replayed; batches padded to "
               "lengths that are multiples of {} and to multiples of {} sentences",
               t.cuda_graph_length_step, kRowStep);
  return std::make_unique<CudaGraphUpdate>(t.cuda_graph_length_step);
}

}  // namespace s2s
