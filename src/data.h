// Parallel corpus reading and checking, the text codec (tokenizers + vocabularies), and batching.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "config.h"
#include "tokenizer.h"
#include "vocabulary.h"

namespace s2s {

// Reads a UTF-8 text file line by line (CRLF accepted). Throws s2s::Error naming the file, and for
// invalid UTF-8 the line and byte offset.
std::vector<std::string> read_lines(const std::string& path);

struct ParallelText {
  std::vector<std::string> src, tgt;
};
// Two line-aligned files; throws s2s::Error when the line counts differ (both counts named). With an
// empty tgt_path, src_path is one tab-separated file: source<TAB>target[<TAB>ignored...].
ParallelText read_parallel(const std::string& src_path, const std::string& tgt_path);
ParallelText read_tsv(const std::string& path);  // throws naming file:line for a line without a tab

// Checks that every file the config names for training (train_*, valid_*, spm_model*) is there before
// any is read; throws s2s::Error naming the config key, the path and, for a relative path, the
// directory it was looked for in. require_data_file: one such file (an empty path is not checked).
void require_data_files(const DataConfig& d);
void require_data_file(const std::string& key, const std::string& path);

// Tokenizers and vocabularies of both sides: everything that turns text into ids and back.
struct TextCodec {
  std::shared_ptr<Tokenizer> src_tokenizer, tgt_tokenizer;
  Vocabulary src_vocab, tgt_vocab;

  // Source ids end with </s>; target ids carry no specials.
  std::vector<int64_t> encode_src(const std::string& line) const;
  std::vector<int64_t> encode_tgt(const std::string& line) const;
  std::string decode_tgt(const std::vector<int64_t>& ids) const;

  nlohmann::json to_json() const;
  static TextCodec from_json(const nlohmann::json& j);
  // Builds tokenizers and vocabularies from the training text as the data config says.
  static TextCodec build(const DataConfig& config, const ParallelText& train);
};

struct Example {
  std::vector<int64_t> src;  // ends with </s>
  std::vector<int64_t> tgt;  // no specials
};

struct FilterStats {
  int64_t read = 0, kept = 0, empty = 0, too_long = 0, bad_ratio = 0;
};
// Encodes pairs and drops empty ones, ones longer than max_len and (if max_length_ratio > 0) ones
// whose length ratio exceeds it. `stats` says how many were dropped and why.
std::vector<Example> encode_corpus(const ParallelText& text, const TextCodec& codec, const DataConfig& config,
                                   bool filter, FilterStats* stats);

struct Batch {
  torch::Tensor src;          // [batch, src_len] int64, right-padded with <pad>
  torch::Tensor src_lengths;  // [batch] int64
  torch::Tensor tgt_in;       // [batch, tgt_len] int64: <s> y_1 .. y_t
  torch::Tensor tgt_out;      // [batch, tgt_len] int64: y_1 .. y_t </s>
  int64_t tgt_tokens = 0;     // real (non-pad) tokens in tgt_out
  int64_t padded_tokens = 0;  // src and tgt cells including padding
  int64_t real_tokens = 0;    // src and tgt cells without padding
  std::vector<int64_t> indices;  // which examples, in batch order
  Batch to(const torch::Device& device) const;
};
Batch make_batch(const std::vector<Example>& examples, const std::vector<int64_t>& indices);
// The same batch in a larger shape, so that batches of different lengths share one (CUDA graphs,
// cuda_graph_step.h): sentences right-padded to src_len and tgt_len, and rows - rows() extra sentences
// with an empty source (</s> alone) and an empty target (<pad> only). Padding changes nothing that is
// computed for the real sentences: the encoder keeps its state over padding, attention masks it out, the
// decoder is causal and the loss skips <pad> targets; the extra rows add zero to the loss and gradients.
// tgt_tokens and real_tokens stay those of the real sentences; padded_tokens counts the new shape.
Batch pad_batch(const Batch& batch, int64_t rows, int64_t src_len, int64_t tgt_len);
// Source-only batch (for translation): tgt_* undefined.
Batch make_source_batch(const std::vector<std::vector<int64_t>>& sources);

struct BatchingOptions {
  int64_t batch_size = 64;
  std::string batch_type = "sentences";  // or "tokens": sentences x the longer side's padded length
  uint64_t seed = 1;
};

// Splits a corpus into batches for one epoch, deterministically from (seed, epoch): shuffle, sort by
// length inside pools of 100 batches (bucketing, so little padding), cut batches, shuffle the batches.
// Every example appears exactly once per epoch.
std::vector<std::vector<int64_t>> epoch_batches(const std::vector<Example>& examples, const BatchingOptions& options,
                                                int64_t epoch);
// Batches in corpus order (sorted by length when `sort` is set), for validation and translation.
std::vector<std::vector<int64_t>> ordered_batches(const std::vector<Example>& examples, int64_t batch_size,
                                                  bool sort);

}  // namespace s2s
