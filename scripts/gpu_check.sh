#!/usr/bin/env bash
# The GPU check in one command, for a machine with an NVIDIA GPU and a CUDA LibTorch but no Debian
# packages (the lent GPU machine: ../shared/gpu/README). Run from the repository root, after
#   ../shared/gpu/prepare.sh                        (here: copies the header libraries into .deps/)
#   scripts/get_multi30k.sh ../shared/data/multi30k (here: the benchmark's data, into data/multi30k/)
# and carry .deps and data/multi30k (and a trained checkpoint, CHECKPOINT=path, for the translation part:
# `build/s2s release -c runs/multi30k_de_en/best.pt -o FILE` makes one a third of the size, under the
# machine's 64 MiB limit on what travels; without one the translation part uses random weights).
# It builds (BUILD_DIR, default /tmp/build-cuda), runs the CUDA tests, then `s2s bench --device cuda` for
# the standard configs (embedding 256, hidden 256, batch 64) and for hidden 512 at batch 256, and the
# time per step at batch 64, 256 and 1024. Results go to OUT (default /tmp/gpu-check): bench JSON and logs.
# FULL_TESTS=1 also runs the whole suite there (a few minutes on 16 cores; the multi-process tests need
# Gloo, which that machine's LibTorch headers lack, and are left out). Then, first (the figures the issue's
# target is read against, before anything a time limit could cut off), at hidden 512 with graphs the
# attention step fused and as autograd's expressions (bench --attention-step), fused with TF32 products
# (training.tf32), and fused with the clipping and Adam run after each replay instead of recorded in the
# graphs (bench --optimizer-in-graph off). Each line gives the step's wall time, its parts (update: forward,
# loss and backward, with graphs the recorded optimizer's step too; optimizer: clipping and Adam when run
# outside) and, with graphs, the GPU's time per replay; then, for each training config (hidden 512 first),
# the step with and without CUDA graphs (training.cuda_graphs) side by side. BENCH=graphs skips the full
# benchmark runs and the batch sweep and keeps those comparisons only.
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
log() { echo "=== [$(( $(date +%s) - T0 )) s] $*"; }
OUT=${OUT:-/tmp/gpu-check}
CHECKPOINT=${CHECKPOINT:-runs/multi30k_de_en/best.pt}
export BUILD_DIR=${BUILD_DIR:-/tmp/build-cuda}
export LD_LIBRARY_PATH="$PWD/.deps/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mkdir -p "$OUT"
[ -x .deps/device-build.sh ] || [ -f .deps/device-build.sh ] || { echo "error: run ../shared/gpu/prepare.sh first (no .deps/)" >&2; exit 1; }
[ -s data/multi30k/train.de ] || { echo "error: data/multi30k/ is missing: scripts/get_multi30k.sh DIR" >&2; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

log build
# header-only spdlog and fmt from .deps (a system spdlog package there would mix two versions)
if ! bash .deps/device-build.sh -DCMAKE_DISABLE_FIND_PACKAGE_spdlog=ON >"$OUT/build.log" 2>&1; then
  grep -E "error" "$OUT/build.log" | head -20
  log "the full build failed; building s2s alone"
  cmake --build "$BUILD_DIR" --target s2s >>"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
fi
S2S=$BUILD_DIR/s2s
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -lms 500 >"$OUT/nvidia-smi.csv" 2>&1 &
SMI=$!
trap 'kill $SMI 2>/dev/null' EXIT

if [ -x "$BUILD_DIR/s2s_tests" ]; then
  log "CUDA tests"
  (cd "$BUILD_DIR" && timeout ${TEST_TIMEOUT:-300} ./s2s_tests --gtest_filter='Cuda*' 2>&1) | tee "$OUT/tests.log" | tail -25
fi
if [ "${FULL_TESTS:-0}" = 1 ] && [ -x "$BUILD_DIR/s2s_tests" ]; then
  log "the whole suite"
  (cd "$BUILD_DIR" && OMP_NUM_THREADS=1 timeout 500 ctest -j 16 -E 'Distributed|Torchrun' 2>&1) >"$OUT/ctest.log"
  grep -E "tests passed|\*\*\*Failed|Failed  |Not Run|Timeout" "$OUT/ctest.log" | head -30
fi
log "with graphs, hidden 512, batch 256: the attention step fused (the default) and as autograd's expressions; fused with TF32 products (training.tf32); fused with the optimizer outside the graphs"
for v in rnn+bahdanau rnn+qkv; do
  for a in fused fused+optimizer-outside fused+tf32 expressions; do
    tf32=false; [ $a = fused+tf32 ] && tf32=true
    in_graph=on; [ $a = fused+optimizer-outside ] && in_graph=off
    timeout 90 $S2S bench --part train --device cuda --variant $v --set model.hidden_size=512 --batch-size 256 \
      --set training.cuda_graphs=true --set training.tf32=$tf32 --attention-step ${a%%+*} --count-ops \
      --optimizer-in-graph $in_graph -o "$OUT/attention-$v-$a.json" 2>>"$OUT/graphs.log"
    python3 -c "import json,sys; j=json.load(open(sys.argv[1]));
print('%-13s attention %-11s tf32 %-5s optimizer in graph %-5s %7.2f ms/step (update %.2f, optimizer %.2f; GPU %.2f per replay) %9.0f tgt tok/s first/last loss %.6f %.6f, %d operations per eager step' % (j['variant'], j['attention_step'], j['tf32'], j['optimizer_in_graph'], j['ms_per_step'], j['update_ms'], j['optimizer_ms'], j['cuda_graphs']['replay_gpu_ms'], j['tgt_tokens_per_sec'], j['first_loss'], j['last_loss'], j['ops_per_step']['total']))" \
      "$OUT/attention-$v-$a.json" || tail -5 "$OUT/graphs.log"
  done
done | tee "$OUT/attention-table.log"
log "training step without and with CUDA graphs, side by side"
for size in "512 256" "256 64"; do
  set -- $size
  for v in rnn+bahdanau rnn+qkv gru+bahdanau; do
    for g in false ${GRAPH_STEPS:-1}; do  # false: no graphs; a number: graphs, lengths padded to multiples of it
      if [ $g = false ]; then set_graphs="training.cuda_graphs=false"; else set_graphs="training.cuda_graphs=true --set training.cuda_graph_length_step=$g"; fi
      timeout 90 $S2S bench --part train --device cuda --variant $v --set model.hidden_size=$1 --batch-size $2 \
        --set $set_graphs -o "$OUT/train-$v-h$1-b$2-graphs-$g.json" 2>>"$OUT/graphs.log"
      python3 -c "import json,sys; j=json.load(open(sys.argv[1])); g=j['cuda_graphs'];
print('%-13s h%-4d b%-4d graphs %-5s %7.2f ms/step (update %.2f, optimizer %.2f) %9.0f tgt tok/s padding %4.1f%%' % (j['variant'], j['hidden'], j['batch'], sys.argv[2], j['ms_per_step'], j['update_ms'], j['optimizer_ms'], j['tgt_tokens_per_sec'], 100 * j['padding']),
      '' if not g else '(GPU %.2f ms per replay; %d recorded in %.1f s; %d steps replayed, %d eager)' % (g['replay_gpu_ms'], g['recorded'], g['record_seconds'], g['replayed_steps'], g['eager_steps']))" \
        "$OUT/train-$v-h$1-b$2-graphs-$g.json" $g || tail -5 "$OUT/graphs.log"
    done
  done
done | tee "$OUT/graphs-table.log"
[ "${BENCH:-full}" = graphs ] && { log "done: $OUT"; exit 0; }
log "bench: embedding 256, hidden 256, batch 64"
$S2S bench --device cuda --checkpoint "$CHECKPOINT" -o "$OUT/bench-h256-b64.json" 2>"$OUT/bench-h256-b64.log"
log "bench: hidden 512, batch 256"
$S2S bench --device cuda --checkpoint "$CHECKPOINT" --batch-size 256 --set model.hidden_size=512 \
  -o "$OUT/bench-h512-b256.json" 2>"$OUT/bench-h512-b256.log"
log "time per step against the batch (rnn+bahdanau, hidden 512)"
for b in 64 256 1024; do
  $S2S bench --part train --device cuda --variant rnn+bahdanau --set model.hidden_size=512 --batch-size $b \
    --warmup-steps 3 --interval-steps 5 --intervals 4 2>/dev/null |
    python3 -c "import json,sys; j=json.load(sys.stdin); print('batch', j['batch'], 'ms/step %.1f' % j['ms_per_step'], 'tgt tok/s %.0f' % j['tgt_tokens_per_sec'])"
done | tee "$OUT/batch-sweep.log"
log "done: $OUT"
