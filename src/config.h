// Typed configuration. Every key has an in-class default; one visit() per section lists the keys once,
// and that single list drives JSON reading (unknown keys and wrong types rejected), JSON writing and the
// documentation printed by `s2s config --defaults`.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace s2s {

struct DataConfig {
  std::string train_src, train_tgt, valid_src, valid_tgt, test_src, test_tgt;
  std::string tokenizer = "word";   // "word" (whitespace) | "sentencepiece"
  bool lowercase = false;
  bool split_punctuation = false;    // word tokenizer: split punctuation from words
  int64_t min_freq = 1;              // word vocabulary: drop rarer tokens (they become <unk>)
  int64_t max_size = 0;              // word vocabulary: keep the most frequent N (0 = no limit)
  int64_t vocab_size = 8000;         // sentencepiece vocabulary size
  std::string spm_model_type = "unigram";  // sentencepiece training: "unigram" | "bpe"
  std::string spm_model;             // sentencepiece: an existing .model (source side, or both sides)
  std::string spm_model_tgt;         // sentencepiece: an existing .model for the target side
  bool shared_vocab = false;         // one vocabulary for both sides
  int64_t max_len = 100;             // drop training pairs longer than this (tokens, either side)
  double max_length_ratio = 0.0;     // drop training pairs whose length ratio exceeds this (0 = off)

  template <class V>
  void visit(V& v) {
    v("train_src", train_src, "training source file (one sentence per line)");
    v("train_tgt", train_tgt, "training target file, line-aligned with train_src; empty: train_src is source<TAB>target");
    v("valid_src", valid_src, "validation source file");
    v("valid_tgt", valid_tgt, "validation target file; empty: valid_src is tab-separated");
    v("test_src", test_src, "test source file (used by the demo and `s2s evaluate` defaults)");
    v("test_tgt", test_tgt, "test target file");
    v("tokenizer", tokenizer, "\"word\" (whitespace tokens) or \"sentencepiece\"");
    v("lowercase", lowercase, "lowercase all text before tokenising");
    v("split_punctuation", split_punctuation, "word tokenizer: split punctuation from words");
    v("min_freq", min_freq, "word vocabulary: minimum token count");
    v("max_size", max_size, "word vocabulary: maximum size, 0 = unlimited");
    v("vocab_size", vocab_size, "sentencepiece: pieces per trained model, the four special tokens included (fewer if the text is too small)");
    v("spm_model_type", spm_model_type, "sentencepiece: \"unigram\" or \"bpe\" models are trained from the training text");
    v("spm_model", spm_model, "sentencepiece: an existing .model file to use instead of training; both sides unless spm_model_tgt is set");
    v("spm_model_tgt", spm_model_tgt, "sentencepiece: an existing .model file for the target side (needs spm_model for the source side)");
    v("shared_vocab", shared_vocab, "one vocabulary for source and target (sentencepiece: one model trained on both sides)");
    v("max_len", max_len, "drop training pairs longer than this many tokens on either side");
    v("max_length_ratio", max_length_ratio, "drop training pairs whose length ratio exceeds this; 0 = off");
  }
};

struct ModelConfig {
  std::string cell = "rnn";          // "rnn" (the seed's tanh RNN) | "gru" | "lstm"
  int64_t embedding_size = 128;
  int64_t hidden_size = 256;
  int64_t encoder_layers = 1;
  bool bidirectional = false;
  std::string attention = "bahdanau";  // "bahdanau" | "qkv" | "none"
  int64_t attention_size = 0;        // 0 = hidden_size
  bool qkv_scaled = false;           // qkv: divide K^T q by sqrt(attention_size), as the Transformer does
  double dropout = 0.0;
  std::string output = "state";      // "state": logits from s_j | "deep": from tanh(W[s_j; c_j; x'_j])
  bool tied_embeddings = false;
  std::string init = "uniform";      // "uniform" | "xavier"
  double init_range = 0.1;
  bool orthogonal_recurrent = true;

  template <class V>
  void visit(V& v) {
    v("cell", cell, "\"rnn\" (the seed's s = tanh(A[x; s] + b)), \"gru\" or \"lstm\"");
    v("embedding_size", embedding_size, "source and target embedding size");
    v("hidden_size", hidden_size, "encoder (per direction) and decoder state size");
    v("encoder_layers", encoder_layers, "number of stacked encoder layers");
    v("bidirectional", bidirectional, "bidirectional encoder (Bahdanau et al.)");
    v("attention", attention, "\"bahdanau\" (additive), \"qkv\" (dot product) or \"none\" (plain Seq2Seq)");
    v("attention_size", attention_size, "size of the attention space (W_h, W_s or W_K, W_Q, W_V); 0 = hidden_size");
    v("qkv_scaled", qkv_scaled, "qkv: scores K^T q / sqrt(attention_size) (the Transformer's scaling; the page has none)");
    v("dropout", dropout, "dropout on embeddings, between encoder layers and before the output layer");
    v("output", output, "\"state\": logits from s_j (the page) or \"deep\": from tanh(W [s_j; c_j; x'_j])");
    v("tied_embeddings", tied_embeddings, "share the target embedding with the output layer");
    v("init", init, "parameter initialisation: \"uniform\" (+-init_range) or \"xavier\"");
    v("init_range", init_range, "range of the uniform initialisation");
    v("orthogonal_recurrent", orthogonal_recurrent, "initialise recurrent matrices orthogonally");
  }
};

struct TrainingConfig {
  int64_t batch_size = 64;
  std::string batch_type = "sentences";  // "sentences" | "tokens"
  std::string optimizer = "adam";        // "adam" | "sgd"
  double learning_rate = 1e-3;
  std::string lr_schedule = "constant";  // "constant" | "rsqrt" | "plateau"
  int64_t warmup_steps = 0;
  double lr_decay = 0.5;                 // plateau: factor
  int64_t lr_patience = 2;               // plateau: validations without improvement
  double min_learning_rate = 1e-5;       // plateau: floor
  double momentum = 0.9;                 // sgd
  int64_t max_steps = 0;                 // 0 = no limit (use epochs)
  int64_t epochs = 10;
  double clip_norm = 1.0;                // 0 = no clipping
  double label_smoothing = 0.0;
  double scheduled_sampling = 0.0;       // probability of feeding the model's own previous prediction
  double ema_decay = 0.0;                // moving average of the weights (weight_average.h); 0 = off
  int64_t seed = 1;
  int64_t threads = 0;                   // 0 = all cores
  std::string cpu_parallel = "batch";    // "batch" | "ops": how the CPU threads share a training step
  std::string device = "auto";           // "auto" | "cpu" | "cuda" | "cuda:N"
  int64_t log_every = 100;
  int64_t valid_every = 1000;
  int64_t valid_bleu_sentences = 0;      // 0 = all validation sentences
  int64_t checkpoint_every = 1000;
  int64_t keep_checkpoints = 3;
  int64_t patience = 0;                  // 0 = no early stopping
  std::string best_metric = "bleu";      // "bleu" | "chrf" | "loss": what best.pt, patience and plateau follow
  int64_t accumulate = 1;                // batches per update (per process)
  double dist_timeout = 300;             // seconds: multi-process training gives up on a silent rank
  bool cuda_graphs = false;              // GPU: the training step replayed as CUDA graphs
  int64_t cuda_graph_length_step = 1;    // ... with lengths padded to multiples of this
  bool tf32 = false;                     // GPU: float32 matrix products on TF32 tensor cores

  template <class V>
  void visit(V& v) {
    v("batch_size", batch_size, "sentences per batch, or with batch_type tokens: sentences x padded length of the longer side");
    v("batch_type", batch_type, "\"sentences\" or \"tokens\"");
    v("optimizer", optimizer, "\"adam\" or \"sgd\"");
    v("learning_rate", learning_rate, "learning rate");
    v("lr_schedule", lr_schedule, "\"constant\", \"rsqrt\" (warm-up then inverse square root) or \"plateau\" (reduce when the validation score, training.best_metric, stalls)");
    v("warmup_steps", warmup_steps, "linear warm-up over this many steps (all schedules); 0 = none");
    v("lr_decay", lr_decay, "plateau: multiply the rate by this");
    v("lr_patience", lr_patience, "plateau: after this many validations without improvement");
    v("min_learning_rate", min_learning_rate, "plateau: never below this");
    v("momentum", momentum, "sgd momentum");
    v("max_steps", max_steps, "stop after this many updates; 0 = use epochs");
    v("epochs", epochs, "stop after this many passes over the data");
    v("clip_norm", clip_norm, "clip the gradient norm to this; 0 = off");
    v("label_smoothing", label_smoothing, "label smoothing of the cross-entropy loss");
    v("scheduled_sampling", scheduled_sampling, "scheduled sampling: probability that a decoder input is the model's own previous prediction instead of the reference's (0 = teacher forcing)");
    v("ema_decay", ema_decay, "keep an exponential moving average of the weights, avg = d avg + (1 - d) w after every update with d = min(ema_decay, (1 + step) / (10 + step)); validation, best.pt and translation use the average; 0 = off (e.g. 0.999)");
    v("seed", seed, "random seed (initialisation, shuffling, dropout)");
    v("threads", threads, "LibTorch intra-op threads; 0 = all cores");
    v("cpu_parallel", cpu_parallel, "how the threads share a training step on the CPU: \"batch\" (each thread takes some of the batch's sentences, forward and backward; the gradients are summed) or \"ops\" (LibTorch splits single operations)");
    v("device", device, "\"auto\", \"cpu\", \"cuda\" or \"cuda:N\"");
    v("log_every", log_every, "log training loss every N steps");
    v("valid_every", valid_every, "validate every N steps");
    v("valid_bleu_sentences", valid_bleu_sentences, "translate only the first N validation sentences for BLEU and chrF; 0 = all");
    v("checkpoint_every", checkpoint_every, "write a checkpoint every N steps");
    v("keep_checkpoints", keep_checkpoints, "keep the newest N step-*.pt files");
    v("patience", patience, "stop after N validations without improvement; 0 = never");
    v("best_metric", best_metric, "validation score that picks best.pt and drives patience and the plateau schedule: \"bleu\" or \"chrf\" of greedy translations (higher is better) or \"loss\" (lower is better)");
    v("accumulate", accumulate, "gradient accumulation: batches summed into one update (in each process)");
    v("dist_timeout", dist_timeout, "multi-process training: seconds to wait for the other processes before stopping with an error");
    v("cuda_graphs", cuda_graphs, "on a GPU: record the training step (forward, loss, backward) once per batch shape as a CUDA graph and replay it, instead of launching its hundreds of small kernels one by one (needs a build against a CUDA LibTorch; one batch per update, one process)");
    v("tf32", tf32, "on a GPU with tensor cores (NVIDIA Ampere or later): float32 matrix products multiply in TF32 (10-bit mantissa) and add in float32; faster, but results differ from float32's in about the fourth digit; false keeps LibTorch's default, full float32; no effect on the CPU");
    v("cuda_graph_length_step", cuda_graph_length_step, "with cuda_graphs: batches are padded to lengths that are multiples of this (and to a multiple of 8 sentences), so that batches of nearby lengths share one graph; 1 pads nothing but the sentence count (Multi30k at batch 256: 22 shapes in an epoch, 25 in three)");
  }
};

struct Config {
  DataConfig data;
  ModelConfig model;
  TrainingConfig training;
  std::string output_dir = "runs/default";
};

// Reads a config file; `overrides` are "section.key=value" strings (value parsed as JSON, else taken
// as a string). Throws s2s::Error naming the file and the key for unknown keys, wrong types and
// impossible values. Relative data paths are resolved against the current directory.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// Same, from an already-parsed JSON object; `origin` names it in error messages.
Config config_from_json(const nlohmann::json& j, const std::string& origin);
nlohmann::json config_to_json(const Config& c);
// Checks values (sizes positive, names known); throws s2s::Error naming origin and key.
void validate_config(const Config& c, const std::string& origin);
// The documentation of every key with its default (`s2s config`; a Markdown table for the README).
std::string config_reference(bool markdown = false);

}  // namespace s2s
