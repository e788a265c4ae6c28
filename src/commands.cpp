#include "commands.h"

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>

#include "alignment.h"
#include "checkpoint.h"
#include "data.h"
#include "error.h"
#include "metrics.h"
#include "runtime.h"
#include "translator.h"

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
  const bool averaged = has_average(ckpt);
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
                   {"translation_weights", averaged ? "average" : "trained"},
                   {"src_vocab_size", ckpt.codec.src_vocab.size()},
                   {"tgt_vocab_size", ckpt.codec.tgt_vocab.size()}};
  if (json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << "checkpoint: " << checkpoint << "\nstep: " << s.step << " (epoch " << s.epoch + 1 << ")\n"
            << "best validation " << metric << ": " << (has_best ? std::to_string(best) : std::string("-"))
            << " at step " << s.best_step << "\nvocabularies: source " << ckpt.codec.src_vocab.size() << ", target "
            << ckpt.codec.tgt_vocab.size() << "\nparameters: " << model->parameter_count() << "\n"
            << "translation weights: "
            << (averaged ? "the moving average of the weights (training.ema_decay " +
                               fmt::format("{}", ckpt.config.training.ema_decay) + ")"
                         : std::string("the trained weights"))
            << "\n";
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
  auto model = restore_translation_model(ckpt, torch::kCPU);  // the average of the weights, where there is one
  save_checkpoint(output, ckpt.config, ckpt.codec, model, nullptr, ckpt.state);
  std::cout << "released " << checkpoint << " (step " << ckpt.state.step << ", " << fs::file_size(checkpoint) / 1024
            << " KiB) as " << output << " (" << fs::file_size(output) / 1024 << " KiB, "
            << (has_average(ckpt) ? "the moving average of the weights, " : "") << "no optimiser state)\n";
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
  auto model = restore_translation_model(first, torch::kCPU);
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
    const auto params = restore_translation_model(ck, torch::kCPU)->parameters();
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

int run_align(const AlignCommand& cmd) {
  configure_threads(cmd.threads, "align");
  const auto device = resolve_device(cmd.device);
  auto loaded = load_model(cmd.checkpoint, device);
  auto& model = loaded.model;
  if (!model->decoder->has_attention())
    throw Error(cmd.checkpoint + ": its model has no attention (model.attention \"none\"), so no alignment to read");
  const auto text = read_parallel(cmd.src, cmd.tgt);
  std::vector<GoldAlignment> gold;
  if (!cmd.gold.empty()) {
    std::ifstream in(cmd.gold);
    if (!in) throw Error(cmd.gold + ": cannot open the gold alignment file");
    std::string line;
    while (std::getline(in, line)) gold.push_back(parse_gold_alignment(line, cmd.gold + ":" + std::to_string(gold.size() + 1)));
    if (gold.size() != text.src.size())
      throw Error(cmd.gold + ": " + std::to_string(gold.size()) + " lines, but " + std::to_string(text.src.size()) +
                  " sentence pairs to align");
  }

  // Teacher forcing on the references: row j of a sentence's weights is the attention that informed
  // target token j (the last row, for </s>, is left out), column i its weight on source token i.
  const auto examples = encode_corpus(text, loaded.codec, loaded.config.data, /*filter=*/false, nullptr);
  std::vector<AlignmentLinks> links(examples.size());
  std::vector<std::vector<std::vector<float>>> attention(cmd.format == "json" ? examples.size() : 0);
  model->eval();
  torch::NoGradGuard no_grad;
  for (const auto& indices : ordered_batches(examples, cmd.batch_size, true)) {
    const auto batch = make_batch(examples, indices).to(device);
    const auto forced = model->forward(batch);
    // [B, T, S]: row j the attention that informed target token j (DecoderImpl::output_attention)
    const auto weights = model->decoder->output_attention(forced).to(torch::kCPU, torch::kFloat32).contiguous();
    const auto w = weights.accessor<float, 3>();
    for (size_t r = 0; r < indices.size(); ++r) {
      const auto& e = examples[static_cast<size_t>(indices[r])];
      const auto source_tokens = e.src.size() - 1;  // without </s>
      std::vector<std::vector<float>> rows(e.tgt.size());
      for (size_t j = 0; j < rows.size(); ++j)
        for (size_t i = 0; i < source_tokens; ++i)
          rows[j].push_back(w[static_cast<int64_t>(r)][static_cast<int64_t>(j)][static_cast<int64_t>(i)]);
      links[static_cast<size_t>(indices[r])] = hard_alignment(rows, source_tokens, e.tgt.size());
      if (!attention.empty()) attention[static_cast<size_t>(indices[r])] = std::move(rows);
    }
  }

  const bool print_links = cmd.gold.empty() || !cmd.output.empty();
  if (print_links) {
    std::ofstream file;
    if (!cmd.output.empty()) {
      file.open(cmd.output);
      if (!file) throw Error(cmd.output + ": cannot open for writing");
    }
    std::ostream& out = cmd.output.empty() ? std::cout : file;
    const auto src_tokens = loaded.codec.src_tokenizer->tokenize_all(text.src);
    const auto tgt_tokens = loaded.codec.tgt_tokenizer->tokenize_all(text.tgt);
    for (size_t k = 0; k < links.size(); ++k) {
      if (cmd.format == "json")
        out << nlohmann::json{{"alignment", to_pharaoh(links[k])}, {"source_tokens", src_tokens[k]},
                              {"target_tokens", tgt_tokens[k]}, {"attention", attention[k]}}
                   .dump()
            << "\n";
      else
        out << to_pharaoh(links[k]) << "\n";
    }
    out.flush();
    if (!out) throw Error((cmd.output.empty() ? std::string("stdout") : cmd.output) + ": write failed");
  }
  if (gold.empty()) return 0;
  AlignmentScore score;
  for (size_t k = 0; k < links.size(); ++k) score.add(links[k], gold[k]);
  int64_t with_offset = 0;
  for (const auto& [offset, count] : score.offsets) with_offset += count;
  if (cmd.json) {
    nlohmann::json offsets = nlohmann::json::object();
    for (const auto& [offset, count] : score.offsets) offsets[std::to_string(offset)] = count;
    std::cout << nlohmann::json{{"model", cmd.checkpoint}, {"gold", cmd.gold}, {"sentences", links.size()},
                                {"aer", score.aer()}, {"precision", score.precision()}, {"recall", score.recall()},
                                {"predicted_links", score.predicted}, {"sure_links", score.sure},
                                {"offsets", offsets}}
                     .dump(1)
              << "\n";
  } else {
    std::cout << std::fixed << std::setprecision(4) << "AER = " << score.aer() << "  precision = " << score.precision()
              << "  recall = " << score.recall() << "  (" << links.size() << " sentences, " << score.predicted
              << " predicted links, " << score.sure << " sure)\n";
    if (with_offset > 0) {
      // Where the attention looks, relative to the true source token: -2 .. +2 and the rest.
      std::cout << "attended source token - true one (" << with_offset << " target tokens with one sure link):";
      int64_t near = 0;
      for (int64_t d = -2; d <= 2; ++d) {
        const auto it = score.offsets.find(d);
        const int64_t n = it == score.offsets.end() ? 0 : it->second;
        near += n;
        std::cout << "  " << (d > 0 ? "+" : "") << d << ": " << std::setprecision(1)
                  << 100.0 * static_cast<double>(n) / static_cast<double>(with_offset) << "%";
      }
      std::cout << "  further: " << 100.0 * static_cast<double>(with_offset - near) / static_cast<double>(with_offset)
                << "%\n";
    }
  }
  return 0;
}

int run_score(const SentenceScoreCommand& cmd) {
  configure_threads(cmd.threads, "score");
  const auto device = resolve_device(cmd.device);
  auto ensemble = load_ensemble(cmd.checkpoints, device, "score");
  std::vector<Seq2Seq> models;
  for (auto& m : ensemble) {
    m.model->eval();
    models.push_back(m.model);
  }
  const auto& codec = ensemble.front().codec;
  const auto text = read_parallel(cmd.src, cmd.tgt);
  const auto examples = encode_corpus(text, codec, ensemble.front().config.data, /*filter=*/false, nullptr);
  const auto log_probs = target_log_probs(models, examples, cmd.batch_size, device);

  std::ofstream file;
  if (!cmd.output.empty()) {
    file.open(cmd.output);
    if (!file) throw Error(cmd.output + ": cannot open for writing");
  }
  std::ostream& out = cmd.output.empty() ? std::cout : file;
  double total = 0;
  int64_t tokens = 0;
  for (size_t k = 0; k < examples.size(); ++k) {
    double sum = 0;
    for (const float lp : log_probs[k]) sum += lp;
    const auto n = static_cast<int64_t>(log_probs[k].size());
    total += sum;
    tokens += n;
    const double score = cmd.normalize ? sum / static_cast<double>(n) : sum;
    if (cmd.format == "json") {
      std::vector<std::string> target_tokens;  // as the model read them: unknown words are <unk>
      for (const auto id : examples[k].tgt) target_tokens.push_back(codec.tgt_vocab.token(id));
      target_tokens.push_back(codec.tgt_vocab.token(Vocabulary::kEos));
      out << nlohmann::json{{"score", score}, {"tokens", n}, {"target_tokens", target_tokens},
                            {"token_log_probs", log_probs[k]}}
                 .dump()
          << "\n";
    } else {
      out << fmt::format("{:.6f}", score) << "\n";
    }
  }
  out.flush();
  if (!out) throw Error((cmd.output.empty() ? std::string("stdout") : cmd.output) + ": write failed");
  spdlog::info("[score] {} sentence pairs, {} target tokens with </s>: log-probability {:.4f}, perplexity {:.4f}",
               examples.size(), tokens, total, std::exp(-total / static_cast<double>(std::max<int64_t>(tokens, 1))));
  return 0;
}

}  // namespace s2s
