// s2s: command-line trainer and translator for the attention model of ../shared/seed/ATTENTION.md.
// Only the command line lives here: each subcommand parses its options and calls one function.
#include <iostream>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "bench.h"
#include "commands.h"
#include "config.h"
#include "error.h"
#include "runtime.h"
#include "trainer.h"
#include "translator.h"
#include "unknown_arguments.h"

namespace {

// CLI11's PositiveNumber and NonNegativeNumber print their range up to the largest double in full
// ("not in range 0.000000 to 179769313486231570814527..."); these say what is wanted in a few words.
CLI::Validator number_above(bool allow_zero) {
  const std::string wanted = allow_zero ? "a number >= 0" : "a number > 0";
  return CLI::Validator(
      [allow_zero, wanted](std::string& value) -> std::string {
        try {
          size_t used = 0;
          const double x = std::stod(value, &used);
          if (used == value.size() && (allow_zero ? x >= 0 : x > 0)) return {};
        } catch (const std::exception&) {
        }
        return "must be " + wanted + ", got " + value;
      },
      allow_zero ? "NONNEGATIVE" : "POSITIVE");
}
const CLI::Validator kPositive = number_above(false), kNonNegative = number_above(true);

void add_search_options(CLI::App* cmd, s2s::TranslatorOptions& o) {
  cmd->add_option("--beam", o.search.beam_size, "beam size; 1 = greedy")->capture_default_str()->check(CLI::Range(1, 1000));
  cmd->add_option("--n-best", o.search.n_best, "hypotheses to output per sentence (<= beam)")
      ->capture_default_str()->check(CLI::Range(1, 1000));
  cmd->add_option("--length-penalty", o.search.length_penalty, "beam score = log-prob / ((5+len)/6)^penalty")
      ->capture_default_str()->check(CLI::Range(0.0, 10.0));
  cmd->add_option("--coverage-penalty", o.search.coverage_penalty,
                  "GNMT's coverage penalty beta: score + beta * sum over source words of log(min(attention they got, 1)); "
                  "0 = off")
      ->capture_default_str()->check(CLI::Range(0.0, 10.0));
  cmd->add_option("--max-length-ratio", o.search.max_length_ratio, "output length limit: ratio * source length + extra")
      ->capture_default_str()->check(kPositive);
  cmd->add_option("--max-length-extra", o.search.max_length_extra, "see --max-length-ratio")
      ->capture_default_str()->check(kNonNegative);
  cmd->add_option("--max-length", o.search.max_length, "hard cap on output tokens")
      ->capture_default_str()->check(kPositive);
  cmd->add_flag("--sampling", o.search.sampling,
                "draw each output token at random from the model's distribution instead of searching (e.g. for "
                "back-translation); --n-best samples per sentence");
  cmd->add_option("--top-k", o.search.top_k, "sampling: draw only among the k most probable tokens; 0 = all")
      ->capture_default_str()->check(kNonNegative);
  cmd->add_option("--temperature", o.search.temperature, "sampling: probabilities proportional to p^(1/temperature)")
      ->capture_default_str()->check(kPositive);
  cmd->add_option("--seed", o.search.seed, "sampling: random seed (with each sentence's line number)")->capture_default_str();
  cmd->add_option("--batch-size", o.batch_size, "sentences translated together")->capture_default_str()->check(CLI::Range(1, 100000));
  cmd->add_flag("--unk-replace", o.unk_replace, "replace <unk> by the source word with the highest attention weight");
}

// One checkpoint per -c; several (-c a.pt -c b.pt) translate as an ensemble. Each -c takes exactly one
// value, so that the sentences after it stay sentences.
void add_checkpoints_option(CLI::App* cmd, std::vector<std::string>& checkpoints, const std::string& verb) {
  cmd->add_option("--checkpoint,-c", checkpoints,
                  "checkpoint file; repeat it (-c a.pt -c b.pt) to " + verb +
                      " with an ensemble of models that share their vocabularies (the mean of their probabilities)")
      ->required()->expected(1)->allow_extra_args(false)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
}

}  // namespace

int main(int argc, char** argv) {
  // Only the commands that multiply matrices pay for the re-execution that picks OpenBLAS kernels.
  if (argc > 1 && (std::string(argv[1]) == "train" || std::string(argv[1]) == "translate" ||
                   std::string(argv[1]) == "evaluate" || std::string(argv[1]) == "align" || std::string(argv[1]) == "score" ||
                   std::string(argv[1]) == "bench"))
    s2s::select_openblas_kernels(argv);
  s2s::tune_allocator();
  s2s::setup_logging();
  CLI::App app{"s2s: attention-based neural machine translation (Simple RNN encoder-decoder with Bahdanau or QKV "
               "attention)"};
  app.set_version_flag("--version", std::string("s2s ") + S2S_VERSION);
  app.require_subcommand(1);

  s2s::TrainOptions train;
  auto* train_cmd = app.add_subcommand("train", "train a model from a JSON config");
  train_cmd->add_option("--config", train.config_path, "JSON config file")->required()->check(CLI::ExistingFile);
  train_cmd->add_option("--set", train.overrides, "override one key: --set training.learning_rate=0.0005 (repeatable)");
  train_cmd->add_option("--resume", train.resume, "continue from a checkpoint file, or \"auto\" for the newest in output_dir");
  train_cmd->add_option("--init-from", train.init_from, "start a new run from a checkpoint's weights (fresh optimiser)")
      ->check(CLI::ExistingFile)->excludes("--resume");
  train_cmd->add_flag("--overwrite", train.overwrite,
                      "start a new run in an output_dir that holds another run's checkpoints, deleting them "
                      "(without it such a run is refused)")
      ->excludes("--resume");

  s2s::TranslateCommand tr;
  auto* tr_cmd = app.add_subcommand("translate", "translate sentences (arguments, --input file or stdin)");
  add_checkpoints_option(tr_cmd, tr.checkpoints, "translate");
  tr_cmd->add_option("sentences", tr.sentences, "sentences to translate; none: read --input or stdin");
  tr_cmd->add_option("--input,-i", tr.input, "input file, one sentence per line")->check(CLI::ExistingFile);
  tr_cmd->add_option("--output,-o", tr.output, "output file (default stdout)");
  tr_cmd->add_option("--format", tr.format, "text or json")->capture_default_str()->check(CLI::IsMember({"text", "json"}));
  tr_cmd->add_option("--attention-svg", tr.attention_svg_dir, "write one SVG attention heat map per sentence into DIR");
  tr_cmd->add_flag("--show-attention", tr.show_attention, "draw the attention weights in the terminal (stderr)");
  tr_cmd->add_flag("--alignment", tr.translator.alignment,
                   "add each output token's most attended source token as Pharaoh links (i-j, 0-based): after \" ||| \" "
                   "in text, as \"alignment\" in JSON");
  tr_cmd->add_option("--device", tr.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  tr_cmd->add_option("--threads", tr.threads, "LibTorch threads; 0 = all cores")->capture_default_str()->check(kNonNegative);
  add_search_options(tr_cmd, tr.translator);

  s2s::EvaluateCommand ev;
  auto* ev_cmd = app.add_subcommand("evaluate", "translate a test set and score it: BLEU, chrF, perplexity, BLEU by length");
  add_checkpoints_option(ev_cmd, ev.checkpoints, "translate");
  ev_cmd->add_option("--src", ev.src, "source file; without --ref, a source<TAB>reference file; without either, the "
                                      "checkpoint's data.test_src and data.test_tgt")->check(CLI::ExistingFile);
  ev_cmd->add_option("--ref", ev.ref, "reference file, line-aligned with --src")->check(CLI::ExistingFile);
  ev_cmd->add_flag("--json", ev.json, "print one JSON object");
  ev_cmd->add_option("--buckets", ev.bucket_bounds, "upper bounds of the source-length buckets")->capture_default_str();
  ev_cmd->add_option("--device", ev.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  ev_cmd->add_option("--threads", ev.threads, "LibTorch threads; 0 = all cores")->capture_default_str()->check(kNonNegative);
  add_search_options(ev_cmd, ev.translator);

  s2s::ScoreCommand bleu, chrf;
  auto* bleu_cmd = app.add_subcommand("bleu", "corpus BLEU of a hypothesis file, as sacreBLEU computes it");
  auto* chrf_cmd = app.add_subcommand("chrf", "corpus chrF of a hypothesis file, as sacreBLEU computes it");
  for (auto [cmd, o] : {std::pair{bleu_cmd, &bleu}, std::pair{chrf_cmd, &chrf}}) {
    cmd->add_option("--hyp", o->hyp, "hypotheses, one per line")->required()->check(CLI::ExistingFile);
    cmd->add_option("--ref", o->ref, "references, line-aligned")->required()->check(CLI::ExistingFile);
    cmd->add_flag("--lowercase", o->lowercase, "case-insensitive");
    cmd->add_flag("--json", o->json, "print JSON");
  }
  bleu_cmd->add_option("--tokenize", bleu.tokenize, "13a, intl or none")->capture_default_str()
      ->check(CLI::IsMember({"13a", "intl", "none"}));

  s2s::AlignCommand al;
  auto* align_cmd = app.add_subcommand("align", "word alignments from the attention, the reference target teacher-forced "
                                                "(Pharaoh i-j lines); with --gold, the alignment error rate");
  align_cmd->add_option("--checkpoint,-c", al.checkpoint, "checkpoint file")->required();
  align_cmd->add_option("--src", al.src, "source file; without --tgt, a source<TAB>target file")->required()
      ->check(CLI::ExistingFile);
  align_cmd->add_option("--tgt", al.tgt, "target file, line-aligned with --src")->check(CLI::ExistingFile);
  align_cmd->add_option("--gold", al.gold, "gold alignments, one line per pair: i-j sure, i?j possible (0-based); "
                                           "prints AER, precision and recall")->check(CLI::ExistingFile);
  align_cmd->add_option("--output,-o", al.output, "write the alignments here (default stdout; with --gold, not written "
                                                  "unless given)");
  align_cmd->add_option("--format", al.format, "pharaoh (i-j links) or json (one object per pair: the links, the "
                                              "tokens and the attention weights, one row per target token)")
      ->capture_default_str()->check(CLI::IsMember({"pharaoh", "json"}));
  align_cmd->add_flag("--json", al.json, "with --gold: print the scores as JSON");
  align_cmd->add_option("--batch-size", al.batch_size, "sentence pairs per batch")->capture_default_str()
      ->check(CLI::Range(1, 100000));
  align_cmd->add_option("--device", al.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  align_cmd->add_option("--threads", al.threads, "LibTorch threads; 0 = all cores")->capture_default_str()
      ->check(kNonNegative);

  s2s::SentenceScoreCommand sc;
  auto* score_cmd = app.add_subcommand("score", "the model's log-probability of given translations, one per line "
                                                "(the reference target teacher-forced), e.g. to rank n-best lists");
  add_checkpoints_option(score_cmd, sc.checkpoints, "score");
  score_cmd->add_option("--src", sc.src, "source file; without --tgt, a source<TAB>target file")->required()
      ->check(CLI::ExistingFile);
  score_cmd->add_option("--tgt", sc.tgt, "target file, line-aligned with --src")->check(CLI::ExistingFile);
  score_cmd->add_option("--output,-o", sc.output, "write the scores here (default stdout)");
  score_cmd->add_flag("--normalize", sc.normalize, "the mean log-probability per target token (</s> counted) instead "
                                                   "of the sum");
  score_cmd->add_option("--format", sc.format, "text (one score per line) or json (one object per pair: score, "
                                              "tokens, target_tokens, token_log_probs)")
      ->capture_default_str()->check(CLI::IsMember({"text", "json"}));
  score_cmd->add_option("--batch-size", sc.batch_size, "sentence pairs per batch")->capture_default_str()
      ->check(CLI::Range(1, 100000));
  score_cmd->add_option("--device", sc.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  score_cmd->add_option("--threads", sc.threads, "LibTorch threads; 0 = all cores")->capture_default_str()
      ->check(kNonNegative);

  std::string info_ckpt;
  bool info_json = false;
  auto* info_cmd = app.add_subcommand("info", "show a checkpoint's config, parameters and training progress");
  info_cmd->add_option("--checkpoint,-c", info_ckpt, "checkpoint file")->required();
  info_cmd->add_flag("--json", info_json, "print JSON");

  std::string release_ckpt, release_out;
  auto* release_cmd = app.add_subcommand("release", "copy a checkpoint without its optimiser state (for translation; "
                                                    "smaller, not resumable)");
  release_cmd->add_option("--checkpoint,-c", release_ckpt, "checkpoint file")->required();
  release_cmd->add_option("--output,-o", release_out, "file to write")->required();

  std::vector<std::string> average_ckpts;
  std::string average_out;
  auto* average_cmd = app.add_subcommand("average", "average the weights of checkpoints of one model (e.g. a run's "
                                                    "last few) into one, for translation");
  average_cmd->add_option("checkpoints", average_ckpts, "checkpoint files (two or more)")->required()
      ->check(CLI::ExistingFile);
  average_cmd->add_option("--output,-o", average_out, "file to write")->required();

  bool config_markdown = false;
  auto* config_cmd = app.add_subcommand("config", "print every config key with its default and meaning");
  config_cmd->add_flag("--markdown", config_markdown, "as a Markdown table");

  s2s::BenchOptions bench;
  auto* bench_cmd = app.add_subcommand("bench", "measure matrix-product rate, training and translation speed (JSON + table)");
  bench_cmd->add_option("--part", bench.part, "all, or one part in this process: ceiling, train or translate")
      ->capture_default_str()->check(CLI::IsMember({"all", "ceiling", "train", "translate"}));
  bench_cmd->add_option("--config", bench.config, "config whose data and model are measured")->capture_default_str();
  bench_cmd->add_option("--checkpoint", bench.checkpoint, "trained model for the translation part (random weights if missing)")
      ->capture_default_str();
  bench_cmd->add_option("--output,-o", bench.output, "JSON file (all: default bench/results-HOST.json; a part: stdout)");
  bench_cmd->add_option("--variants", bench.variants, "training variants cell+attention")->capture_default_str();
  bench_cmd->add_option("--layouts", bench.layouts,
                        "thread layouts LIBTORCH/BLAS[:batch|:ops] for the first variant (cores = all; :batch/:ops "
                        "sets training.cpu_parallel)")
      ->capture_default_str();
  bench_cmd->add_option("--variant", bench.variant, "train part: the variant to measure");
  bench_cmd->add_option("--cpu-parallel", bench.cpu_parallel, "train part: training.cpu_parallel (default: the config's)")
      ->check(CLI::IsMember({"batch", "ops"}));
  bench_cmd->add_option("--profile", bench.profile,
                        "train part: write a Chrome trace (chrome://tracing) of the timed steps' LibTorch operations "
                        "on the main thread; profiled rates are slower");
  bench_cmd->add_option("--attention-step", bench.attention_step,
                        "train and translate parts: fused (one step function; on a GPU a few LibTorch operations) or "
                        "expressions (autograd through LibTorch's tensor expressions), to compare them")
      ->capture_default_str()->check(CLI::IsMember({"fused", "expressions"}));
  bench_cmd->add_option("--cpu-kernels", bench.cpu_kernels,
                        "on, or off: this project's CPU kernels (attention step, packed products, output layer and loss) "
                        "switched off and a bidirectional encoder's directions batched, the route a GPU takes (with "
                        "--count-ops: a GPU's operations counted on the CPU)")
      ->capture_default_str()->check(CLI::IsMember({"on", "off"}));
  bench_cmd->add_option("--optimizer-in-graph", bench.optimizer_in_graph,
                        "train part with training.cuda_graphs: on (the clipping and Adam's update recorded in the "
                        "graphs), or off (run after each replay), to compare them")
      ->capture_default_str()->check(CLI::IsMember({"on", "off"}));
  bench_cmd->add_option("--defer-loss", bench.defer_loss,
                        "train part with training.cuda_graphs: on (each step's loss read after the next step is "
                        "launched, as the trainer does), or off (read at the end of its own step), to compare them")
      ->capture_default_str()->check(CLI::IsMember({"on", "off"}));
  bench_cmd->add_option("--fused-adam", bench.fused_adam,
                        "train part with training.cuda_graphs and the optimizer in the graphs: on (Adam's update as "
                        "one fused kernel, where the build has it: LibTorch >= 2.3, float32 on a GPU), or off (as "
                        "separate operations), to compare them")
      ->capture_default_str()->check(CLI::IsMember({"on", "off"}));
  bench_cmd->add_flag("--count-ops", bench.count_ops,
                      "train part: also count the LibTorch operations of one training step, forward and backward "
                      "(on a GPU, its kernel launches)");
  bench_cmd->add_flag("--kernel-times", bench.kernel_times,
                      "train part on a GPU (a CUDA build): after the timed steps, the GPU time of each kernel over 3 "
                      "more steps, replayed as CUDA graphs (with training.cuda_graphs) and eager, from LibTorch's "
                      "profiler");
  bench_cmd->add_option("--device", bench.device, "cpu, cuda, cuda:N or auto: where every part runs")->capture_default_str();
  bench_cmd->add_option("--set", bench.sets, "config override KEY=VALUE for every part (repeatable), e.g. model.hidden_size=512");
  bench_cmd->add_option("--threads", bench.threads, "one part: LibTorch threads; 0 = all cores")->capture_default_str();
  bench_cmd->add_option("--batch-size", bench.batch_size, "sentences per batch")->capture_default_str()->check(kPositive);
  bench_cmd->add_option("--warmup-steps", bench.warmup_steps, "untimed training steps first")->capture_default_str()
      ->check(kNonNegative);
  bench_cmd->add_option("--interval-steps", bench.interval_steps, "training steps per timed interval")
      ->capture_default_str()->check(kPositive);
  bench_cmd->add_option("--intervals", bench.intervals, "timed intervals (the median is reported)")
      ->capture_default_str()->check(kPositive);
  bench_cmd->add_option("--translate-repeats", bench.translate_repeats, "greedy passes over the test set (beam: one fewer)")
      ->capture_default_str()->check(kPositive);

  try {
    s2s::reject_unknown_arguments(app, argc, argv);
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (*train_cmd) return s2s::train(train);
    if (*tr_cmd) return s2s::run_translate(tr);
    if (*ev_cmd) return s2s::run_evaluate(ev);
    if (*align_cmd) return s2s::run_align(al);
    if (*score_cmd) return s2s::run_score(sc);
    if (*bleu_cmd) return s2s::run_bleu(bleu);
    if (*chrf_cmd) return s2s::run_chrf(chrf);
    if (*bench_cmd) return s2s::run_bench(bench);
    if (*info_cmd) return s2s::run_info(info_ckpt, info_json);
    if (*release_cmd) return s2s::run_release(release_ckpt, release_out);
    if (*average_cmd) return s2s::run_average(average_ckpts, average_out);
    if (*config_cmd) {
      std::cout << s2s::config_reference(config_markdown);
      return 0;
    }
  } catch (const s2s::Error& e) {
    spdlog::error("{}", e.what());
    return 1;
  } catch (const std::invalid_argument& e) {
    spdlog::error("{}", e.what());
    return 1;
  } catch (const c10::Error& e) {
    spdlog::error("internal error: {}", e.what_without_backtrace());
    return 2;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 2;
  }
  return 0;
}
