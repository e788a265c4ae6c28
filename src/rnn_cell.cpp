#include "rnn_cell.h"

#include "error.h"

namespace s2s {

CellType cell_type_from_string(const std::string& name) {
  if (name == "rnn") return CellType::RNN;
  if (name == "gru") return CellType::GRU;
  if (name == "lstm") return CellType::LSTM;
  throw Error("unknown cell type \"" + name + "\" (expected rnn, gru or lstm)");
}

int64_t gate_count(CellType type) {
  switch (type) {
    case CellType::RNN: return 1;
    case CellType::GRU: return 3;
    case CellType::LSTM: return 4;
  }
  return 1;
}

CellState CellState::index_select(const torch::Tensor& rows) const {
  return {h.index_select(0, rows), c.defined() ? c.index_select(0, rows) : torch::Tensor()};
}

RecurrentCellImpl::RecurrentCellImpl(int64_t hidden_size, CellType type) : hidden_(hidden_size), type_(type) {
  const auto g = gate_count(type);
  W_hh = register_parameter("W_hh", torch::empty({g * hidden_size, hidden_size}));
  if (type == CellType::GRU) b_hh = register_parameter("b_hh", torch::zeros({g * hidden_size}));
}

CellState RecurrentCellImpl::initial_state(const torch::Tensor& h0) const {
  return {h0, type_ == CellType::LSTM ? torch::zeros_like(h0) : torch::Tensor()};
}

CellState RecurrentCellImpl::step(const torch::Tensor& x_proj, const CellState& prev, StepWeight* w_hh) const {
  return cell_update(type_, x_proj, prev, b_hh, [&](const torch::Tensor& c) {  // c + W_hh h_{t-1}
    return w_hh ? w_hh->addmm(c, prev.h) : torch::addmm(c, prev.h, W_hh.t());
  });
}

}  // namespace s2s
