// Tests of the model (../shared/seed/ATTENTION.md): the encoder, the attention and the decoder against
// the seed's formulas worked out with plain scalar arithmetic, every parameter's gradient against central
// finite differences, the padding and attention invariants, greedy/beam search against a hand-written
// loop, and checkpoints.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "checkpoint.h"
#include "test_util.h"
#include "config.h"
#include "data.h"
#include "error.h"
#include "model.h"
#include "random_examples.h"
#include "search.h"
#include "tokenizer.h"
#include "vocabulary.h"
#include "worker_threads.h"

namespace s2s {
namespace {

namespace fs = std::filesystem;
using Vec = std::vector<double>;

const std::vector<std::string> kCells{"rnn", "gru", "lstm"};
const std::vector<std::string> kAttentions{"bahdanau", "qkv", "none"};

ModelConfig make_config(const std::string& cell, const std::string& attention, int64_t embedding, int64_t hidden,
                        int64_t attention_size) {
  ModelConfig c;
  c.cell = cell;
  c.attention = attention;
  c.embedding_size = embedding;
  c.hidden_size = hidden;
  c.attention_size = attention_size;
  c.dropout = 0.0;
  c.init_range = 0.5;  // larger than the default so that the untrained model is far from linear
  return c;
}

std::string describe(const ModelConfig& c) {
  std::ostringstream s;
  s << "cell=" << c.cell << " attention=" << c.attention << " layers=" << c.encoder_layers
    << " bidirectional=" << c.bidirectional << " output=" << c.output << " tied=" << c.tied_embeddings;
  return s.str();
}

Batch batch_of(const std::vector<Example>& examples) {
  std::vector<int64_t> indices(examples.size());
  std::iota(indices.begin(), indices.end(), 0);
  return make_batch(examples, indices);
}

std::vector<int64_t> with_bos(const std::vector<int64_t>& tgt) {
  std::vector<int64_t> v{Vocabulary::kBos};
  v.insert(v.end(), tgt.begin(), tgt.end());
  return v;
}

// ---------------------------------------------------------------------------------------------
// A scalar reference implementation of the seed's formulas (double, loops, std::tanh, std::exp)
// ---------------------------------------------------------------------------------------------

struct Mat {
  int64_t rows = 0, cols = 0;
  Vec a;  // row-major
  double at(int64_t r, int64_t c) const { return a[static_cast<size_t>(r * cols + c)]; }
  Vec row(int64_t r) const { return Vec(a.begin() + r * cols, a.begin() + (r + 1) * cols); }
};

// The model's parameters copied into plain vectors, by name.
class Params {
 public:
  explicit Params(Seq2Seq& model) {
    for (const auto& p : model->named_parameters()) {
      auto t = p.value().detach().to(torch::kCPU, torch::kFloat64).contiguous();
      Mat m;
      m.rows = t.size(0);
      m.cols = t.dim() == 2 ? t.size(1) : 1;
      m.a.assign(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
      map_[p.key()] = std::move(m);
    }
  }
  bool has(const std::string& name) const { return map_.count(name) > 0; }
  const Mat& mat(const std::string& name) const {
    auto it = map_.find(name);
    if (it == map_.end()) throw std::runtime_error("the model has no parameter " + name);
    return it->second;
  }
  const Vec& vec(const std::string& name) const { return mat(name).a; }

 private:
  std::map<std::string, Mat> map_;
};

Vec zeros(int64_t n) { return Vec(static_cast<size_t>(n), 0.0); }

Vec matvec(const Mat& m, const Vec& x) {
  if (static_cast<size_t>(m.cols) != x.size()) throw std::runtime_error("matvec: size mismatch");
  Vec y = zeros(m.rows);
  for (int64_t r = 0; r < m.rows; ++r)
    for (int64_t c = 0; c < m.cols; ++c) y[static_cast<size_t>(r)] += m.at(r, c) * x[static_cast<size_t>(c)];
  return y;
}

Vec plus(Vec a, const Vec& b) {
  if (a.size() != b.size()) throw std::runtime_error("plus: size mismatch");
  for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
  return a;
}

Vec concat(Vec a, const Vec& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

Vec tanh_of(Vec a) {
  for (auto& x : a) x = std::tanh(x);
  return a;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

struct RefState {
  Vec h, c;  // c: lstm memory
};

// One recurrent update; xp = W_x x + b (+ W_c c) already added up.
RefState ref_cell_step(const std::string& cell, const Params& P, const std::string& prefix, const Vec& xp,
                       const RefState& prev) {
  const Mat& W_hh = P.mat(prefix + "W_hh");
  const size_t H = static_cast<size_t>(W_hh.cols);
  Vec hh = matvec(W_hh, prev.h);
  RefState next{zeros(static_cast<int64_t>(H)), zeros(static_cast<int64_t>(H))};
  if (cell == "rnn") {  // h = tanh(W_x x + W_hh h + b)
    for (size_t i = 0; i < H; ++i) next.h[i] = std::tanh(xp[i] + hh[i]);
  } else if (cell == "gru") {  // PyTorch's GRU: [r z n], r applied to (W_hn h + b_hn)
    hh = plus(hh, P.vec(prefix + "b_hh"));
    for (size_t i = 0; i < H; ++i) {
      const double r = sigmoid(xp[i] + hh[i]);
      const double z = sigmoid(xp[H + i] + hh[H + i]);
      const double n = std::tanh(xp[2 * H + i] + r * hh[2 * H + i]);
      next.h[i] = (1 - z) * n + z * prev.h[i];
    }
  } else {  // PyTorch's LSTM: [i f g o]
    for (size_t i = 0; i < H; ++i) {
      const double in = sigmoid(xp[i] + hh[i]);
      const double f = sigmoid(xp[H + i] + hh[H + i]);
      const double g = std::tanh(xp[2 * H + i] + hh[2 * H + i]);
      const double o = sigmoid(xp[3 * H + i] + hh[3 * H + i]);
      next.c[i] = f * prev.c[i] + in * g;
      next.h[i] = o * std::tanh(next.c[i]);
    }
  }
  return next;
}

struct RefEncoded {
  std::vector<Vec> states;  // h_i, both directions concatenated
  Vec final;                // forward h_m (and backward h_1)
};

RefEncoded ref_encode(const Params& P, const ModelConfig& cfg, const std::vector<int64_t>& src) {
  const Mat& emb = P.mat("encoder.embedding.weight");
  std::vector<Vec> xs;
  for (auto t : src) xs.push_back(emb.row(t));
  const size_t m = xs.size();
  Vec fwd_final, bwd_final;
  for (int64_t l = 0; l < cfg.encoder_layers; ++l) {
    auto run = [&](const std::string& direction, bool reverse) {
      const std::string pre = "encoder.l" + std::to_string(l) + "_" + direction + ".";
      std::vector<Vec> out(m);
      RefState s{zeros(cfg.hidden_size), zeros(cfg.hidden_size)};
      for (size_t k = 0; k < m; ++k) {
        const size_t i = reverse ? m - 1 - k : k;
        s = ref_cell_step(cfg.cell, P, pre + "cell.", plus(matvec(P.mat(pre + "W_x"), xs[i]), P.vec(pre + "b")), s);
        out[i] = s.h;
      }
      return std::make_pair(out, s.h);
    };
    auto fwd = run("fwd", false);
    fwd_final = fwd.second;
    if (cfg.bidirectional) {
      auto bwd = run("bwd", true);
      bwd_final = bwd.second;
      for (size_t i = 0; i < m; ++i) xs[i] = concat(fwd.first[i], bwd.first[i]);
    } else {
      xs = fwd.first;
    }
  }
  return {xs, cfg.bidirectional ? concat(fwd_final, bwd_final) : fwd_final};
}

struct RefAttention {
  Vec context, weights;
};

RefAttention ref_attend(const Params& P, const ModelConfig& cfg, const std::vector<Vec>& hs, const Vec& s) {
  const size_t m = hs.size();
  Vec e(m);
  std::vector<Vec> values(m);
  if (cfg.attention == "bahdanau") {  // e_i = v . tanh(W_h h_i + W_s s), values h_i
    const Vec ws = matvec(P.mat("decoder.attention.W_s"), s);
    const Vec& v = P.vec("decoder.attention.v");
    for (size_t i = 0; i < m; ++i) {
      const Vec wh = matvec(P.mat("decoder.attention.W_h"), hs[i]);
      double sum = 0;
      for (size_t a = 0; a < v.size(); ++a) sum += v[a] * std::tanh(wh[a] + ws[a]);
      e[i] = sum;
      values[i] = hs[i];
    }
  } else {  // qkv: e_i = (W_K h_i) . (W_Q s), values W_V h_i
    const Vec q = matvec(P.mat("decoder.attention.W_Q"), s);
    for (size_t i = 0; i < m; ++i) {
      e[i] = dot(matvec(P.mat("decoder.attention.W_K"), hs[i]), q);
      values[i] = matvec(P.mat("decoder.attention.W_V"), hs[i]);
    }
  }
  RefAttention r;
  const double top = *std::max_element(e.begin(), e.end());
  double z = 0;
  for (size_t i = 0; i < m; ++i) z += std::exp(e[i] - top);
  r.weights.resize(m);
  r.context = zeros(static_cast<int64_t>(values[0].size()));
  for (size_t i = 0; i < m; ++i) {
    r.weights[i] = std::exp(e[i] - top) / z;
    for (size_t k = 0; k < r.context.size(); ++k) r.context[k] += r.weights[i] * values[i][k];
  }
  return r;
}

struct RefDecoded {
  Vec s0;
  RefAttention a0;                          // c_0, alpha_0 from s_0
  std::vector<Vec> states, logits;          // s_j, logits_j for j = 1..t
  std::vector<RefAttention> attentions;     // c_j, alpha_j
};

RefDecoded ref_decode(const Params& P, const ModelConfig& cfg, const RefEncoded& enc,
                      const std::vector<int64_t>& tgt_in) {
  const bool attention = cfg.attention != "none";
  RefDecoded r;
  // s_0 = h_m; a bridge only when the encoder's output is not the decoder's size (bidirectional here).
  r.s0 = cfg.bidirectional
             ? tanh_of(plus(matvec(P.mat("decoder.W_bridge"), enc.final), P.vec("decoder.b_bridge")))
             : enc.final;
  RefState s{r.s0, zeros(cfg.hidden_size)};
  RefAttention a;
  if (attention) a = ref_attend(P, cfg, enc.states, r.s0);
  r.a0 = a;
  const Mat& emb = P.mat("decoder.embedding.weight");
  for (auto token : tgt_in) {
    const Vec x = emb.row(token);  // x'_j: the previous target token
    Vec xp = plus(matvec(P.mat("decoder.W_x"), x), P.vec("decoder.b"));
    if (attention) xp = plus(xp, matvec(P.mat("decoder.W_c"), a.context));  // c_{j-1}
    s = ref_cell_step(cfg.cell, P, "decoder.cell.", xp, s);
    if (attention) a = ref_attend(P, cfg, enc.states, s.h);  // alpha_j computed again from s_j
    Vec out = s.h;
    if (cfg.output == "deep") {
      Vec in = s.h;
      if (attention) in = concat(in, a.context);
      in = concat(in, x);
      out = tanh_of(plus(matvec(P.mat("decoder.W_deep"), in), P.vec("decoder.b_deep")));
    }
    const Mat& W_out = cfg.tied_embeddings ? emb : P.mat("decoder.W_out");
    r.states.push_back(s.h);
    r.attentions.push_back(a);
    r.logits.push_back(plus(matvec(W_out, out), P.vec("decoder.b_out")));
  }
  return r;
}

// Every parameter from one deterministic sequence (in named_parameters order).
void fill_known_values(Seq2Seq& model) {
  torch::NoGradGuard no_grad;
  int64_t n = 0;
  for (auto& p : model->named_parameters()) {
    auto& t = p.value();
    double* d = t.data_ptr<double>();
    for (int64_t k = 0; k < t.numel(); ++k, ++n) d[k] = 0.9 * std::sin(0.7 * static_cast<double>(n) + 0.3);
  }
}

void expect_near(const torch::Tensor& t, const Vec& ref, double tol, const std::string& what) {
  auto c = t.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  ASSERT_EQ(c.numel(), static_cast<int64_t>(ref.size())) << what;
  const double* d = c.data_ptr<double>();
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(d[i], ref[i], tol) << what << "[" << i << "]";
}

// ---------------------------------------------------------------------------------------------
// ModelMath: the seed's formulas by hand
// ---------------------------------------------------------------------------------------------

struct HandCase {
  std::string cell, attention;
  bool bidirectional;
  int64_t layers;
  std::string output;
  bool tied;
};

void check_hand_case(const HandCase& k) {
  ModelConfig cfg = make_config(k.cell, k.attention, /*embedding=*/2, /*hidden=*/3, /*attention=*/2);
  cfg.bidirectional = k.bidirectional;
  cfg.encoder_layers = k.layers;
  cfg.output = k.output;
  cfg.tied_embeddings = k.tied;
  SCOPED_TRACE(describe(cfg));
  Seq2Seq model(cfg, 6, 6);
  model->to(torch::kFloat64);
  fill_known_values(model);
  model->eval();
  const Params P(model);
  const bool attention = cfg.attention != "none";
  // No bridge when the sizes match and the encoder is unidirectional: s_0 = h_m itself.
  EXPECT_EQ(P.has("decoder.W_bridge"), cfg.bidirectional);
  EXPECT_EQ(P.has("decoder.W_c"), attention);

  // Two sentences (source lengths 3 and 2, target lengths 3 and 2 with <s>), so padding is involved.
  const std::vector<Example> ex{{{4, 5, 3}, {4, 5}}, {{5, 3}, {1}}};
  const Batch batch = batch_of(ex);
  torch::NoGradGuard no_grad;
  const auto encoded = model->encode(batch.src, batch.src_lengths);
  auto memory = model->decoder->prepare_memory(encoded);
  auto st0 = model->decoder->init_state(encoded, memory);
  auto in1 = model->decoder->embed(batch.tgt_in.select(1, 0));
  auto st1 = model->decoder->step(in1, st0, memory);
  auto logits1 = model->decoder->output(st1.cell.h, st1.context, in1.embedding);
  auto forced = model->forward(batch);
  EXPECT_EQ(attention, st0.weights.defined());
  EXPECT_EQ(attention, forced.weights.defined());

  constexpr double tol = 1e-12;
  for (size_t b = 0; b < ex.size(); ++b) {
    SCOPED_TRACE("sentence " + std::to_string(b));
    const auto bi = static_cast<int64_t>(b);
    const auto m = static_cast<int64_t>(ex[b].src.size());
    const auto tgt_in = with_bos(ex[b].tgt);
    const RefEncoded re = ref_encode(P, cfg, ex[b].src);
    const RefDecoded rd = ref_decode(P, cfg, re, tgt_in);
    // Encoder: h_i, zero on padding, and the final state.
    for (int64_t i = 0; i < m; ++i) expect_near(encoded.states[bi][i], re.states[static_cast<size_t>(i)], tol, "h_i");
    EXPECT_TRUE(encoded.states[bi].slice(0, m).eq(0).all().item<bool>()) << "encoder states on padding";
    expect_near(encoded.final[bi], re.final, tol, "encoder final");
    // One step through the decoder's own functions: s_0, c_0 and alpha_0, then s_1, c_1, alpha_1, logits.
    expect_near(st0.cell.h[bi], rd.s0, tol, "s_0");
    expect_near(st1.cell.h[bi], rd.states[0], tol, "s_1");
    expect_near(logits1[bi], rd.logits[0], tol, "logits_1");
    if (attention) {
      expect_near(st0.context[bi], rd.a0.context, tol, "c_0");
      expect_near(st0.weights[bi].slice(0, 0, m), rd.a0.weights, tol, "alpha_0");
      expect_near(st1.context[bi], rd.attentions[0].context, tol, "c_1");
      expect_near(st1.weights[bi].slice(0, 0, m), rd.attentions[0].weights, tol, "alpha_1");
    }
    // The teacher-forced pass over the whole target.
    for (size_t j = 0; j < tgt_in.size(); ++j) {
      const auto ji = static_cast<int64_t>(j);
      expect_near(forced.logits[bi][ji], rd.logits[j], tol, "teacher-forced logits_" + std::to_string(j + 1));
      if (attention)
        expect_near(forced.weights[bi][ji].slice(0, 0, m), rd.attentions[j].weights, tol,
                    "teacher-forced alpha_" + std::to_string(j + 1));
    }
  }
}

TEST(ModelMath, SimpleRnnMatchesTheSeedFormulas) {
  for (const auto& attention : kAttentions) check_hand_case({"rnn", attention, false, 1, "state", false});
}

TEST(ModelMath, GruAndLstmCellsMatchPyTorchsGateFormulas) {
  for (const auto& cell : {"gru", "lstm"})
    for (const auto& attention : kAttentions) check_hand_case({cell, attention, false, 1, "state", false});
}

TEST(ModelMath, BidirectionalStackedBridgeAndDeepOutput) {
  check_hand_case({"rnn", "bahdanau", true, 2, "deep", false});
  check_hand_case({"lstm", "qkv", true, 2, "deep", true});
  check_hand_case({"gru", "none", true, 1, "deep", false});
}

// A worked example small enough to check by pen: E = H = 1, one source token, and one decoder step.
TEST(ModelMath, OneDimensionalExampleByPen) {
  ModelConfig cfg = make_config("rnn", "bahdanau", 1, 1, 1);
  Seq2Seq model(cfg, 4, 4);
  model->to(torch::kFloat64);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->named_parameters()) p.value().fill_(0.0);
    model->encoder->embedding->weight[3].fill_(1.0);  // x_1 = 1 (</s>)
    model->encoder->named_parameters()["l0_fwd.W_x"].fill_(0.5);
    model->encoder->named_parameters()["l0_fwd.b"].fill_(0.25);
    model->decoder->embedding->weight[2].fill_(2.0);  // x'_1 = 2 (<s>)
    model->decoder->W_x.fill_(0.3);
    model->decoder->W_c.fill_(-0.4);
    model->decoder->b.fill_(0.1);
    model->decoder->cell->W_hh.fill_(0.2);
    model->decoder->W_out.copy_(torch::tensor({{1.0}, {-1.0}, {2.0}, {0.5}}, torch::kFloat64));
    model->decoder->b_out.copy_(torch::tensor({0.0, 0.1, 0.2, 0.3}, torch::kFloat64));
  }
  const std::vector<Example> ex{{{3}, {}}};
  auto out = model->forward(batch_of(ex));
  const double h1 = std::tanh(0.5 * 1 + 0.25);              // s_0 = h_1
  const double c0 = h1;                                      // one source position: alpha = 1
  const double s1 = std::tanh(0.3 * 2 + 0.2 * h1 - 0.4 * c0 + 0.1);
  const Vec logits{s1, -s1 + 0.1, 2 * s1 + 0.2, 0.5 * s1 + 0.3};
  expect_near(out.logits[0][0], logits, 1e-14, "logits");
  expect_near(out.weights[0][0], {1.0}, 0.0, "alpha");
}

// ---------------------------------------------------------------------------------------------
// ModelGradients: autograd against central finite differences, every parameter
// ---------------------------------------------------------------------------------------------

void check_gradients(ModelConfig cfg, uint64_t seed) {
  cfg.init_range = 1.0;  // far from linear, and attention that depends on the decoder state
  SCOPED_TRACE(describe(cfg));
  torch::manual_seed(seed);
  Seq2Seq model(cfg, 9, 10);
  model->to(torch::kFloat64);
  model->train();  // dropout is 0: training mode must compute the same function
  // Different source and target lengths, so both sides have padding.
  const std::vector<Example> ex{{{4, 5, 6, 7, 3}, {4, 5, 6}}, {{8, 3}, {9}}};
  const Batch batch = batch_of(ex);
  auto loss_of = [&] { return sequence_loss(model->forward(batch).logits, batch.tgt_out, 0.0).loss; };
  model->zero_grad();
  loss_of().backward();

  constexpr double eps = 1e-5;
  constexpr size_t kMaxEntries = 16;
  std::mt19937 rng(static_cast<std::mt19937::result_type>(seed));
  torch::NoGradGuard no_grad;
  int64_t checked = 0;
  for (auto& p : model->named_parameters()) {
    SCOPED_TRACE(p.key());
    auto& t = p.value();
    ASSERT_TRUE(t.grad().defined()) << "no gradient for " << p.key();
    const auto grad = t.grad().contiguous();
    // Every parameter must influence the loss (an unused W_c or b_hh would pass the comparison below).
    EXPECT_GT(grad.abs().max().item<double>(), 1e-8) << "the loss does not depend on " << p.key();
    std::vector<int64_t> entries(static_cast<size_t>(t.numel()));
    std::iota(entries.begin(), entries.end(), 0);
    std::shuffle(entries.begin(), entries.end(), rng);
    if (entries.size() > kMaxEntries) entries.resize(kMaxEntries);
    double* d = t.data_ptr<double>();
    const double* g = grad.data_ptr<double>();
    for (auto k : entries) {
      const double original = d[k];
      d[k] = original + eps;
      const double up = loss_of().item<double>();
      d[k] = original - eps;
      const double down = loss_of().item<double>();
      d[k] = original;
      const double fd = (up - down) / (2 * eps);
      // eps = 1e-5 in double: the finite difference is good to ~1e-9 relative (truncation) and ~3e-11
      // absolute (rounding), so a relative 1e-6 plus a 1e-10 floor for the tiny gradients is strict.
      EXPECT_LE(std::abs(g[k] - fd), 1e-6 * std::max(std::abs(g[k]), std::abs(fd)) + 1e-10)
          << p.key() << "[" << k << "]: autograd " << g[k] << ", finite difference " << fd;
      ++checked;
    }
  }
  EXPECT_GT(checked, 50);
}

void check_gradients_for_cell(const std::string& cell) {
  uint64_t seed = 100;
  for (const auto& attention : kAttentions) check_gradients(make_config(cell, attention, 3, 4, 3), ++seed);
}

TEST(ModelGradients, Rnn) { check_gradients_for_cell("rnn"); }
TEST(ModelGradients, Gru) { check_gradients_for_cell("gru"); }
TEST(ModelGradients, Lstm) { check_gradients_for_cell("lstm"); }

TEST(ModelGradients, BidirectionalStackedDeepOutput) {
  auto cfg = make_config("lstm", "bahdanau", 3, 4, 3);
  cfg.bidirectional = true;
  cfg.encoder_layers = 2;
  cfg.output = "deep";
  check_gradients(cfg, 201);
  cfg = make_config("gru", "qkv", 3, 4, 3);
  cfg.bidirectional = true;
  cfg.encoder_layers = 2;
  cfg.output = "deep";
  cfg.tied_embeddings = true;
  check_gradients(cfg, 202);
  cfg = make_config("rnn", "none", 3, 4, 3);
  cfg.bidirectional = true;
  cfg.encoder_layers = 2;
  check_gradients(cfg, 203);
}

// ---------------------------------------------------------------------------------------------
// ModelInvariants: attention is a distribution over the real tokens; padding does not leak
// ---------------------------------------------------------------------------------------------

bool close_to(const torch::Tensor& a, const torch::Tensor& b, double tol) {
  return a.sizes() == b.sizes() && (a - b).abs().max().item<double>() <= tol;
}

// Every attention with a one-direction encoder, and bahdanau with a bidirectional one.
std::vector<std::pair<std::string, bool>> invariant_configs() {
  std::vector<std::pair<std::string, bool>> out;
  for (const auto& attention : kAttentions) out.emplace_back(attention, false);
  out.emplace_back("bahdanau", true);
  return out;
}

TEST(ModelInvariants, AttentionWeightsAndPaddingForEveryCellAndAttention) {
  // s1 alone, and s1 in the middle of a batch with a longer and a medium sentence.
  const Example s1{{4, 5, 3}, {6, 7}}, s2{{6, 7, 8, 9, 10, 11, 3}, {4, 5, 6, 7, 8}}, s3{{9, 4, 8, 3}, {9, 10, 11}};
  const std::vector<Example> mixed_ex{s2, s1, s3};
  const Batch alone = batch_of({s1}), mixed = batch_of(mixed_ex);
  for (const auto& cell : kCells) {
    for (const auto& [attention, bidirectional] : invariant_configs()) {
      auto cfg = make_config(cell, attention, 4, 5, 3);
      cfg.bidirectional = bidirectional;  // the backward direction reads each sentence from its own end
      SCOPED_TRACE(describe(cfg));
      torch::manual_seed(11);
      Seq2Seq model(cfg, 12, 12);
      model->eval();
      torch::NoGradGuard no_grad;
      const auto a = model->forward(alone), b = model->forward(mixed);
      const int64_t m1 = 3, t1 = 3;  // t: decoder states = target tokens + </s>
      ASSERT_EQ(a.logits.sizes(), (std::vector<int64_t>{1, t1, 12}));
      EXPECT_TRUE(close_to(a.logits[0], b.logits[1].slice(0, 0, t1), 1e-5)) << "logits depend on the batch";
      const auto ea = model->encode(alone.src, alone.src_lengths), eb = model->encode(mixed.src, mixed.src_lengths);
      EXPECT_TRUE(close_to(ea.final[0], eb.final[1], 1e-5)) << "final encoder state depends on the batch";
      EXPECT_TRUE(close_to(ea.states[0], eb.states[1].slice(0, 0, m1), 1e-5)) << "encoder states depend on the batch";
      for (size_t k = 0; k < mixed_ex.size(); ++k) {
        const auto m = static_cast<int64_t>(mixed_ex[k].src.size());
        EXPECT_TRUE(eb.states[static_cast<int64_t>(k)].slice(0, m).eq(0).all().item<bool>());
      }
      if (attention == "none") {
        EXPECT_FALSE(a.weights.defined());
        continue;
      }
      // One weight per (target state, source token): m * t of them, shape [t, m] for a sentence alone.
      ASSERT_EQ(a.weights.sizes(), (std::vector<int64_t>{1, t1, m1}));
      EXPECT_TRUE(close_to(a.weights[0], b.weights[1].slice(0, 0, t1).slice(1, 0, m1), 1e-5))
          << "attention depends on the batch";
      ASSERT_EQ(b.weights.sizes(), (std::vector<int64_t>{3, 6, 7}));
      for (size_t k = 0; k < mixed_ex.size(); ++k) {
        SCOPED_TRACE("sentence " + std::to_string(k));
        const auto bi = static_cast<int64_t>(k);
        const auto m = static_cast<int64_t>(mixed_ex[k].src.size());
        const auto t = static_cast<int64_t>(mixed_ex[k].tgt.size()) + 1;
        const auto w = b.weights[bi];               // [T, S]
        const auto real = w.slice(0, 0, t).slice(1, 0, m);
        EXPECT_TRUE(close_to(real.sum(1), torch::ones({t}), 1e-5)) << "weights do not sum to 1";
        EXPECT_TRUE(real.gt(0).all().item<bool>());
        EXPECT_TRUE(w.slice(1, m).eq(0).all().item<bool>()) << "padding gets weight";
        EXPECT_EQ(w.slice(0, 0, t).ne(0).sum().item<int64_t>(), m * t);
      }
      // For s_2 the alphas are computed again: the rows differ.
      EXPECT_FALSE(close_to(a.weights[0][0], a.weights[0][1], 1e-6));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// ModelSearch
// ---------------------------------------------------------------------------------------------

const std::vector<std::vector<int64_t>> kSources{{4, 5, 6, 3},   {7, 3},        {8, 9, 10, 11, 4, 3},
                                                 {5, 5, 3},      {11, 10, 9, 8, 7, 6, 5, 3}, {6, 3}};

Seq2Seq search_model(const std::string& cell, const std::string& attention, uint64_t seed) {
  torch::manual_seed(seed);
  Seq2Seq model(make_config(cell, attention, 6, 8, 5), 12, 12);
  torch::NoGradGuard no_grad;
  model->decoder->b_out[Vocabulary::kEos].fill_(-1.0);  // longer outputs than an untrained model would give
  // Sharper attention that depends strongly on the decoder state (an untrained model's barely does).
  for (auto& p : model->decoder->named_parameters())
    if (p.key().rfind("attention.", 0) == 0) p.value().mul_(4.0);
  return model;
}

const std::vector<std::pair<std::string, std::string>> kSearchConfigs{
    {"rnn", "bahdanau"}, {"gru", "qkv"}, {"lstm", "none"}, {"lstm", "bahdanau"}};

struct GreedyResult {
  std::vector<int64_t> tokens;
  double log_prob = 0;
  std::vector<torch::Tensor> weights;
};

// Greedy decoding written out with the decoder's embed / step / output.
GreedyResult greedy_loop(Seq2Seq& model, const std::vector<int64_t>& src, const SearchOptions& o) {
  torch::NoGradGuard no_grad;
  model->eval();
  const Batch b = make_source_batch({src});
  auto& decoder = model->decoder;
  const auto encoded = model->encode(b.src, b.src_lengths);
  const auto memory = decoder->prepare_memory(encoded);
  auto state = decoder->init_state(encoded, memory);
  const int64_t max_len = std::max<int64_t>(
      1, static_cast<int64_t>(o.max_length_ratio * static_cast<double>(src.size())) + o.max_length_extra);
  GreedyResult r;
  int64_t prev = Vocabulary::kBos;
  for (int64_t t = 0; t < max_len; ++t) {
    auto input = decoder->embed(torch::tensor({prev}, torch::kInt64));
    const auto before = state.weights;  // alpha_{t-1}
    state = decoder->step(input, state, memory);
    auto logp = torch::log_softmax(decoder->output(state.cell.h, state.context, input.embedding), -1)[0];
    const int64_t token = logp.argmax().item<int64_t>();
    r.log_prob += logp[token].item<double>();
    // The attention that informed this output: alpha_{t-1} ("state" output), alpha_t ("deep").
    const auto& informed = decoder->output_reads_step_attention() ? state.weights : before;
    if (informed.defined()) r.weights.push_back(informed[0].clone());
    if (token == Vocabulary::kEos) break;
    r.tokens.push_back(token);
    prev = token;
  }
  return r;
}

TEST(ModelSearch, GreedyIsTheArgmaxLoop) {
  int64_t total_tokens = 0;
  for (const auto& [cell, attention] : kSearchConfigs) {
    SCOPED_TRACE(cell + " " + attention);
    auto model = search_model(cell, attention, 5);
    SearchOptions o;
    o.beam_size = 1;
    o.length_penalty = 0.0;  // score = sum of log-probabilities
    model->train();
    const auto results = search(model, make_source_batch(kSources), o);
    EXPECT_TRUE(model->is_training()) << "search must restore the training mode";
    ASSERT_EQ(results.size(), kSources.size());
    for (size_t s = 0; s < kSources.size(); ++s) {
      SCOPED_TRACE("sentence " + std::to_string(s));
      const auto expected = greedy_loop(model, kSources[s], o);
      ASSERT_EQ(results[s].size(), 1u);
      const auto& h = results[s][0];
      EXPECT_EQ(h.tokens, expected.tokens);
      EXPECT_NEAR(h.score, expected.log_prob, 1e-4);
      total_tokens += static_cast<int64_t>(h.tokens.size());
      if (attention == "none") {
        EXPECT_TRUE(h.attention.empty());
        continue;
      }
      ASSERT_EQ(h.attention.size(), expected.weights.size());
      for (size_t j = 0; j < h.attention.size(); ++j) {
        ASSERT_EQ(h.attention[j].size(), kSources[s].size());
        for (size_t i = 0; i < kSources[s].size(); ++i)
          EXPECT_NEAR(h.attention[j][i], expected.weights[j][static_cast<int64_t>(i)].item<double>(), 1e-5);
      }
    }
  }
  EXPECT_GT(total_tokens, 20) << "the test model should produce more than empty translations";
}

// Scheduled sampling with ratio 1 feeds the model its own most probable previous token at every
// position: in eval mode (no dropout) that is exactly greedy decoding, whatever the reference says.
TEST(ModelScheduledSampling, RatioOneIsGreedyDecodingAndRatioZeroIsTeacherForcing) {
  for (const auto& [cell, attention] : kSearchConfigs) {
    SCOPED_TRACE(cell + " " + attention);
    auto model = search_model(cell, attention, 5);
    model->eval();
    torch::NoGradGuard no_grad;
    std::vector<Example> examples;
    for (size_t s = 0; s < kSources.size(); ++s) examples.push_back({kSources[s], {4, 9, 4, 9, 4, 9, 4, 9, 4, 9}});
    const Batch batch = batch_of(examples);
    const auto own = model->forward(batch, 1.0).logits.argmax(-1);  // [B, T]
    SearchOptions o;
    o.max_length_ratio = 10;
    int64_t compared = 0, differs_from_reference = 0;
    for (size_t s = 0; s < kSources.size(); ++s) {
      const auto greedy = greedy_loop(model, kSources[s], o);
      auto expected = greedy.tokens;
      expected.push_back(Vocabulary::kEos);
      for (size_t j = 0; j < std::min<size_t>(expected.size(), 11); ++j) {
        EXPECT_EQ(own[s][j].item<int64_t>(), expected[j]) << "sentence " << s << " position " << j;
        ++compared;
        differs_from_reference += j > 0 && j < 11 && expected[j - 1] != (j % 2 ? 4 : 9);
      }
    }
    EXPECT_GT(compared, 20);
    EXPECT_GT(differs_from_reference, 5) << "the greedy inputs should differ from the reference inputs";
    // Ratio 0 is teacher forcing, the default.
    EXPECT_TRUE(torch::equal(model->forward(batch, 0.0).logits, model->forward(batch).logits));
    // Ratio 0.5: the first position is always the reference's <s>; later ones change; seeded draws.
    torch::manual_seed(11);
    const auto half = model->forward(batch, 0.5).logits;
    const auto forced = model->forward(batch).logits;
    EXPECT_TRUE(torch::allclose(half.select(1, 0), forced.select(1, 0)));
    EXPECT_FALSE(torch::allclose(half, forced));
    torch::manual_seed(11);
    EXPECT_TRUE(torch::equal(model->forward(batch, 0.5).logits, half));
  }
}

TEST(ModelSearch, ResultsDoNotDependOnTheBatchSize) {
  for (const auto& [cell, attention] : kSearchConfigs) {
    auto model = search_model(cell, attention, 6);
    for (int64_t beam : {1, 3}) {
      SCOPED_TRACE(cell + " " + attention + " beam " + std::to_string(beam));
      SearchOptions o;
      o.beam_size = beam;
      o.n_best = beam;
      const auto together = search(model, make_source_batch(kSources), o);
      ASSERT_EQ(together.size(), kSources.size());
      for (size_t s = 0; s < kSources.size(); ++s) {
        const auto alone = search(model, make_source_batch({kSources[s]}), o);
        ASSERT_EQ(alone.size(), 1u);
        ASSERT_EQ(alone[0].size(), together[s].size()) << "sentence " << s;
        for (size_t n = 0; n < alone[0].size(); ++n) {
          EXPECT_EQ(alone[0][n].tokens, together[s][n].tokens) << "sentence " << s << " hypothesis " << n;
          EXPECT_NEAR(alone[0][n].score, together[s][n].score, 1e-4) << "sentence " << s << " hypothesis " << n;
        }
      }
    }
  }
}

struct Forced {
  double log_prob = 0;
  int64_t steps = 0;
  torch::Tensor weights;  // [steps, m]
};

// The teacher-forced model's view of a hypothesis: its log-probability (with </s> when it has one).
Forced teacher_force(Seq2Seq& model, const std::vector<int64_t>& src, const std::vector<int64_t>& tokens,
                     bool ends_with_eos) {
  torch::NoGradGuard no_grad;
  model->eval();
  const Batch b = batch_of({{src, tokens}});
  const auto out = model->forward(b);
  const auto logp = torch::log_softmax(out.logits[0], -1);  // [t + 1, V]
  Forced f;
  f.steps = static_cast<int64_t>(tokens.size()) + (ends_with_eos ? 1 : 0);
  for (int64_t j = 0; j < f.steps; ++j) f.log_prob += logp[j][b.tgt_out[0][j].item<int64_t>()].item<double>();
  if (out.weights.defined()) f.weights = model->decoder->output_attention(out)[0].slice(0, 0, f.steps);
  return f;
}

TEST(ModelSearch, NBestIsSortedDistinctAndScoredAsTheModelScoresIt) {
  for (const auto& [cell, attention] : kSearchConfigs) {
    auto model = search_model(cell, attention, 7);
    for (double penalty : {0.0, 1.0}) {
      SCOPED_TRACE(cell + " " + attention + " length_penalty " + std::to_string(penalty));
      SearchOptions o;
      o.beam_size = 4;
      o.n_best = 4;
      o.length_penalty = penalty;
      const auto results = search(model, make_source_batch(kSources), o);
      ASSERT_EQ(results.size(), kSources.size());
      for (size_t s = 0; s < kSources.size(); ++s) {
        SCOPED_TRACE("sentence " + std::to_string(s));
        const auto& hyps = results[s];
        ASSERT_EQ(hyps.size(), 4u);
        const int64_t max_len = static_cast<int64_t>(o.max_length_ratio * static_cast<double>(kSources[s].size())) +
                                o.max_length_extra;
        for (size_t n = 0; n < hyps.size(); ++n) {
          if (n > 0) {
            EXPECT_GE(hyps[n - 1].score, hyps[n].score) << "n-best not sorted";
          }
          for (size_t k = 0; k < n; ++k) EXPECT_NE(hyps[k].tokens, hyps[n].tokens) << "duplicate hypotheses";
          const auto len = static_cast<int64_t>(hyps[n].tokens.size());
          ASSERT_LE(len, max_len);
          const auto f = teacher_force(model, kSources[s], hyps[n].tokens, len < max_len);
          const double expected =
              penalty == 0 ? f.log_prob
                           : f.log_prob / std::pow((5.0 + static_cast<double>(f.steps)) / 6.0, penalty);
          EXPECT_NEAR(hyps[n].score, expected, 1e-4 * std::max(1.0, std::abs(expected))) << "hypothesis " << n;
        }
      }
    }
  }
}

// The attention rows a beam hypothesis reports are the weights of its own decoder states. (The weights a
// search step computes are in the previous step's slot order, so a hypothesis must read the row of its
// parent slot, not of its own new slot; greedy search cannot tell the two apart, beam search can.)
TEST(ModelSearch, BeamHypothesisAttentionIsItsOwnAttention) {
  for (const auto& [cell, attention] : kSearchConfigs) {
    if (attention == "none") continue;
    SCOPED_TRACE(cell + " " + attention);
    auto model = search_model(cell, attention, 8);
    SearchOptions o;
    o.beam_size = 3;
    o.n_best = 3;
    const auto results = search(model, make_source_batch(kSources), o);
    for (size_t s = 0; s < kSources.size(); ++s) {
      const auto m = kSources[s].size();
      const int64_t max_len =
          static_cast<int64_t>(o.max_length_ratio * static_cast<double>(m)) + o.max_length_extra;
      for (size_t n = 0; n < results[s].size(); ++n) {
        const auto& h = results[s][n];
        const auto f = teacher_force(model, kSources[s], h.tokens, static_cast<int64_t>(h.tokens.size()) < max_len);
        ASSERT_EQ(static_cast<int64_t>(h.attention.size()), f.steps);
        double worst = 0;
        for (size_t j = 0; j < h.attention.size(); ++j) {
          ASSERT_EQ(h.attention[j].size(), m);
          for (size_t i = 0; i < m; ++i)
            worst = std::max(worst, std::abs(h.attention[j][i] -
                                             f.weights[static_cast<int64_t>(j)][static_cast<int64_t>(i)].item<double>()));
        }
        EXPECT_LT(worst, 1e-5) << "sentence " << s << " hypothesis " << n;
      }
    }
  }
}

// The attention row a hypothesis reports for output y_j is the one whose context vector y_j's logits
// were computed from: with output "state", y_j = W_out s_j and the only context in s_j is c_{j-1}; with
// "deep", the output layer reads c_j itself. Checked on the decoder's own contexts: the reported row times
// the attention's values is that context, and not the other one.
TEST(ModelSearch, ReportedAttentionIsTheOneWhoseContextMadeTheOutput) {
  for (const std::string output : {"state", "deep"}) {
    for (const auto& [cell, attention] : std::vector<std::pair<std::string, std::string>>{{"rnn", "bahdanau"}, {"gru", "qkv"}}) {
      SCOPED_TRACE(cell + " " + attention + " output " + output);
      torch::manual_seed(31);
      auto config = make_config(cell, attention, 6, 8, 5);
      config.output = output;
      Seq2Seq model(config, 12, 12);
      model->eval();
      torch::NoGradGuard no_grad;
      for (auto& p : model->decoder->named_parameters())  // sharp, state-dependent attention (as search_model)
        if (p.key().rfind("attention.", 0) == 0) p.value().mul_(4.0);
      SearchOptions o;
      o.max_length_ratio = 1.5;
      const auto results = search(model, make_source_batch(kSources), o);
      int64_t rows = 0, distinguished = 0;
      for (size_t s = 0; s < kSources.size(); ++s) {
        // The decoder's contexts along the hypothesis: c_{j-1} before step j, c_j after it.
        const Batch b = make_source_batch({kSources[s]});
        auto& decoder = model->decoder;
        const auto memory = decoder->prepare_memory(model->encode(b.src, b.src_lengths));
        auto state = decoder->init_state(model->encode(b.src, b.src_lengths), memory);
        const auto& h = results[s].at(0);
        auto tokens = h.tokens;
        tokens.push_back(Vocabulary::kEos);
        int64_t prev = Vocabulary::kBos;
        for (size_t j = 0; j < h.attention.size(); ++j) {
          const auto before = state.context[0];
          state = decoder->step(decoder->embed(torch::tensor({prev}, torch::kInt64)), state, memory);
          const auto after = state.context[0];
          const auto row = torch::tensor(h.attention[j]);                       // [m]
          const auto made = torch::matmul(row, memory.values[0].slice(0, 0, row.size(0)));  // [C]
          const auto& used = output == "state" ? before : after;
          const auto& other = output == "state" ? after : before;
          EXPECT_LT((made - used).abs().max().item<double>(), 1e-5) << "sentence " << s << " row " << j;
          distinguished += (made - other).abs().max().item<double>() > 1e-3;
          ++rows;
          prev = tokens[j];
        }
      }
      EXPECT_GT(rows, 10);
      EXPECT_GT(distinguished, rows / 2) << "the two contexts are too alike to tell which row was reported";
    }
  }
}

// What each model of an ensemble, teacher-forced on a hypothesis, says at every step: log-probabilities
// [steps, V] (steps = tokens, + 1 with </s>) and attention [steps, m] (undefined without attention).
struct ForcedSteps {
  torch::Tensor log_probs, weights;
  std::vector<int64_t> targets;  // the tokens, then </s> when the hypothesis has one
};
ForcedSteps forced_steps(Seq2Seq& model, const std::vector<int64_t>& src, const std::vector<int64_t>& tokens,
                         bool ends_with_eos) {
  torch::NoGradGuard no_grad;
  model->eval();
  const auto out = model->forward(batch_of({{src, tokens}}));
  ForcedSteps f;
  f.targets = tokens;
  if (ends_with_eos) f.targets.push_back(Vocabulary::kEos);
  const auto steps = static_cast<int64_t>(f.targets.size());
  f.log_probs = torch::log_softmax(out.logits[0].to(torch::kFloat64), -1).slice(0, 0, steps);
  if (out.weights.defined()) f.weights = model->decoder->output_attention(out)[0].slice(0, 0, steps).to(torch::kFloat64);
  return f;
}

// An ensemble's hypotheses, checked against each model's own teacher-forced view of them: the score is
// the sum of the logs of the mean of the models' probabilities; greedy picks the token with the highest
// mean probability at every step; the attention is the mean of the attention models' weights.
TEST(ModelSearch, EnsembleFollowsTheMeanOfTheModelsProbabilities) {
  std::vector<Seq2Seq> models{search_model("rnn", "bahdanau", 21), search_model("gru", "qkv", 22),
                              search_model("lstm", "none", 23)};
  int64_t greedy_steps = 0, disagreements = 0;
  for (int64_t beam : {1, 3}) {
    SCOPED_TRACE("beam " + std::to_string(beam));
    SearchOptions o;
    o.beam_size = beam;
    o.n_best = beam;
    o.length_penalty = 0.0;  // score = sum of log-probabilities
    const auto results = search(models, make_source_batch(kSources), o);
    ASSERT_EQ(results.size(), kSources.size());
    for (size_t s = 0; s < kSources.size(); ++s) {
      SCOPED_TRACE("sentence " + std::to_string(s));
      ASSERT_EQ(results[s].size(), static_cast<size_t>(beam));
      const int64_t max_len = static_cast<int64_t>(o.max_length_ratio * static_cast<double>(kSources[s].size())) +
                              o.max_length_extra;
      for (const auto& h : results[s]) {
        const bool eos = static_cast<int64_t>(h.tokens.size()) < max_len;
        std::vector<ForcedSteps> views;
        for (auto& model : models) views.push_back(forced_steps(model, kSources[s], h.tokens, eos));
        const auto steps = static_cast<int64_t>(views[0].targets.size());
        // log mean_m p_m, in float64 from the models' own distributions
        auto mean_probs = (views[0].log_probs.exp() + views[1].log_probs.exp() + views[2].log_probs.exp()) / 3;
        double expected = 0;
        for (int64_t j = 0; j < steps; ++j) {
          const auto y = views[0].targets[static_cast<size_t>(j)];
          expected += std::log(mean_probs[j][y].item<double>());
          if (beam == 1) {
            EXPECT_EQ(mean_probs[j].argmax().item<int64_t>(), y) << "step " << j;
            ++greedy_steps;
            // The ensemble's choice is not simply one model's: count the steps where some model prefers another.
            for (const auto& v : views) disagreements += v.log_probs[j].argmax().item<int64_t>() != y;
          }
        }
        EXPECT_NEAR(h.score, expected, 1e-4 * std::max(1.0, std::abs(expected)));
        // Attention: the mean of the two attention models' rows (the lstm has none).
        ASSERT_EQ(static_cast<int64_t>(h.attention.size()), steps);
        const auto mean_weights = (views[0].weights + views[1].weights) / 2;
        double worst = 0;
        for (int64_t j = 0; j < steps; ++j)
          for (size_t i = 0; i < kSources[s].size(); ++i)
            worst = std::max(worst, std::abs(h.attention[static_cast<size_t>(j)][i] -
                                             mean_weights[j][static_cast<int64_t>(i)].item<double>()));
        EXPECT_LT(worst, 1e-5);
      }
    }
  }
  EXPECT_GT(greedy_steps, 20);
  EXPECT_GT(disagreements, 0) << "the models always agree: the test cannot tell an ensemble from one model";
}

// An ensemble of one model, or of a model with itself, translates as that model does; the perplexity of
// an ensemble is the mean of the models' probabilities, token by token.
TEST(ModelSearch, EnsembleOfOneModelOrTwoCopiesIsThatModel) {
  auto model = search_model("gru", "bahdanau", 24);
  std::vector<Seq2Seq> copies{model, model};
  for (int64_t beam : {1, 4}) {
    SCOPED_TRACE("beam " + std::to_string(beam));
    SearchOptions o;
    o.beam_size = beam;
    o.n_best = beam;
    const auto alone = search(model, make_source_batch(kSources), o);
    const auto twice = search(copies, make_source_batch(kSources), o);
    ASSERT_EQ(alone.size(), twice.size());
    for (size_t s = 0; s < alone.size(); ++s) {
      ASSERT_EQ(alone[s].size(), twice[s].size());
      for (size_t n = 0; n < alone[s].size(); ++n) {
        EXPECT_EQ(alone[s][n].tokens, twice[s][n].tokens) << "sentence " << s << " hypothesis " << n;
        EXPECT_NEAR(alone[s][n].score, twice[s][n].score, 1e-5);
      }
    }
  }
  std::vector<Example> examples;
  for (size_t s = 0; s < kSources.size(); ++s) examples.push_back({kSources[s], {4, 9, 5, 7}});
  const auto one = corpus_loss(model, examples, 4, torch::kCPU);
  const auto two = corpus_loss(copies, examples, 4, torch::kCPU);
  EXPECT_EQ(one.tokens, two.tokens);
  EXPECT_NEAR(one.sum_nll, two.sum_nll, 1e-4);

  // Two different models: each token's probability is the mean of theirs.
  auto other = search_model("rnn", "qkv", 25);
  std::vector<Seq2Seq> pair{model, other};
  double expected = 0;
  for (const auto& e : examples) {
    const auto a = forced_steps(model, e.src, e.tgt, true), b = forced_steps(other, e.src, e.tgt, true);
    for (size_t j = 0; j < a.targets.size(); ++j) {
      const auto y = a.targets[j];
      const auto jj = static_cast<int64_t>(j);
      expected -= std::log((a.log_probs[jj][y].exp() + b.log_probs[jj][y].exp()).item<double>() / 2);
    }
  }
  const auto mixed = corpus_loss(pair, examples, 4, torch::kCPU);
  EXPECT_EQ(mixed.tokens, one.tokens);
  EXPECT_NEAR(mixed.sum_nll, expected, 1e-4 * expected);
  EXPECT_GT(std::abs(mixed.sum_nll - one.sum_nll), 1e-2);
}

// `s2s score`'s numbers: each target token's log-probability under the model or the ensemble's mean of
// probabilities, checked against each model's own view of each sentence alone (no padding, float64), for
// any batch size; their sum is corpus_loss's; and a greedy output scores what the step-by-step greedy
// loop summed while it chose the tokens (two routes: teacher forcing and the decoder's step).
TEST(ModelSearch, TargetLogProbsAreEachTokensProbabilityWhateverTheBatch) {
  std::vector<Example> examples;
  for (size_t s = 0; s < kSources.size(); ++s) {
    std::vector<int64_t> tgt;
    for (size_t j = 0; j < (s * 3) % 7; ++j) tgt.push_back(4 + static_cast<int64_t>((s + 5 * j) % 8));  // 0-6 tokens
    examples.push_back({kSources[s], tgt});
  }
  auto first = search_model("gru", "bahdanau", 31), second = search_model("rnn", "qkv", 32);
  for (const bool ensemble : {false, true}) {
    SCOPED_TRACE(ensemble ? "ensemble" : "one model");
    std::vector<Seq2Seq> models{first};
    if (ensemble) models.push_back(second);
    for (auto& m : models) m->eval();
    std::vector<std::vector<double>> expected;
    double expected_sum = 0;
    for (const auto& e : examples) {
      auto a = forced_steps(first, e.src, e.tgt, true);
      auto probs = a.log_probs.exp();
      if (ensemble) probs = (probs + forced_steps(second, e.src, e.tgt, true).log_probs.exp()) / 2;
      std::vector<double> row;
      for (size_t j = 0; j < a.targets.size(); ++j)
        row.push_back(std::log(probs[static_cast<int64_t>(j)][a.targets[j]].item<double>()));
      for (const double v : row) expected_sum += v;
      expected.push_back(row);
    }
    for (const int64_t batch_size : {1, 4, 64}) {
      SCOPED_TRACE("batch size " + std::to_string(batch_size));
      const auto got = target_log_probs(models, examples, batch_size, torch::kCPU);
      ASSERT_EQ(got.size(), examples.size());
      for (size_t k = 0; k < got.size(); ++k) {
        ASSERT_EQ(got[k].size(), examples[k].tgt.size() + 1) << "pair " << k;
        for (size_t j = 0; j < got[k].size(); ++j) EXPECT_NEAR(got[k][j], expected[k][j], 1e-4) << "pair " << k << " token " << j;
      }
    }
    const auto loss = corpus_loss(models, examples, 4, torch::kCPU);
    EXPECT_NEAR(-loss.sum_nll, expected_sum, 1e-4 * std::abs(expected_sum));
  }

  SearchOptions o;
  std::vector<Example> outputs;
  std::vector<GreedyResult> greedy;
  int64_t ended = 0;
  {
    torch::NoGradGuard no_grad;
    first->decoder->b_out[Vocabulary::kEos].fill_(1.0);  // so that some outputs end before the length limit
  }
  for (const auto& src : kSources) {
    greedy.push_back(greedy_loop(first, src, o));
    outputs.push_back({src, greedy.back().tokens});
  }
  std::vector<Seq2Seq> one{first};
  const auto scored = target_log_probs(one, outputs, 3, torch::kCPU);
  for (size_t k = 0; k < outputs.size(); ++k) {
    const auto& src = kSources[k];
    const int64_t max_len = static_cast<int64_t>(o.max_length_ratio * static_cast<double>(src.size())) + o.max_length_extra;
    // An output stopped by the length limit has no </s>: the loop did not score it.
    const bool eos = static_cast<int64_t>(greedy[k].tokens.size()) < max_len;
    ended += eos;
    double sum = 0;
    for (size_t j = 0; j < scored[k].size() - (eos ? 0 : 1); ++j) sum += scored[k][j];
    EXPECT_NEAR(sum, greedy[k].log_prob, 1e-4) << "greedy output " << k;
  }
  EXPECT_GT(ended, 0) << "no greedy output ended with </s>";
}

// GNMT's coverage penalty reranks the finished hypotheses: the same hypotheses as without it, each scored
// its plain score + beta * sum over the real source tokens of log(min(attention received, 1)), computed here
// from its attention rows, best first; and the order changes for some sentence.
TEST(ModelSearch, CoveragePenaltyAddsTheLogOfTheCappedAttentionEachSourceTokenReceived) {
  auto model = search_model("gru", "bahdanau", 51);
  {
    torch::NoGradGuard no_grad;
    model->decoder->b_out[Vocabulary::kEos].fill_(1.0);  // short outputs, which leave source tokens unattended
  }
  SearchOptions plain;
  plain.beam_size = 4;
  plain.n_best = 4;
  SearchOptions covered = plain;
  covered.coverage_penalty = 2.0;
  const auto a = search(model, make_source_batch(kSources), plain);
  const auto b = search(model, make_source_batch(kSources), covered);
  ASSERT_EQ(a.size(), b.size());
  int64_t reordered = 0;
  for (size_t s = 0; s < a.size(); ++s) {
    SCOPED_TRACE("sentence " + std::to_string(s));
    ASSERT_EQ(a[s].size(), b[s].size());
    for (size_t k = 0; k < b[s].size(); ++k) {
      const auto& h = b[s][k];
      const Hypothesis* same = nullptr;
      for (const auto& x : a[s]) if (x.tokens == h.tokens) same = &x;
      ASSERT_NE(same, nullptr) << "a hypothesis the plain search did not finish";
      double cp = 0;
      for (size_t i = 0; i + 1 < kSources[s].size(); ++i) {  // the real source tokens: not </s>
        double received = 0;
        for (const auto& row : h.attention) received += row[i];
        cp += std::log(std::min(received, 1.0));
      }
      EXPECT_NEAR(h.score, same->score + 2.0 * cp, 1e-4) << "hypothesis " << k;
      if (k > 0) EXPECT_GE(b[s][k - 1].score, h.score);
    }
    for (size_t k = 0; k < a[s].size(); ++k) reordered += a[s][k].tokens != b[s][k].tokens;
  }
  EXPECT_GT(reordered, 0) << "the penalty never changed the order: the test cannot tell it is applied";
}

// Sampling draws each token from the model's distribution: one-token samples (max_length 1) of one
// sentence follow the first step's probabilities, computed here from the teacher-forced pass (within 5
// standard errors), and with --top-k 3 --temperature 0.5 the renormalised p^2 of the 3 most probable
// tokens, none outside them.
TEST(ModelSearch, SamplingDrawsFromTheModelsDistribution) {
  auto model = search_model("gru", "bahdanau", 41);
  {
    torch::NoGradGuard no_grad;
    model->decoder->b_out.mul_(0.0);
    model->decoder->b_out.slice(0, 4, 8).fill_(1.5);  // a few likely tokens, the rest less likely
  }
  const std::vector<int64_t> src{4, 5, 6, 3};
  std::vector<double> p(12);
  {
    const auto f = forced_steps(model, src, {}, true);
    for (int64_t v = 0; v < 12; ++v) p[static_cast<size_t>(v)] = f.log_probs[0][v].exp().item<double>();
  }
  const int64_t N = 4000;
  for (const bool restricted : {false, true}) {
    SCOPED_TRACE(restricted ? "top-k 3, temperature 0.5" : "plain");
    SearchOptions o;
    o.sampling = true;
    o.n_best = N;
    o.max_length = 1;
    std::vector<double> expected = p;
    if (restricted) {
      o.top_k = 3;
      o.temperature = 0.5;
      std::vector<size_t> order(12);
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
      double z = 0;
      for (size_t i = 0; i < 3; ++i) z += p[order[i]] * p[order[i]];
      std::fill(expected.begin(), expected.end(), 0.0);
      for (size_t i = 0; i < 3; ++i) expected[order[i]] = p[order[i]] * p[order[i]] / z;
    }
    std::vector<Seq2Seq> one{model};
    const auto samples = sample(one, make_source_batch({src}), o, {7});
    ASSERT_EQ(samples.size(), 1u);
    ASSERT_EQ(samples[0].size(), static_cast<size_t>(N));
    std::vector<double> count(12, 0.0);
    for (const auto& h : samples[0]) {
      ASSERT_LE(h.tokens.size(), 1u);
      const int64_t token = h.tokens.empty() ? Vocabulary::kEos : h.tokens[0];
      count[static_cast<size_t>(token)] += 1;
      EXPECT_NEAR(h.score, std::log(p[static_cast<size_t>(token)]), 1e-4);  // the model's own log-probability
    }
    for (size_t v = 0; v < 12; ++v) {
      const double freq = count[v] / N, sd = std::sqrt(expected[v] * (1 - expected[v]) / N);
      EXPECT_NEAR(freq, expected[v], 5 * sd + 1e-9) << "token " << v << " drawn " << count[v] << " times";
    }
    for (size_t k = 1; k < samples[0].size(); ++k) EXPECT_GE(samples[0][k - 1].score, samples[0][k].score);  // best first
  }
}

// A sentence's samples depend on the seed and its number, not on the batch it is in; each sample's score is
// its log-probability under the model or the ensemble (target_log_probs), and its attention has one row per
// token and </s>, each a distribution over the source.
TEST(ModelSearch, SamplesAreFixedBySeedAndSentenceNumberAndScoredByTheModel) {
  std::vector<Seq2Seq> models{search_model("rnn", "bahdanau", 42), search_model("gru", "qkv", 43)};
  for (const size_t n_models : {1u, 2u}) {
    SCOPED_TRACE(std::to_string(n_models) + " model(s)");
    std::vector<Seq2Seq> used(models.begin(), models.begin() + static_cast<int64_t>(n_models));
    SearchOptions o;
    o.sampling = true;
    o.n_best = 3;
    std::vector<uint64_t> ids(kSources.size());
    std::iota(ids.begin(), ids.end(), 100);
    const auto all = sample(used, make_source_batch(kSources), o, ids);
    ASSERT_EQ(all.size(), kSources.size());
    std::vector<Example> scored_examples;
    std::vector<const Hypothesis*> hyps;
    int64_t different_samples = 0;
    for (size_t s = 0; s < kSources.size(); ++s) {
      SCOPED_TRACE("sentence " + std::to_string(s));
      const auto alone = sample(used, make_source_batch({kSources[s]}), o, {ids[s]});
      ASSERT_EQ(alone[0].size(), 3u);
      for (size_t k = 0; k < 3; ++k) {
        EXPECT_EQ(alone[0][k].tokens, all[s][k].tokens);
        EXPECT_NEAR(alone[0][k].score, all[s][k].score, 1e-5);
        const auto& h = all[s][k];
        scored_examples.push_back({kSources[s], h.tokens});
        hyps.push_back(&h);
        ASSERT_GE(h.attention.size(), h.tokens.size());
        for (const auto& row : h.attention) {
          ASSERT_EQ(row.size(), kSources[s].size());
          EXPECT_NEAR(std::accumulate(row.begin(), row.end(), 0.0), 1.0, 1e-4);
        }
      }
      different_samples += all[s][0].tokens != all[s][2].tokens;
      const auto other = sample(used, make_source_batch({kSources[s]}), o, {ids[s] + 1000});
      SearchOptions reseeded = o;
      reseeded.seed = 2;
      const auto other_seed = sample(used, make_source_batch({kSources[s]}), reseeded, {ids[s]});
      bool differs = false, differs_seed = false;
      for (size_t k = 0; k < 3; ++k) {
        differs |= other[0][k].tokens != all[s][k].tokens;
        differs_seed |= other_seed[0][k].tokens != all[s][k].tokens;
      }
      EXPECT_TRUE(differs) << "another sentence number drew the same samples";
      EXPECT_TRUE(differs_seed) << "another seed drew the same samples";
    }
    EXPECT_GT(different_samples, 0) << "a sentence's samples are all alike";
    const auto forced = target_log_probs(used, scored_examples, 8, torch::kCPU);
    for (size_t k = 0; k < hyps.size(); ++k) {
      const auto src_tokens = static_cast<int64_t>(scored_examples[k].src.size());
      const bool eos = static_cast<int64_t>(hyps[k]->tokens.size()) < static_cast<int64_t>(o.max_length_ratio * src_tokens) + o.max_length_extra;
      double sum = 0;
      for (size_t j = 0; j < forced[k].size() - (eos ? 0 : 1); ++j) sum += forced[k][j];
      EXPECT_NEAR(hyps[k]->score, sum, 1e-4) << "sample " << k;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// ModelCheckpoint
// ---------------------------------------------------------------------------------------------

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() /
            ("s2s-test-model-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    s2s::testing::remove_tree(path_.string());
    fs::create_directories(path_);
  }
  ~TempDir() { s2s::testing::remove_tree(path_.string()); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TextCodec tiny_codec() {
  TextCodec codec;
  codec.src_tokenizer = std::make_shared<WordTokenizer>();
  codec.tgt_tokenizer = std::make_shared<WordTokenizer>();
  codec.src_vocab = Vocabulary::build({{"a", 5}, {"b", 4}, {"c", 3}, {"d", 2}, {"e", 1}}, 1, 0);
  codec.tgt_vocab = Vocabulary::build({{"x", 5}, {"y", 4}, {"z", 3}, {"w", 2}, {"v", 1}, {"u", 1}}, 1, 0);
  return codec;
}

std::vector<std::string> folder_entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

void expect_error_naming(const std::string& path, const std::string& what) {
  try {
    (void)load_model(path, torch::kCPU);
    ADD_FAILURE() << what << ": load_model did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << what << ": message does not name the path: "
                                                                     << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": threw something other than s2s::Error: " << e.what();
  }
}

TEST(ModelCheckpoint, SaveAndLoadGiveTheSameModel) {
  TempDir dir;
  const auto codec = tiny_codec();
  Config config;
  config.model = make_config("gru", "bahdanau", 4, 5, 3);
  config.model.bidirectional = true;
  config.model.output = "deep";
  torch::manual_seed(3);
  Seq2Seq model(config.model, codec.src_vocab.size(), codec.tgt_vocab.size());
  const std::string path = (dir.path() / "model.pt").string();
  TrainState state;
  state.step = 42;
  save_checkpoint(path, config, codec, model, nullptr, state);
  EXPECT_EQ(folder_entries(dir.path()), std::vector<std::string>{"model.pt"}) << "temporary files left behind";
  save_checkpoint(path, config, codec, model, nullptr, state);  // overwriting leaves nothing behind either
  EXPECT_EQ(folder_entries(dir.path()), std::vector<std::string>{"model.pt"}) << "temporary files left behind";

  auto loaded = load_model(path, torch::kCPU);
  EXPECT_EQ(loaded.state.step, 42);
  EXPECT_EQ(loaded.codec.src_vocab.size(), codec.src_vocab.size());
  EXPECT_EQ(loaded.codec.tgt_vocab.size(), codec.tgt_vocab.size());
  EXPECT_EQ(describe(loaded.config.model), describe(config.model));
  const auto original = model->named_parameters(), restored = loaded.model->named_parameters();
  ASSERT_EQ(original.size(), restored.size());
  for (const auto& p : original) {
    const auto* q = restored.find(p.key());
    ASSERT_NE(q, nullptr) << p.key();
    EXPECT_TRUE(torch::equal(p.value(), *q)) << p.key();
  }
  const std::vector<Example> ex{{codec.encode_src("a b c d e"), codec.encode_tgt("x y z")},
                                {codec.encode_src("e a"), codec.encode_tgt("u")}};
  const Batch batch = batch_of(ex);
  torch::NoGradGuard no_grad;
  model->eval();
  loaded.model->eval();
  const auto a = model->forward(batch), b = loaded.model->forward(batch);
  EXPECT_TRUE(torch::equal(a.logits, b.logits));
  EXPECT_TRUE(torch::equal(a.weights, b.weights));
}

TEST(ModelCheckpoint, DamagedFilesGiveAnErrorNamingThePath) {
  TempDir dir;
  const auto codec = tiny_codec();
  Config config;
  config.model = make_config("lstm", "qkv", 4, 5, 3);
  torch::manual_seed(4);
  Seq2Seq model(config.model, codec.src_vocab.size(), codec.tgt_vocab.size());
  const std::string path = (dir.path() / "model.pt").string();
  save_checkpoint(path, config, codec, model, nullptr, TrainState{});

  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  ASSERT_GT(bytes.size(), 100u);
  const std::string truncated = (dir.path() / "truncated.pt").string();
  {
    std::ofstream out(truncated, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  }
  expect_error_naming(truncated, "truncated checkpoint");

  const std::string random = (dir.path() / "random.pt").string();
  {
    std::mt19937 rng(9);
    std::string noise(4096, '\0');
    for (auto& c : noise) c = static_cast<char>(rng() & 0xff);
    std::ofstream out(random, std::ios::binary);
    out.write(noise.data(), static_cast<std::streamsize>(noise.size()));
  }
  expect_error_naming(random, "random bytes");
  expect_error_naming((dir.path() / "missing.pt").string(), "missing file");
}

// corpus_loss (validation loss, `s2s evaluate`'s perplexity): the sum of sequence_loss over the sorted
// batches, computed here one batch after the other with two intra-op threads; the same bits when the
// batches run side by side on the worker threads.
TEST(CorpusLoss, SumsTheBatchesLossesOnTheWorkerThreadsToo) {
  const int before = torch::get_num_threads();
  torch::set_num_threads(2);
  auto c = make_config("gru", "bahdanau", 16, 24, 12);
  c.bidirectional = true;
  torch::manual_seed(5);
  Seq2Seq model(c, 30, 40);
  model->eval();
  const auto examples = s2s::testing::random_examples(37, 9, 30, 40, 9);
  double expected_nll = 0;
  int64_t expected_tokens = 0;
  {
    torch::NoGradGuard no_grad;
    for (const auto& idx : ordered_batches(examples, 5, true)) {
      const auto batch = make_batch(examples, idx);
      const auto r = sequence_loss(model->forward(batch).logits, batch.tgt_out, 0.0);
      expected_nll += r.sum_nll;
      expected_tokens += r.tokens;
    }
  }
  ASSERT_GT(expected_tokens, 37);
  worker_threads(2);
  const auto got = corpus_loss(model, examples, 5, torch::kCPU);
  EXPECT_EQ(got.tokens, expected_tokens);
  EXPECT_EQ(got.sum_nll, expected_nll);
  torch::set_num_threads(before);
}

}  // namespace
}  // namespace s2s
