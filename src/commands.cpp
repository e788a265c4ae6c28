#include "commands.h"

#include <filesystem>
#include <iomanip>
#include <iostream>

#include "checkpoint.h"
#include "data.h"
#include "error.h"
#include "metrics.h"

namespace s2s {
namespace fs = std::filesystem;

int run_bleu(const ScoreCommand& cmd) {
  auto text = read_parallel(cmd.hyp, cmd.ref);
  BleuOptions o;
  o.lowercase = cmd.lowercase;
  o.tokenize = cmd.tokenize;
  const auto r = corpus_bleu(text.src, text.tgt, o);
  if (cmd.json) {
    std::cout << nlohmann::json{{"name", "BLEU"}, {"score", r.score}, {"signature", r.signature},
                                {"counts", r.counts}, {"totals", r.totals}, {"bp", r.bp},
                                {"sys_len", r.sys_len}, {"ref_len", r.ref_len}}
                     .dump(1)
              << "\n";
  } else {
    std::cout << r.to_string() << "  " << r.signature << "\n";
  }
  return 0;
}

int run_chrf(const ScoreCommand& cmd) {
  auto text = read_parallel(cmd.hyp, cmd.ref);
  ChrfOptions o;
  o.lowercase = cmd.lowercase;
  const auto r = corpus_chrf(text.src, text.tgt, o);
  if (cmd.json) {
    std::cout << nlohmann::json{{"name", "chrF2"}, {"score", r.score}, {"signature", r.signature}}.dump(1) << "\n";
  } else {
    std::cout << "chrF2 = " << std::fixed << std::setprecision(2) << r.score << "  " << r.signature << "\n";
  }
  return 0;
}

int run_info(const std::string& checkpoint, bool json) {
  auto ckpt = read_checkpoint(checkpoint);
  auto model = restore_model(ckpt, torch::kCPU);
  nlohmann::json params = nlohmann::json::array();
  for (const auto& p : model->named_parameters())
    params.push_back({{"name", p.key()}, {"shape", p.value().sizes().vec()}});
  const auto& s = ckpt.state;
  // The best validation score in its metric's own sign (the checkpoint keeps higher-is-better: -loss).
  const auto& metric = ckpt.config.training.best_metric;
  const bool has_best = !std::isinf(s.best_score);
  const double best = metric == "loss" ? -s.best_score : s.best_score;
  nlohmann::json j{{"checkpoint", checkpoint},
                   {"config", config_to_json(ckpt.config)},
                   {"parameters", params},
                   {"parameter_count", model->parameter_count()},
                   {"step", s.step},
                   {"epoch", s.epoch + 1},
                   {"best_metric", metric},
                   {"best_valid_score", has_best ? nlohmann::json(best) : nlohmann::json(nullptr)},
                   {"best_step", s.best_step},
                   {"src_vocab_size", ckpt.codec.src_vocab.size()},
                   {"tgt_vocab_size", ckpt.codec.tgt_vocab.size()}};
  if (json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << "checkpoint: " << checkpoint << "\nstep: " << s.step << " (epoch " << s.epoch + 1 << ")\n"
            << "best validation " << metric << ": " << (has_best ? std::to_string(best) : std::string("-"))
            << " at step " << s.best_step << "\nvocabularies: source " << ckpt.codec.src_vocab.size() << ", target "
            << ckpt.codec.tgt_vocab.size() << "\nparameters: " << model->parameter_count() << "\n";
  for (const auto& p : params) std::cout << "  " << std::left << std::setw(40) << p["name"].get<std::string>() << p["shape"].dump() << "\n";
  std::cout << "config:\n" << config_to_json(ckpt.config).dump(2) << "\n";
  return 0;
}

int run_release(const std::string& checkpoint, const std::string& output) {
  std::error_code ec;
  if (fs::exists(output, ec) && fs::equivalent(checkpoint, output, ec))
    throw Error(output + ": is the checkpoint itself; releasing it in place would drop the optimiser state "
                "that resuming its run needs. Write the release elsewhere (-o)");
  const auto ckpt = read_checkpoint(checkpoint);
  auto model = restore_model(ckpt, torch::kCPU);
  save_checkpoint(output, ckpt.config, ckpt.codec, model, nullptr, ckpt.state);
  std::cout << "released " << checkpoint << " (step " << ckpt.state.step << ", " << fs::file_size(checkpoint) / 1024
            << " KiB) as " << output << " (" << fs::file_size(output) / 1024 << " KiB, no optimiser state)\n";
  return 0;
}

int run_average(const std::vector<std::string>& checkpoints, const std::string& output) {
  if (checkpoints.size() < 2) throw Error("average: give two or more checkpoints");
  std::error_code ec;
  for (const auto& c : checkpoints)
    if (fs::exists(output, ec) && fs::equivalent(c, output, ec))
      throw Error(output + ": is one of the checkpoints to average; write the average elsewhere (-o)");

  const auto first = read_checkpoint(checkpoints.front());
  const auto model_json = config_to_json(first.config).at("model");
  const auto codec_json = first.codec.to_json();
  auto model = restore_model(first, torch::kCPU);
  std::vector<torch::Tensor> sums;  // in float64, whatever the parameters' type
  for (const auto& p : model->parameters()) sums.push_back(p.detach().to(torch::kDouble));
  const CheckpointContents* newest = &first;
  std::vector<CheckpointContents> others;
  others.reserve(checkpoints.size() - 1);
  for (size_t i = 1; i < checkpoints.size(); ++i) {
    others.push_back(read_checkpoint(checkpoints[i]));
    const auto& ck = others.back();
    const auto other_json = config_to_json(ck.config).at("model");
    for (auto it = model_json.begin(); it != model_json.end(); ++it)
      if (other_json.at(it.key()) != it.value())
        throw Error(checkpoints[i] + ": model." + it.key() + " is " + other_json.at(it.key()).dump() + ", " +
                    checkpoints.front() + " has " + it.value().dump() + ": only checkpoints of one model average");
    if (ck.codec.to_json() != codec_json)
      throw Error(checkpoints[i] + ": its vocabularies or tokenizers differ from " + checkpoints.front() +
                  "'s: only checkpoints of one model average");
    const auto params = restore_model(ck, torch::kCPU)->parameters();
    for (size_t k = 0; k < sums.size(); ++k) sums[k] += params[k].detach().to(torch::kDouble);
    if (ck.state.step > newest->state.step) newest = &ck;
  }
  {
    torch::NoGradGuard no_grad;
    auto params = model->parameters();
    for (size_t k = 0; k < sums.size(); ++k) params[k].copy_(sums[k] / static_cast<double>(checkpoints.size()));
  }
  save_checkpoint(output, newest->config, newest->codec, model, nullptr, newest->state);
  std::cout << "averaged " << checkpoints.size() << " checkpoints (steps";
  std::cout << " " << first.state.step;
  for (const auto& ck : others) std::cout << " " << ck.state.step;
  std::cout << ") into " << output << " (no optimiser state; the training position of step " << newest->state.step
            << ")\n";
  return 0;
}

}  // namespace s2s
