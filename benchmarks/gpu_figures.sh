#!/usr/bin/env bash
# Every GPU figure that benchmarks/README.md, docs/training.md and docs/scaling.md leave open, measured
# in one go on one CUDA GPU, each part under its own time limit so one failure cannot eat the others.
#
#   benchmarks/gpu_figures.sh speed       # rollouts (B16 / B256; kept, static (CUDA graphs) and
#                                         # re-prefill; fp32 / bf16),
#                                         # training steps (transformer_small, tokenizer_64, batch 64, bf16),
#                                         # planning steps (kept and static): ~6 minutes on one H200
#   benchmarks/gpu_figures.sh reference   # the reference recipe end to end (`ivideogpt demo --recipe
#                                         # reference`), timed; needs data/pusht_reference (generate it
#                                         # where gym-pusht is installed: docs/training.md)
#   benchmarks/gpu_figures.sh tests       # the tests marked `cuda` (skipped on machines without CUDA,
#                                         # so CI never runs them): ~1 minute
#   benchmarks/gpu_figures.sh --quick speed reference   # CPU smoke run of the same commands, ~2 minutes
#   REFERENCE_FLAGS="--transformer-layers 4 --transformer-width 256" benchmarks/gpu_figures.sh reference
#                                         # any `ivideogpt demo` flags on top of the reference recipe
#
# RESULTS (default outputs/gpu_figures) receives one log per part, the reference run's metrics.json,
# prediction.gif and its exported checkpoint as one tar file: few files, so that a machine that returns
# only a handful of files returns all of them. The runs themselves go to WORK (default
# outputs/gpu_figures_work). PYTHON (default python3) must import torch with CUDA;
# the package is used from src/ without installing it.
set -uo pipefail
cd "$(dirname "$0")/.."

quick=0
if [[ "${1:-}" == "--quick" ]]; then quick=1; shift; fi
parts=("$@")
[[ ${#parts[@]} -eq 0 ]] && parts=(speed)
results=${RESULTS:-outputs/gpu_figures}
work=${WORK:-outputs/gpu_figures_work}
mkdir -p "$results" "$work"
py=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if (( quick )); then device=cpu; smoke=(--quick); else device=cuda; smoke=(); fi

# run LOG LIMIT_S CMD...: the command's output goes to the terminal and to RESULTS/LOG; a failure or
# a timeout is reported and the next command runs.
run() {
  local log=$1 limit=$2; shift 2
  echo "[gpu_figures] $(date -u +%H:%M:%S) $*" | tee -a "$results/$log"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$results/$log"
  local status=${PIPESTATUS[0]}
  (( status != 0 )) && echo "[gpu_figures] exit status $status (124: over ${limit}s)" | tee -a "$results/$log"
  return 0
}

speed() {
  "$py" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" \
    2>&1 | tee -a "$results/speed.log"
  local batches=(16 256); (( quick )) && batches=(2)
  run speed.log 300 "$py" benchmarks/rollout_throughput.py --device "$device" "${smoke[@]}" --presets small \
    --batches "${batches[@]}" --modes kept static per_frame --precisions fp32 bf16
  local batch=64; (( quick )) && batch=1
  run speed.log 120 "$py" benchmarks/training_throughput.py --device "$device" "${smoke[@]}" --bf16 \
    --models transformer_small tokenizer_64 --batch "$batch"
  run speed.log 90 "$py" benchmarks/planning_speed.py --device "$device" "${smoke[@]}"
  run speed.log 90 "$py" benchmarks/planning_speed.py --device "$device" "${smoke[@]}" --cache static
}

reference() {
  local out="$work/reference"
  local sizes=()
  (( quick )) && sizes=(--episodes 24 --test-episodes 2 --tokenizer-steps 4 --tokenizer-batch 2
                        --transformer-steps 4 --transformer-batch 2 --samples 1 --clips-per-episode 1
                        --data "$work/pusht_quick")
  local start=$SECONDS
  local extra=()
  read -r -a extra <<< "${REFERENCE_FLAGS:-}"
  run reference.log 570 "$py" -m ivideogpt demo --recipe reference --out "$out" --export "$out/pusht" "${sizes[@]}" \
    "${extra[@]}"
  echo "[gpu_figures] reference recipe: $((SECONDS - start)) s wall clock" | tee -a "$results/reference.log"
  cp "$out/metrics.json" "$out/prediction.gif" "$results/" 2>/dev/null
  [[ -d "$out/pusht" ]] && tar -cf "$results/pusht_checkpoint.tar" -C "$out" pusht
  return 0
}

tests() {
  local files
  mapfile -t files < <(grep -rl --include="test_*.py" "pytest.mark.cuda" tests)
  run tests.log 300 "$py" -m pytest -q -rs -p no:cacheprovider -m cuda "${files[@]}"
}

for part in "${parts[@]}"; do
  : > "$results/$part.log"  # each part's log holds this run only
  case $part in
    speed) speed ;;
    reference) reference ;;
    tests) tests ;;
    *) echo "unknown part '$part' (speed, reference, tests)" >&2; exit 2 ;;
  esac
done
echo "[gpu_figures] done; results in $results"
