#!/usr/bin/env bash
# Starts N processes of a command on this machine with the variables torchrun sets (RANK, WORLD_SIZE,
# LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), for machines where torchrun is missing or
# broken (Debian bookworm's torchrun 1.13 fails under Python 3.11). Waits for all; when one fails, stops
# the others and exits with its status.
#
#   scripts/launch.sh --nproc 2 -- build/s2s train --config configs/multi30k_de_en.json
#   # two machines, 2 processes each (run on each machine, with its --node-rank):
#   scripts/launch.sh --nproc 2 --nnodes 2 --node-rank 0 --master-addr 10.0.0.1 --master-port 29500 -- build/s2s train ...
set -uo pipefail

nproc=1 nnodes=1 node_rank=0 master_addr=127.0.0.1 master_port=""
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while (($#)); do
  case "$1" in
    --nproc) nproc=$2; shift 2 ;;
    --nnodes) nnodes=$2; shift 2 ;;
    --node-rank) node_rank=$2; shift 2 ;;
    --master-addr) master_addr=$2; shift 2 ;;
    --master-port) master_port=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) usage ;;
    *) echo "launch.sh: unknown option $1" >&2; usage ;;
  esac
done
(($#)) || { echo "launch.sh: no command after --" >&2; usage; }
for v in nproc nnodes node_rank; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "launch.sh: --${v//_/-} must be a number, got '${!v}'" >&2; exit 2; }
done
if [ -z "$master_port" ]; then
  ((nnodes == 1)) || { echo "launch.sh: give --master-port when --nnodes > 1" >&2; exit 2; }
  master_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi

world=$((nproc * nnodes))
pids=()
for ((i = 0; i < nproc; i++)); do
  RANK=$((node_rank * nproc + i)) WORLD_SIZE=$world LOCAL_RANK=$i LOCAL_WORLD_SIZE=$nproc \
    MASTER_ADDR=$master_addr MASTER_PORT=$master_port "$@" &
  pids+=($!)
done
# Ctrl-C reaches every process (same process group); pass SIGTERM on as torchrun does.
trap 'kill -TERM "${pids[@]}" 2>/dev/null' TERM

status=0
live=("${pids[@]}")
while ((${#live[@]} > 0)); do
  wait -n -p done_pid "${live[@]}"
  rc=$?
  next=()
  for p in "${live[@]}"; do [ "$p" = "$done_pid" ] || next+=("$p"); done
  live=("${next[@]}")
  if ((rc != 0 && status == 0)); then
    status=$rc
    echo "launch.sh: process $done_pid exited with status $rc; stopping the others" >&2
    ((${#live[@]})) && kill -TERM "${live[@]}" 2>/dev/null
  fi
done
exit $status
