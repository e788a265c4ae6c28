#include "trainer.h"

#include <chrono>
#include <csignal>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <regex>
#include <sstream>
#include <thread>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>

#include "checkpoint.h"
#include "config.h"
#include "cuda_graph_update.h"
#include "data.h"
#include "directories.h"
#include "distributed.h"
#include "error.h"
#include "lr_schedule.h"
#include "metrics.h"
#include "model.h"
#include "optimizer_step.h"
#include "weight_average.h"
#include "progress.h"
#include "random.h"
#include "runtime.h"
#include "search.h"
#include "signals.h"
#include "step_losses.h"
#include "update.h"
#include "worker_threads.h"

namespace s2s {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// One JSON object per line; flushed after each so a killed run keeps its history.
class MetricsLog {
 public:
  explicit MetricsLog(const fs::path& path) : out_(path, std::ios::app) {
    if (!out_) throw Error(path.string() + ": cannot open for writing");
  }
  void write(const nlohmann::json& j) { out_ << j.dump() << "\n" << std::flush; }

 private:
  std::ofstream out_;
};

struct Corpora {
  TextCodec codec;
  std::vector<Example> train, valid;
  std::vector<std::string> valid_refs;  // raw reference lines, for BLEU
};

Corpora load_corpora(const Config& config, const TextCodec* existing_codec) {
  const auto& d = config.data;
  if (d.train_src.empty())
    throw Error("data.train_src must be set (with data.train_tgt, or alone for a tab-separated file)");
  require_data_files(d);
  const auto t0 = Clock::now();
  auto train_text = read_parallel(d.train_src, d.train_tgt);
  Corpora c;
  c.codec = existing_codec ? *existing_codec : TextCodec::build(d, train_text);
  FilterStats stats;
  c.train = encode_corpus(train_text, c.codec, d, /*filter=*/true, &stats);
  spdlog::info("[data] {}: {} pairs read, {} kept; dropped: {} empty, {} longer than {} tokens, {} with length ratio over {}",
               d.train_src, stats.read, stats.kept, stats.empty, stats.too_long, d.max_len, stats.bad_ratio,
               d.max_length_ratio);
  if (c.train.empty()) throw Error(d.train_src + ": no training pairs left after filtering (see data.max_len)");
  spdlog::info("[data] vocabularies: source {}, target {}{}", c.codec.src_vocab.size(), c.codec.tgt_vocab.size(),
               existing_codec ? " (from the checkpoint)" : "");
  if (!d.valid_src.empty()) {
    auto valid_text = read_parallel(d.valid_src, d.valid_tgt);
    c.valid = encode_corpus(valid_text, c.codec, d, /*filter=*/false, nullptr);
    c.valid_refs = valid_text.tgt;
    spdlog::info("[data] {}: {} validation pairs", d.valid_src, c.valid.size());
  }
  spdlog::info("[data] prepared in {:.1f} s", seconds_since(t0));
  return c;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainingConfig& t, Seq2Seq& model) {
  if (t.optimizer == "sgd")
    return std::make_unique<torch::optim::SGD>(model->parameters(),
                                               torch::optim::SGDOptions(t.learning_rate).momentum(t.momentum));
  return std::make_unique<torch::optim::Adam>(model->parameters(), torch::optim::AdamOptions(t.learning_rate));
}

struct Validation {
  double loss = 0, ppl = 0, bleu = 0, chrf = 0;
  // training.best_metric's value, higher is better (the loss negated)
  double score(const std::string& metric) const { return metric == "loss" ? -loss : metric == "chrf" ? chrf : bleu; }
};

Validation validate(Seq2Seq& model, const Corpora& data, const TrainingConfig& t, const torch::Device& device) {
  // Eval mode before the batches start, so that the threads only read the model; restored at the end.
  struct EvalMode {
    Seq2Seq& m;
    bool was_training = m->is_training();
    ~EvalMode() { m->train(was_training); }
  } eval_mode{model};
  model->eval();

  // Loss per target token.
  Validation v;
  const auto loss = corpus_loss(model, data.valid, t.batch_size, device);
  v.loss = loss.sum_nll / static_cast<double>(std::max<int64_t>(loss.tokens, 1));
  v.ppl = std::exp(v.loss);

  // BLEU and chrF of greedy translations of (the first valid_bleu_sentences of) the validation set.
  const auto n = t.valid_bleu_sentences > 0 ? std::min<size_t>(t.valid_bleu_sentences, data.valid.size())
                                            : data.valid.size();
  std::vector<Example> subset(data.valid.begin(), data.valid.begin() + n);
  std::vector<std::string> hyps(n), refs(data.valid_refs.begin(), data.valid_refs.begin() + n);
  const SearchOptions greedy;
  const auto batches = ordered_batches(subset, t.batch_size, true);
  std::vector<std::vector<std::vector<Hypothesis>>> results(batches.size());
  // With the CPU's batch split, side by side on the training step's threads (worker_threads.h).
  parallel_tasks(device, static_cast<int64_t>(batches.size()), [&](int64_t b) {
    results[static_cast<size_t>(b)] = search(model, make_batch(subset, batches[static_cast<size_t>(b)]).to(device), greedy);
  });
  for (size_t b = 0; b < batches.size(); ++b)
    for (size_t r = 0; r < batches[b].size(); ++r)
      hyps[batches[b][r]] = results[b][r].empty() ? "" : data.codec.decode_tgt(results[b][r][0].tokens);
  v.bleu = n > 0 ? corpus_bleu(hyps, refs, BleuOptions{}).score : 0.0;
  v.chrf = n > 0 ? corpus_chrf(hyps, refs, ChrfOptions{}).score : 0.0;
  return v;
}

std::string step_file(int64_t step) {
  std::ostringstream name;
  name << "step-" << std::setw(7) << std::setfill('0') << step << ".pt";
  return name.str();
}

// The step-N.pt checkpoints in `dir`, oldest (lowest N) first; none when `dir` is not a folder.
std::vector<fs::path> step_checkpoints(const fs::path& dir) {
  static const std::regex pattern("step-(\\d+)\\.pt");
  std::vector<std::pair<int64_t, fs::path>> files;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir)) {
      std::smatch m;
      const auto name = e.path().filename().string();
      if (std::regex_match(name, m, pattern)) files.emplace_back(std::stoll(m[1]), e.path());
    }
  std::sort(files.begin(), files.end());
  std::vector<fs::path> paths;
  for (auto& f : files) paths.push_back(std::move(f.second));
  return paths;
}

void prune_step_checkpoints(const fs::path& dir, int64_t keep) {
  const auto files = step_checkpoints(dir);
  for (size_t i = 0; i + keep < files.size(); ++i) fs::remove(files[i]);
}

// Training-only keys may change on resume; anything that shapes the model or its vocabularies may not.
void check_resume_compatible(const Config& now, const Config& saved, const std::string& path) {
  const auto a = config_to_json(now), b = config_to_json(saved);
  if (a["model"] != b["model"])
    throw Error("--resume " + path + ": the config's model section differs from the checkpoint's (" +
                a["model"].dump() + " vs " + b["model"].dump() + "); a run can only resume with the same model");
  for (const char* key : {"tokenizer", "lowercase", "split_punctuation", "min_freq", "max_size", "vocab_size",
                          "shared_vocab"})
    if (a["data"][key] != b["data"][key])
      throw Error("--resume " + path + ": data." + key + " differs from the checkpoint's (" + a["data"][key].dump() +
                  " vs " + b["data"][key].dump() + "); the vocabularies would not match");
  for (auto it = a["training"].begin(); it != a["training"].end(); ++it)
    if (b["training"][it.key()] != it.value())
      spdlog::info("[train] on resume, training.{} changed from {} to {}", it.key(), b["training"][it.key()].dump(),
                   it.value().dump());
}

// A run killed while writing a checkpoint leaves its temporary file behind (never a damaged .pt).
void remove_stale_temporaries(const fs::path& dir) {
  static const std::regex pattern("\\..*\\.pt\\.tmp-\\d+");
  for (const auto& e : fs::directory_iterator(dir))
    if (std::regex_match(e.path().filename().string(), pattern)) {
      spdlog::info("[train] removing {} left by an interrupted checkpoint write", e.path().string());
      fs::remove(e.path());
    }
}

// Runs `check` (StepLosses::add or settle); on a loss that is NaN or infinite, says so and returns false.
template <typename Check>
bool settled(ProgressLine& progress, Check&& check) {
  try {
    check();
    return true;
  } catch (const NonFiniteLoss& e) {
    progress.clear();
    spdlog::error("[train] {}; stopping. The last good checkpoint is intact; try a lower training.learning_rate or "
                  "training.clip_norm",
                  e.what());
    return false;
  }
}

// The checkpoints of a run in `dir` (last.pt, best.pt, step-N.pt).
std::vector<fs::path> run_checkpoints(const fs::path& dir) {
  std::vector<fs::path> found;
  for (const char* name : {"best.pt", "last.pt"})
    if (fs::exists(dir / name)) found.push_back(dir / name);
  const auto steps = step_checkpoints(dir);
  found.insert(found.end(), steps.begin(), steps.end());
  return found;
}

// A new run (not resumed) must not replace another run's checkpoints: refused, or with --overwrite the
// old run's checkpoints and metrics are deleted (by rank 0) before anything is written.
void claim_output_dir(const fs::path& dir, bool overwrite, bool is_main, const std::string& init_from,
                      bool resume_auto) {
  const auto old = run_checkpoints(dir);
  if (old.empty()) return;
  std::error_code ec;
  for (const auto& p : old)
    if (overwrite && !init_from.empty() && fs::equivalent(p, init_from, ec))
      throw Error("--init-from " + init_from + " is one of the checkpoints that --overwrite would delete in " +
                  dir.string() + "; copy it elsewhere first, or give the new run another output_dir");
  if (!overwrite) {
    std::string names;
    for (size_t i = 0; i < old.size() && i < 3; ++i) names += (i ? ", " : "") + old[i].filename().string();
    if (old.size() > 3) names += ", ...";
    if (resume_auto)  // find_resume_checkpoint warned about each
      throw Error("--resume auto: none of the checkpoints in " + dir.string() + " (" + names +
                  ") loads. Start over there with --overwrite (without --resume; deletes them), or give the run "
                  "another output_dir (--set output_dir=DIR)");
    throw Error("output_dir " + dir.string() + " holds another run's checkpoints (" + names +
                "); a new run would replace them. Continue that run with --resume auto, start this one elsewhere "
                "(--set output_dir=DIR), or start over there with --overwrite (deletes them)");
  }
  if (!is_main) return;
  for (const auto& p : old) fs::remove(p);
  fs::remove(dir / "metrics.jsonl");
  spdlog::info("[train] --overwrite: removed {} checkpoints and metrics.jsonl of the run in {}", old.size(), dir.string());
}

}  // namespace

std::string find_resume_checkpoint(const std::string& output_dir) {
  const fs::path dir(output_dir);
  if (!fs::is_directory(dir)) return "";
  std::vector<fs::path> candidates;
  if (fs::exists(dir / "last.pt")) candidates.push_back(dir / "last.pt");
  const auto steps = step_checkpoints(dir);
  candidates.insert(candidates.end(), steps.rbegin(), steps.rend());  // newest first
  // last.pt is written after the step file, so it is the newest; fall back when it does not load.
  for (const auto& c : candidates) {
    try {
      read_checkpoint(c.string());
      return c.string();
    } catch (const Error& e) {
      spdlog::warn("[train] skipping {}: {}", c.string(), e.what());
    }
  }
  return "";
}

int train(const TrainOptions& options) {
  const auto t_start = Clock::now();
  Config config = load_config(options.config_path, options.overrides);
  // Under torchrun (WORLD_SIZE > 1) this is one rank of a data-parallel run; rank 0 alone writes the
  // run folder's files, the others log warnings and errors only.
  const auto env = distributed_env_from_environment();
  const bool is_main = env.rank == 0;
  if (!is_main) spdlog::set_level(spdlog::level::warn);
  if (env.active()) spdlog::set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%^%l%$] [rank " + std::to_string(env.rank) + "] %v");
  const fs::path out_dir(config.output_dir);
  ensure_directory(out_dir.string(), "output_dir");
  if (is_main) remove_stale_temporaries(out_dir);
  std::string resume_path = options.resume;
  if (resume_path == "auto") resume_path = find_resume_checkpoint(config.output_dir);
  if (resume_path.empty()) claim_output_dir(out_dir, options.overwrite, is_main, options.init_from, options.resume == "auto");  // before a file is written
  if (is_main) {
    auto file_sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>((out_dir / "train.log").string());
    file_sink->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
    spdlog::default_logger()->sinks().push_back(file_sink);
    spdlog::default_logger()->flush_on(spdlog::level::info);  // train.log current for `tail -f` and after a kill
  }
  if (options.resume == "auto")
    spdlog::info("[train] --resume auto: {}", resume_path.empty() ? "no checkpoint found, starting fresh" : resume_path);
  std::optional<CheckpointContents> resume_ckpt, init_ckpt;
  if (!resume_path.empty()) {
    resume_ckpt = read_checkpoint(resume_path);
    check_resume_compatible(config, resume_ckpt->config, resume_path);
  }
  if (!options.init_from.empty()) {
    init_ckpt = read_checkpoint(options.init_from);
    check_resume_compatible(config, init_ckpt->config, options.init_from);
  }
  if (is_main) {
    std::ofstream f(out_dir / "config.json");
    f << config_to_json(config).dump(2) << "\n";
  }
  const auto& t = config.training;
  // Processes sharing a machine share its cores: with training.threads 0 each takes its part.
  int64_t threads = t.threads;
  if (threads == 0 && env.local_world_size > 1)
    threads = std::max<int64_t>(1, std::thread::hardware_concurrency() / env.local_world_size);
  configure_threads(threads, "train");
  auto device = resolve_device(t.device);
  if (env.active() && device.is_cuda() && (t.device == "auto" || t.device == "cuda"))
    device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
  spdlog::info("[train] device: {}", device.str());
  configure_matmul_precision(t.tf32, device, "train");

  std::unique_ptr<ProcessGroup> group;
  if (env.active()) {
    group = std::make_unique<ProcessGroup>(
        env, std::chrono::milliseconds(static_cast<int64_t>(t.dist_timeout * 1000)), device);
    spdlog::info("[dist] rank {} of {}: {} process group, rendezvous {}:{}, timeout {} s; {} batches per update "
                 "({} processes x training.accumulate {})",
                 env.rank, env.world_size, group->backend(), env.master_addr, env.master_port, t.dist_timeout,
                 env.world_size * t.accumulate, env.world_size, t.accumulate);
  }

  const TextCodec* codec = resume_ckpt ? &resume_ckpt->codec : init_ckpt ? &init_ckpt->codec : nullptr;
  auto data = load_corpora(config, codec);

  torch::manual_seed(t.seed);
  Seq2Seq model = resume_ckpt ? restore_model(*resume_ckpt, device)
                  : init_ckpt ? restore_translation_model(*init_ckpt, device)  // the average, where there is one
                              : Seq2Seq(config.model, data.codec.src_vocab.size(), data.codec.tgt_vocab.size());
  model->to(device);
  model->train();
  auto optimizer = make_optimizer(t, model);
  // training.ema_decay: the moving average of the weights, kept by rank 0, which validates and writes
  // checkpoints. A resumed run continues the checkpoint's average, or starts one from its weights.
  std::optional<WeightAverage> average;
  if (t.ema_decay > 0 && is_main) {
    Seq2Seq stored = resume_ckpt ? restore_average(*resume_ckpt, device) : nullptr;
    if (resume_ckpt && !stored)
      spdlog::warn("[train] training.ema_decay {}: {} holds no average of the weights; it starts from the "
                   "checkpoint's weights", t.ema_decay, resume_path);
    average.emplace(stored ? stored : copy_model(model, data.codec.src_vocab.size(), data.codec.tgt_vocab.size()),
                    t.ema_decay);
    spdlog::info("[train] keeping a moving average of the weights (training.ema_decay {}): validation, best.pt and "
                 "translation use it", t.ema_decay);
  } else if (resume_ckpt && t.ema_decay == 0 && has_average(*resume_ckpt)) {
    spdlog::info("[train] training.ema_decay is 0: the checkpoint's average of the weights is not continued");
  }
  Seq2Seq* average_model = average ? &average->average() : nullptr;
  TrainState state;
  LrSchedule schedule(t);
  const int64_t batches_per_update = env.world_size * t.accumulate;
  if (resume_ckpt) {
    restore_optimizer(*resume_ckpt, *optimizer);
    state = resume_ckpt->state;
    if (!state.lr_schedule.is_null()) schedule.load_state(state.lr_schedule);
    const auto& saved_metric = resume_ckpt->config.training.best_metric;
    if (saved_metric != t.best_metric) {
      // The best score so far is in the old metric's units: compared with the new one it would decide nothing.
      spdlog::warn("[train] training.best_metric changed from {} to {}: the best {} so far (step {}) is forgotten, "
                   "and the next validation writes best.pt",
                   saved_metric, t.best_metric, saved_metric, state.best_step);
      state.best_score = -std::numeric_limits<double>::infinity();
      state.best_step = 0;
      state.bad_validations = 0;
    }
    spdlog::info("[train] resumed from {} at step {} (epoch {}, batch {})", resume_path, state.step, state.epoch + 1,
                 state.batch_in_epoch);
    if (state.batches_per_update != batches_per_update)
      spdlog::info("[train] the checkpoint's run took {} batches per update, this one takes {} (processes x "
                   "training.accumulate); the data position carries over",
                   state.batches_per_update, batches_per_update);
  }
  state.batches_per_update = batches_per_update;
  if (group) {
    // Every rank must continue from the same point: the same checkpoint (a shared output_dir) or none.
    auto where = torch::tensor({static_cast<double>(state.step), static_cast<double>(state.epoch),
                                static_cast<double>(state.batch_in_epoch)},
                               torch::kFloat64);
    auto root = where.clone();
    std::vector<torch::Tensor> v{root};
    group->broadcast(v, 0);
    if (!torch::equal(root, where))
      throw Error("rank " + std::to_string(env.rank) + " starts at step " + std::to_string(state.step) +
                  " but rank 0 at step " + std::to_string(root[0].item<int64_t>()) +
                  ": every process must resume from the same checkpoint (give all ranks the same --resume file, "
                  "or an output_dir on a shared file system)");
    broadcast_parameters(*group, model->parameters());
    // Dropout masks differ between ranks, as they would between the batches of one process.
    if (env.rank > 0) torch::manual_seed(t.seed + 1000003 * env.rank + state.step);
  }
  spdlog::info("[model] {} cell, attention {}, {} parameters", config.model.cell, config.model.attention,
               model->parameter_count());

  std::optional<MetricsLog> metrics;
  if (is_main) metrics.emplace(out_dir / "metrics.jsonl");
  install_stop_handlers();
  ProgressLine progress(is_main);
  auto save = [&](const std::string& reason) {
    if (!is_main) return;
    progress.clear();
    const auto step_path = out_dir / step_file(state.step);
    save_checkpoint(step_path.string(), config, data.codec, model, optimizer.get(), state, average_model);
    save_checkpoint((out_dir / "last.pt").string(), config, data.codec, model, optimizer.get(), state, average_model);
    prune_step_checkpoints(out_dir, t.keep_checkpoints);
    spdlog::info("[train] checkpoint {} ({})", step_path.string(), reason);
  };

  if ((t.max_steps > 0 && state.step >= t.max_steps) || state.epoch >= t.epochs) {
    spdlog::info("[train] the run is already complete at step {} (training.max_steps {}, training.epochs {}); "
                 "raise them to train further",
                 state.step, t.max_steps, t.epochs);
    return 0;
  }
  BatchingOptions batching{t.batch_size, t.batch_type, static_cast<uint64_t>(t.seed)};
  const auto params = model->parameters();
  UpdateOptions update_options;
  update_options.shards = update_shards(t, device);
  if (update_options.shards > 1)
    spdlog::info("[train] each batch is split across {} threads (training.cpu_parallel \"batch\"), one intra-op "
                 "thread each",
                 update_options.shards);
  const auto graphs = make_graph_update(t, device, /*one_process=*/!group);
  update_options.graphs = graphs.get();
  update_options.optimizer = optimizer.get();
  update_options.defer_loss = true;  // with graphs, each step's loss is read after the next one is launched
  const double elapsed_before = state.elapsed_seconds;
  const auto t_loop = Clock::now();
  auto t_interval = Clock::now();
  int64_t interval_tokens = 0, interval_padded = 0, interval_real = 0;
  StepLosses interval_losses;
  double shown_loss = 0;  // on the progress line
  double interval_paused = 0;  // seconds of validation inside the interval: not training time
  int64_t interval_steps = 0;
  bool finished = false, stopped_early = false;

  while (state.epoch < t.epochs) {
    // Every rank computes the same batches; an update takes the next `batches_per_update` of them, and
    // rank r of W takes the ones at r, r + W, r + 2W, ... among those.
    const auto batches = epoch_batches(data.train, batching, state.epoch);
    const auto n_batches = static_cast<int64_t>(batches.size());
    while (state.batch_in_epoch < n_batches) {
      const int64_t window = std::min(batches_per_update, n_batches - state.batch_in_epoch);
      for (auto& g : optimizer->param_groups()) g.options().set_lr(schedule.rate(state.step + 1));
      std::vector<std::vector<int64_t>> mine;
      for (int64_t a = 0; a < t.accumulate; ++a) {
        const int64_t k = a * env.world_size + env.rank;
        if (k < window) mine.push_back(batches[state.batch_in_epoch + k]);
      }
      update_options.seed = mix_seed(static_cast<uint64_t>(t.seed), static_cast<uint64_t>(env.rank),
                                     static_cast<uint64_t>(state.step));
      Update u = compute_update(model, params, data.train, mine, t, device, update_options, group.get());
      const bool stepped = u.stepped;
      const double grad_square_sum = u.grad_square_sum;
      const int64_t tokens = u.tokens, padded_cells = u.padded_cells, real_cells = u.real_cells;
      const bool stop_requested_elsewhere = u.stop_requested;
      // checks the step before's loss (when still pending, now that this step is launched) and this one's
      if (!settled(progress, [&] { interval_losses.add(std::move(u), state.step + 1); })) return 1;
      if (!stepped) clip_and_step(*optimizer, params, t.clip_norm, grad_square_sum);
      ++state.step;
      if (average) average->update(model, state.step);
      state.batch_in_epoch += window;
      ++interval_steps;
      const bool at_max = t.max_steps > 0 && state.step >= t.max_steps;
      const bool validating = !data.valid.empty() && (state.step % t.valid_every == 0 || at_max);
      // nothing below may follow a loss not yet checked: a log line, validation, a checkpoint, the end
      if ((state.step % t.log_every == 0 || validating || state.step % t.checkpoint_every == 0 || at_max ||
           state.batch_in_epoch >= n_batches || stop_requested_elsewhere || stop_requested()) &&
          !settled(progress, [&] { interval_losses.settle(); }))
        return 1;
      interval_tokens += tokens;
      interval_padded += padded_cells;
      interval_real += real_cells;
      state.elapsed_seconds = elapsed_before + seconds_since(t_loop);

      {
        const double dt = std::max(seconds_since(t_interval) - interval_paused, 1e-9);
        const double per_step = dt / static_cast<double>(interval_steps);
        if (interval_losses.counted()) shown_loss = interval_losses.mean();  // (else the step's is on its way)
        progress.update({state.step, state.epoch + 1, shown_loss, interval_tokens / dt,
                         per_step * static_cast<double>(t.valid_every - state.step % t.valid_every)});
      }
      if (state.step % t.log_every == 0) {
        progress.clear();
        const double dt = seconds_since(t_interval) - interval_paused;
        const double lr = optimizer->param_groups()[0].options().get_lr();
        const double tps = interval_tokens / std::max(dt, 1e-9);
        const double pad = 1.0 - static_cast<double>(interval_real) / std::max<int64_t>(interval_padded, 1);
        spdlog::info("[train] step {} epoch {} loss {:.4f} lr {:.2e} {:.0f} tgt tok/s padding {:.1f}% elapsed {:.0f}s",
                     state.step, state.epoch + 1, interval_losses.mean(), lr, tps, 100 * pad,
                     state.elapsed_seconds);
        if (metrics)
          metrics->write({{"type", "train"}, {"step", state.step}, {"epoch", state.epoch + 1},
                          {"loss", interval_losses.mean()}, {"lr", lr}, {"tokens_per_sec", tps},
                          {"padding", pad}, {"elapsed", state.elapsed_seconds}});
        interval_losses.reset();
        interval_steps = interval_tokens = interval_padded = interval_real = 0;
        interval_paused = 0;
        t_interval = Clock::now();
      }
      if (validating) {
        progress.clear();
        const auto t_valid = Clock::now();
        // Rank 0 validates; the others wait for its figures so that every rank takes the same decisions.
        Validation v;
        if (is_main) {
          if (average) average->swap(model);  // the average's weights into the model for validation, and back
          v = validate(model, data, t, device);
          if (average) average->swap(model);
        }
        if (group) {
          auto figures = torch::tensor({v.loss, v.ppl, v.bleu, v.chrf}, torch::kFloat64);
          std::vector<torch::Tensor> f{figures};
          group->broadcast(f, 0);
          v = {figures[0].item<double>(), figures[1].item<double>(), figures[2].item<double>(), figures[3].item<double>()};
        }
        const double score = v.score(t.best_metric);
        const bool improved = score > state.best_score;
        schedule.on_validation(improved);
        state.lr_schedule = schedule.state();
        if (improved) {
          state.best_score = score;
          state.best_step = state.step;
          state.bad_validations = 0;
        } else {
          ++state.bad_validations;
        }
        spdlog::info("[valid] step {} loss {:.4f} ppl {:.2f} bleu {:.2f} chrf {:.2f}{}", state.step, v.loss, v.ppl, v.bleu,
                     v.chrf, improved ? " (new best " + t.best_metric + ")" : "");
        if (metrics)
          metrics->write({{"type", "valid"}, {"step", state.step}, {"epoch", state.epoch + 1}, {"loss", v.loss},
                          {"ppl", v.ppl}, {"bleu", v.bleu}, {"chrf", v.chrf}, {"elapsed", state.elapsed_seconds}});
        if (improved && is_main)
          save_checkpoint((out_dir / "best.pt").string(), config, data.codec, model, optimizer.get(), state,
                          average_model);
        if (t.patience > 0 && state.bad_validations >= t.patience) {
          spdlog::info("[train] no improvement of validation {} in {} validations: stopping early", t.best_metric,
                       t.patience);
          stopped_early = true;
        }
        interval_paused += seconds_since(t_valid);  // validation time is not training throughput
      }
      if (state.step % t.checkpoint_every == 0) save("every " + std::to_string(t.checkpoint_every) + " steps");
      if (at_max || stopped_early) {
        finished = true;
        break;
      }
      // All ranks stop after the same step: the request travels with the step's all-reduce.
      if (group ? stop_requested_elsewhere : stop_requested()) {
        if (!settled(progress, [&] { interval_losses.settle(); })) return 1;  // a signal since the check above
        save("interrupted");
        const int sig = stop_signal() ? stop_signal() : SIGINT;
        spdlog::warn("[train] interrupted by {} at step {}; resume with --resume auto",
                     stop_signal() ? "signal " + std::to_string(sig) : std::string("another process's signal"),
                     state.step);
        return 128 + sig;
      }
    }
    if (finished) break;
    ++state.epoch;
    state.batch_in_epoch = 0;
  }
  if (state.step % t.checkpoint_every != 0) save("end of training");
  if (graphs)
    spdlog::info("[train] CUDA graphs: {} recorded; {} steps replayed one, {} ran eagerly", graphs->graphs(),
                 graphs->replays(), graphs->eager());
  const double best = std::isinf(state.best_score) ? 0.0 : std::abs(state.best_score);
  spdlog::info("[train] done: {} steps in {:.0f} s (this run {:.0f} s); best validation {} {:.4g} at step {}",
               state.step, state.elapsed_seconds, seconds_since(t_start), t.best_metric, best, state.best_step);
  return 0;
}

}  // namespace s2s
