#!/usr/bin/env bash
# The GPU check in one command, for a machine with an NVIDIA GPU and a CUDA LibTorch but no Debian
# packages (the lent GPU machine: ../shared/gpu/README). Run from the repository root, after
#   ../shared/gpu/prepare.sh                        (here: copies the header libraries into .deps/)
#   scripts/get_multi30k.sh ../shared/data/multi30k (here: the benchmark's data, into data/multi30k/)
# and carry .deps and data/multi30k (and a trained checkpoint, CHECKPOINT=path, for the translation part:
# `build/s2s release -c runs/multi30k_de_en/best.pt -o FILE` makes one a third of the size, under the
# machine's 64 MiB limit on what travels; without one the translation part uses random weights).
# It builds (BUILD_DIR, default /tmp/build-cuda) and runs the CUDA tests (TEST_TIMEOUT seconds at most;
# FULL_TESTS=1 also runs the whole suite there, a few minutes on 16 cores, without the multi-process tests,
# which need Gloo that the machine's LibTorch headers lack). Then, each line one `s2s bench --device cuda`
# process (60 timed steps), results in OUT (default /tmp/gpu-check):
#  1. at hidden 512 and batch 256 with graphs, rnn+bahdanau's step: fused attention (the default: the
#     clipping and Adam recorded in the graphs, Adam's update one fused kernel where LibTorch has it, each
#     step's loss read after the next is launched), the same with Adam as separate operations
#     (--fused-adam off), with the loss read at the end of its own step (--defer-loss off), with the optimizer outside the
#     graphs (--optimizer-in-graph off), with TF32 products (training.tf32), and with the attention as
#     autograd's expressions (--attention-step expressions); each with its time per step, its parts as the
#     host sees them, the GPU's time per replay and the operations of one eager step;
#  2. each training config at hidden 512, batch 256 without and with graphs (training.cuda_graphs);
#  3. the GPU time of each kernel of a replayed and an eager step (bench --kernel-times);
#  4. rnn+qkv's step as in 1; the configs of 2 at embedding 256, hidden 256, batch 64;
#  5. a 300-step `s2s train` with graphs at hidden 512, batch 256;
#  6. where the loss trajectories of runs that should agree part (the first step whose losses differ).
# DEADLINE=seconds after the start: no run starts after it (the lines so far stay complete). BENCH=graphs
# stops there; otherwise the full benchmark follows (bench-*.json) and the time per step at batch 64, 256
# and 1024.
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
  (cd "$BUILD_DIR" && timeout ${TEST_TIMEOUT:-300} ./s2s_tests --gtest_filter='Cuda*:*OnTheGpu*' 2>&1) | tee "$OUT/tests.log" | tail -25
fi
if [ "${FULL_TESTS:-0}" = 1 ] && [ -x "$BUILD_DIR/s2s_tests" ]; then
  log "the whole suite"
  (cd "$BUILD_DIR" && OMP_NUM_THREADS=1 timeout 500 ctest -j 16 -E 'Distributed|Torchrun' 2>&1) >"$OUT/ctest.log"
  grep -E "tests passed|\*\*\*Failed|Failed  |Not Run|Timeout" "$OUT/ctest.log" | head -30
fi
# DEADLINE (seconds after the start, default none): no bench run starts after it, so a time limit around the
# whole script leaves the tables complete up to there.
in_time() { [ -z "${DEADLINE:-}" ] || [ $(( $(date +%s) - T0 )) -lt "$DEADLINE" ] || { log "past DEADLINE=$DEADLINE s: skipping $*"; false; }; }
attention_arms() {  # $1: variant. The fused step with the optimizer in the graphs (the default), outside them, with TF32; expressions
  local v=$1 a tf32 in_graph defer fused_adam
  for a in fused fused+adam-unfused fused+loss-now fused+optimizer-outside fused+tf32 expressions; do
    in_time "$v $a" || return 0
    tf32=false; [ $a = fused+tf32 ] && tf32=true
    in_graph=on; [ $a = fused+optimizer-outside ] && in_graph=off
    defer=on; [ $a = fused+loss-now ] && defer=off
    fused_adam=on; [ $a = fused+adam-unfused ] && fused_adam=off
    timeout 90 $S2S bench --part train --device cuda --variant $v --set model.hidden_size=512 --batch-size 256 \
      --set training.cuda_graphs=true --set training.tf32=$tf32 --attention-step ${a%%+*} --count-ops \
      --optimizer-in-graph $in_graph --defer-loss $defer --fused-adam $fused_adam -o "$OUT/attention-$v-$a.json" 2>>"$OUT/graphs.log"
    python3 -c "import json,sys; j=json.load(open(sys.argv[1]));
print('%-13s %-11s tf32 %-5s optimizer in graph %-5s fused Adam %-5s loss read late %-5s %6.2f ms/step (update %.2f, optimizer %.2f, wait %.2f; GPU per replay %.2f median, %.2f mean) %7.0f tgt tok/s loss %.6f -> %.6f, %d ops per eager step' % (j['variant'], j['attention_step'], j['tf32'], j['optimizer_in_graph'], j.get('fused_adam'), j['defer_loss'], j['ms_per_step'], j['update_ms'], j['optimizer_ms'], j['wait_ms'], j['cuda_graphs']['replay_gpu_ms'], j['cuda_graphs'].get('replay_gpu_ms_mean', 0), j['tgt_tokens_per_sec'], j['first_loss'], j['last_loss'], j['ops_per_step']['total']))" \
      "$OUT/attention-$v-$a.json" || tail -5 "$OUT/graphs.log"
  done
}
graphs_table() {  # $1 hidden, $2 batch: each training config without and with graphs, side by side
  local v g set_graphs
  for v in rnn+bahdanau rnn+qkv gru+bahdanau; do
    for g in false ${GRAPH_STEPS:-1}; do  # false: no graphs; a number: graphs, lengths padded to multiples of it
      in_time "h$1 b$2 $v graphs $g" || return 0
      if [ $g = false ]; then set_graphs="training.cuda_graphs=false"; else set_graphs="training.cuda_graphs=true --set training.cuda_graph_length_step=$g"; fi
      timeout 90 $S2S bench --part train --device cuda --variant $v --set model.hidden_size=$1 --batch-size $2 \
        --set $set_graphs -o "$OUT/train-$v-h$1-b$2-graphs-$g.json" 2>>"$OUT/graphs.log"
      python3 -c "import json,sys; j=json.load(open(sys.argv[1])); g=j['cuda_graphs'];
print('%-13s h%-4d b%-4d graphs %-5s %7.2f ms/step (update %.2f, optimizer %.2f, wait %.2f) %9.0f tgt tok/s padding %4.1f%%' % (j['variant'], j['hidden'], j['batch'], sys.argv[2], j['ms_per_step'], j['update_ms'], j['optimizer_ms'], j['wait_ms'], j['tgt_tokens_per_sec'], 100 * j['padding']),
      '' if not g else '(GPU %.2f ms per replay, mean %.2f; %d recorded in %.1f s; %d steps replayed, %d eager)' % (g['replay_gpu_ms'], g.get('replay_gpu_ms_mean', 0), g['recorded'], g['record_seconds'], g['replayed_steps'], g['eager_steps']))" \
        "$OUT/train-$v-h$1-b$2-graphs-$g.json" $g || tail -5 "$OUT/graphs.log"
    done
  done
}
kernel_times() {  # where a step's GPU time goes, kernel by kernel (bench --kernel-times), replayed and eager
  in_time "kernel times" || return 0
  timeout 120 $S2S bench --part train --device cuda --variant rnn+bahdanau --set model.hidden_size=512 --batch-size 256 \
    --set training.cuda_graphs=true --kernel-times -o "$OUT/kernel-times.json" 2>>"$OUT/graphs.log"
  python3 -c "import json,sys; k=json.load(open(sys.argv[1]))['kernel_times']
for route, r in k.items():
  print('%s: %.1f kernels, GPU %.2f ms, wall %.2f ms per step; %d distinct' % (route, r['kernels_per_step'], r['gpu_ms_per_step'], r['wall_ms_per_step'], r['distinct_kernels']))
  for e in r['top'][:18]: print('  %6.3f ms %5.1f%% %6.1f calls  %s' % (e['ms_per_step'], 100 * e['share'], e['calls_per_step'], e['name']))" \
    "$OUT/kernel-times.json" || tail -5 "$OUT/graphs.log"
}
log "hidden 512, batch 256, with graphs: rnn+bahdanau's attention step fused (the default: the optimizer in the graphs), fused with the optimizer outside them, fused with TF32 products (training.tf32), as autograd's expressions"
attention_arms rnn+bahdanau | tee "$OUT/attention-table.log"
log "training step without and with CUDA graphs, side by side: hidden 512, batch 256"
graphs_table 512 256 | tee "$OUT/graphs-table.log"
log "GPU time per kernel, rnn+bahdanau, hidden 512, batch 256"
kernel_times | tee "$OUT/kernel-times.log"
log "rnn+qkv's attention step, as for rnn+bahdanau"
attention_arms rnn+qkv | tee -a "$OUT/attention-table.log"
log "training step without and with CUDA graphs: embedding 256, hidden 256, batch 64"
graphs_table 256 64 | tee -a "$OUT/graphs-table.log"
log "s2s train with graphs (hidden 512, batch 256, 300 steps, validation at 300): the trainer's own rate"
if in_time "the training run"; then
  timeout 120 $S2S train --config configs/multi30k_de_en.json --set model.hidden_size=512 --set training.batch_size=256 \
    --set training.device=cuda --set training.cuda_graphs=true --set training.max_steps=300 --set training.log_every=50 \
    --set training.valid_every=300 --set training.checkpoint_every=300 --set output_dir=/tmp/gpu-check-run --overwrite 2>&1 |
    grep -E "\[train\] step|\[valid\]|CUDA graphs:|done|error" | tee "$OUT/train-run.log"
fi
log "loss trajectories: where two runs of the same 60 steps part (the first step whose losses differ, and how far apart they are)"
python3 - "$OUT" <<'PY' | tee "$OUT/trajectories.log"
import glob, json, os, sys
out = sys.argv[1]
def losses(name):
    path = os.path.join(out, name)
    return json.load(open(path))['losses'] if os.path.exists(path) else None
pairs = [('train-%s-h%s-graphs-false.json' % (v, hb), 'train-%s-h%s-graphs-1.json' % (v, hb))
         for hb in ('512-b256', '256-b64') for v in ('rnn+bahdanau', 'rnn+qkv', 'gru+bahdanau')]
pairs += [('attention-%s-fused+optimizer-outside.json' % v, 'attention-%s-fused.json' % v) for v in ('rnn+bahdanau', 'rnn+qkv')]
pairs += [('attention-%s-fused+loss-now.json' % v, 'attention-%s-fused.json' % v) for v in ('rnn+bahdanau', 'rnn+qkv')]
pairs += [('attention-%s-fused+adam-unfused.json' % v, 'attention-%s-fused.json' % v) for v in ('rnn+bahdanau', 'rnn+qkv')]
for a, b in pairs:
    la, lb = losses(a), losses(b)
    if not la or not lb: continue
    d = [abs(x - y) for x, y in zip(la, lb)]
    first = next((i for i, x in enumerate(d) if x != 0), None)
    print('%-45s vs %-40s %s; |difference| at steps 2, 5, 10, 20, 40, 60: %s' % (a, b,
          'equal at every step' if first is None else 'first differ at step %d' % (first + 1),
          ' '.join('%.1e' % d[i - 1] for i in (2, 5, 10, 20, 40, 60) if i <= len(d))))
PY
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
