#include "checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <mutex>

#include "error.h"

namespace s2s {
namespace fs = std::filesystem;

nlohmann::json TrainState::to_json() const {
  return {{"step", step},
          {"epoch", epoch},
          {"batch_in_epoch", batch_in_epoch},
          {"best_score", std::isinf(best_score) ? nlohmann::json(nullptr) : nlohmann::json(best_score)},
          {"best_step", best_step},
          {"bad_validations", bad_validations},
          {"elapsed_seconds", elapsed_seconds},
          {"batches_per_update", batches_per_update},
          {"lr_schedule", lr_schedule}};
}

TrainState TrainState::from_json(const nlohmann::json& j) {
  TrainState s;
  s.step = j.at("step").get<int64_t>();
  s.epoch = j.at("epoch").get<int64_t>();
  s.batch_in_epoch = j.at("batch_in_epoch").get<int64_t>();
  if (!j.at("best_score").is_null()) s.best_score = j.at("best_score").get<double>();
  s.best_step = j.value("best_step", int64_t{0});
  s.bad_validations = j.at("bad_validations").get<int64_t>();
  s.elapsed_seconds = j.value("elapsed_seconds", 0.0);
  s.batches_per_update = j.value("batches_per_update", int64_t{1});
  if (j.contains("lr_schedule")) s.lr_schedule = j.at("lr_schedule");
  return s;
}

namespace {

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

void write_string(torch::serialize::OutputArchive& a, const std::string& key, const std::string& value) {
  a.write(key, c10::IValue(value));
}

std::string read_string(torch::serialize::InputArchive& a, const std::string& key, const std::string& path) {
  c10::IValue v;
  if (!a.try_read(key, v) || !v.isString()) throw Error(path + ": not an s2s checkpoint (no \"" + key + "\" entry)");
  return v.toStringRef();
}

// Parameters nested by module, as torch::nn::Module::save does, so that Python sees
// checkpoint.model.encoder.l0_fwd.W_x; stored on the CPU so a GPU checkpoint loads anywhere.
void write_module(const torch::nn::Module& module, torch::serialize::OutputArchive& archive) {
  for (const auto& p : module.named_parameters(/*recurse=*/false))
    archive.write(p.key(), p.value().detach().to(torch::kCPU));
  for (const auto& child : module.named_children()) {
    torch::serialize::OutputArchive child_archive;
    write_module(*child.value(), child_archive);
    archive.write(child.key(), child_archive);
  }
}

void read_module(torch::nn::Module& module, torch::serialize::InputArchive& archive, const std::string& prefix) {
  for (auto& p : module.named_parameters(/*recurse=*/false)) {
    const std::string name = prefix + p.key();
    torch::Tensor value;
    if (!archive.try_read(p.key(), value))
      throw Error("the checkpoint lacks parameter " + name + " (written by a different model configuration?)");
    if (value.sizes() != p.value().sizes())
      throw Error("checkpoint parameter " + name + " has shape " + c10::str(value.sizes()) +
                  ", the model expects " + c10::str(p.value().sizes()));
    p.value().copy_(value);
  }
  for (auto& child : module.named_children()) {
    torch::serialize::InputArchive child_archive;
    if (!archive.try_read(child.key(), child_archive))
      throw Error("the checkpoint lacks module " + prefix + child.key());
    read_module(*child.value(), child_archive, prefix + child.key() + ".");
  }
}

}  // namespace

void save_checkpoint(const std::string& path, const Config& config, const TextCodec& codec, Seq2Seq& model,
                     torch::optim::Optimizer* optimizer, const TrainState& state, Seq2Seq* average) {
  torch::serialize::OutputArchive archive;
  write_string(archive, "format", "s2s-checkpoint");
  archive.write("format_version", c10::IValue(kCheckpointVersion));
  write_string(archive, "config", config_to_json(config).dump());
  write_string(archive, "codec", codec.to_json().dump());
  write_string(archive, "train_state", state.to_json().dump());
  torch::serialize::OutputArchive model_archive;
  {
    torch::NoGradGuard no_grad;
    write_module(*model, model_archive);
  }
  archive.write("model", model_archive);
  if (average && *average) {
    torch::serialize::OutputArchive average_archive;
    torch::NoGradGuard no_grad;
    write_module(**average, average_archive);
    archive.write("average", average_archive);
  }
  if (optimizer) {
    torch::serialize::OutputArchive optim_archive;
    optimizer->save(optim_archive);
    archive.write("optimizer", optim_archive);
  }
  archive.write("rng_cpu", at::detail::getDefaultCPUGenerator().get_state());
  // Training on a GPU draws its dropout masks from that device's generator: its state too, so that a
  // resumed run continues exactly there as well.
  const auto params = model->parameters();
  if (!params.empty() && params.front().is_cuda()) {
    auto gen = at::globalContext().defaultGenerator(params.front().device());
    std::lock_guard<std::mutex> lock(gen.mutex());
    archive.write("rng_cuda", gen.get_state());
  }

  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string tmp = (dir / ("." + target.filename().string() + ".tmp-" + std::to_string(::getpid()))).string();
  try {
    archive.save_to(tmp);
  } catch (const c10::Error& e) {
    std::remove(tmp.c_str());
    throw Error(path + ": could not write the checkpoint: " + e.what_without_backtrace());
  }
  fsync_path(tmp, false);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error(path + ": could not move the checkpoint into place");
  }
  fsync_path(dir.string(), true);
}

CheckpointContents read_checkpoint(const std::string& path) {
  if (!fs::exists(path)) throw Error(path + ": checkpoint not found");
  CheckpointContents c;
  c.path = path;
  c.archive = std::make_shared<torch::serialize::InputArchive>();
  try {
    // Every tensor is read onto the CPU, whatever device wrote it: a model trained on a GPU loads on a
    // machine without one. restore_model and restore_optimizer move them where they are used.
    c.archive->load_from(path, torch::Device(torch::kCPU));
  } catch (const c10::Error& e) {
    throw Error(path + ": not a readable checkpoint (truncated, or not a LibTorch archive)");
  }
  if (read_string(*c.archive, "format", path) != "s2s-checkpoint") throw Error(path + ": not an s2s checkpoint");
  c10::IValue version;
  if (!c.archive->try_read("format_version", version) || !version.isInt())
    throw Error(path + ": not an s2s checkpoint (no format version)");
  if (version.toInt() > kCheckpointVersion)
    throw Error(path + ": checkpoint format version " + std::to_string(version.toInt()) +
                " is newer than this program understands (" + std::to_string(kCheckpointVersion) +
                "); update s2s to read it");
  try {
    c.config = config_from_json(nlohmann::json::parse(read_string(*c.archive, "config", path)), path + " (config)");
    c.codec = TextCodec::from_json(nlohmann::json::parse(read_string(*c.archive, "codec", path)));
    c.state = TrainState::from_json(nlohmann::json::parse(read_string(*c.archive, "train_state", path)));
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": damaged checkpoint metadata: " + e.what());
  }
  return c;
}

namespace {
// The weights stored under `key` ("model" or "average"); null when the archive has none.
Seq2Seq read_weights(const CheckpointContents& ckpt, const std::string& key, const torch::Device& device) {
  torch::serialize::InputArchive weights;
  if (!ckpt.archive->try_read(key, weights)) return nullptr;
  auto model = model_shell(ckpt.config.model, ckpt.codec.src_vocab.size(), ckpt.codec.tgt_vocab.size());
  {
    torch::NoGradGuard no_grad;
    read_module(*model, weights, key == "model" ? "" : key + ".");
  }
  model->to(device);
  return model;
}
}  // namespace

Seq2Seq restore_model(const CheckpointContents& ckpt, const torch::Device& device) {
  auto model = read_weights(ckpt, "model", device);
  if (!model) throw Error(ckpt.path + ": checkpoint has no model parameters");
  return model;
}

Seq2Seq restore_average(const CheckpointContents& ckpt, const torch::Device& device) {
  return read_weights(ckpt, "average", device);
}

bool has_average(const CheckpointContents& ckpt) {
  torch::serialize::InputArchive average;
  return ckpt.archive->try_read("average", average);
}

Seq2Seq restore_translation_model(const CheckpointContents& ckpt, const torch::Device& device) {
  auto average = restore_average(ckpt, device);
  return average ? average : restore_model(ckpt, device);
}

namespace {

torch::Device optimizer_device(const torch::optim::Optimizer& optimizer) {
  for (const auto& group : optimizer.param_groups())
    for (const auto& p : group.params()) return p.device();
  return torch::kCPU;
}

}  // namespace

void move_optimizer_state(torch::optim::Optimizer& optimizer) {
  // A model lives on one device; the map's key type differs between LibTorch versions, so the states
  // are visited by value.
  const auto device = optimizer_device(optimizer);
  auto move = [&](const torch::Tensor& t) { return t.defined() ? t.to(device) : t; };
  for (auto& entry : optimizer.state()) {
    auto* state = entry.second.get();
    if (auto* adam = dynamic_cast<torch::optim::AdamParamState*>(state)) {
      adam->exp_avg(move(adam->exp_avg()));
      adam->exp_avg_sq(move(adam->exp_avg_sq()));
      adam->max_exp_avg_sq(move(adam->max_exp_avg_sq()));
    } else if (auto* sgd = dynamic_cast<torch::optim::SGDParamState*>(state)) {
      sgd->momentum_buffer(move(sgd->momentum_buffer()));
    }
  }
}

void restore_optimizer(const CheckpointContents& ckpt, torch::optim::Optimizer& optimizer) {
  torch::serialize::InputArchive optim_archive;
  if (!ckpt.archive->try_read("optimizer", optim_archive))
    throw Error(ckpt.path + ": has no optimiser state to resume from (a checkpoint made by `s2s release`, or "
                "written without one); start a new run from its weights with --init-from instead");
  optimizer.load(optim_archive);
  move_optimizer_state(optimizer);
  torch::Tensor rng;
  if (ckpt.archive->try_read("rng_cpu", rng)) {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(rng);
  }
  // The GPU generator's state, when both the run that wrote it and this one train on a GPU.
  torch::Tensor rng_cuda;
  const auto device = optimizer_device(optimizer);
  if (device.is_cuda() && ckpt.archive->try_read("rng_cuda", rng_cuda)) {
    auto gen = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(rng_cuda);
  }
}

LoadedModel load_model(const std::string& path, const torch::Device& device) {
  auto ckpt = read_checkpoint(path);
  LoadedModel m;
  m.model = restore_translation_model(ckpt, device);
  m.config = ckpt.config;
  m.codec = ckpt.codec;
  m.state = ckpt.state;
  return m;
}

}  // namespace s2s
