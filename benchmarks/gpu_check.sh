#!/usr/bin/env bash
# The prepared GPU check of issue 14, sized for one device-tool call (one H200; 15 min of device time per
# session in all, start-up included; at most 10 min per call). Steps, in order of value, each with its own cap,
# and the whole script stops by itself after BUDGET seconds (default 520):
#   1. epoch time: paper configuration, AMP, fold 0, seed 42, 2 epochs, one job on the GPU     (cap T_EPOCH=90)
#   2. bit-identical reruns: --no_amp --torch_deterministic, 1 epoch, twice                     (cap T_DET=100)
#   3. the 5-seed paper table with AMP: seeds 21 42 63 84 105, 12 epochs, 5 jobs sharing the GPU
#      (--jobs_per_device 5): aggregate seconds per seed-epoch and the 5-seed wall time          (cap T_TABLE=330)
#   4. the 5-seed paper table in fp32 (the reference's precision), with whatever time is left
# The seeds of a table run side by side, so a table stopped at its cap may have no finished seed: the caps
# give the AMP table the most time, and the cheap determinism check runs before it.
# Only the checkout travels to the device machine (../shared does not), so first, here, at no device time:
#     bash benchmarks/gpu_check.sh --prepare        # copies the dataset into .gpu_data/ (git-ignored)
# then one device call:
#     run(command="bash benchmarks/gpu_check.sh", carry=[".gpu_data"], timeout_s=570)
# Results come back under $OUT (at most 8 files): gpu.txt, gpu_check.log, timings.json (single-job epoch time and
# each table's throughput), paper_table_amp.md, sweep_summary_amp.csv, determinism.json, paper_table_fp32.md,
# sweep_summary_fp32.csv.
# `bash benchmarks/gpu_check.sh compile` is a second prepared call, for a later loan: training.compile
# (reduce-overhead, then default) against eager, paired steps of benchmarks/train_speed.py.
# A CPU dry run of the same script (tiny model; proves it runs end to end on the packages the GPU image has):
#     DEVICES=cpu BUDGET=400 EPOCHS=1 SEEDS=21,42 JOBS=2 TINY=1 OUT=/tmp/gpu_dry bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
if [[ "${1:-}" == "--prepare" ]]; then
  src=${DATA_SRC:-../shared/datasets/assist2015_pykt}
  [[ -f "$src/train_valid.csv" && -f "$src/test.csv" ]] || {
    echo "gpu_check.sh --prepare: $src is not a pyKT ASSISTments 2015 folder (train_valid.csv, test.csv); set DATA_SRC" >&2
    exit 2; }
  rm -rf .gpu_data/assist2015_pykt && mkdir -p .gpu_data && cp -r "$src" .gpu_data/assist2015_pykt \
    && chmod -R u+w .gpu_data || exit 1
  exclude=$(git rev-parse --git-path info/exclude)  # a worktree's .git is a file: ask git where it is
  grep -qx '/.gpu_data/' "$exclude" 2>/dev/null || echo '/.gpu_data/' >> "$exclude"
  du -sh .gpu_data && echo "now: run(command=\"bash benchmarks/gpu_check.sh\", carry=[\".gpu_data\"], timeout_s=570)"
  exit 0
fi
export PYTHONPATH="$ROOT" PYTHONUNBUFFERED=1
DATA=${DATA:-$ROOT/.gpu_data/assist2015_pykt}
OUT=${OUT:-/tmp/gpu_check}
WORK=${WORK:-/tmp/gpu_check_work}
DEVICES=${DEVICES:-0}
JOBS=${JOBS:-5}
EPOCHS=${EPOCHS:-12}
SEEDS=${SEEDS:-21,42,63,84,105}
BUDGET=${BUDGET:-520}
PY=${PY:-python3}
# TINY=1: a 16-wide one-block model, for the CPU dry run only.
TINY_ARGS=()
[[ "${TINY:-0}" == 1 ]] && TINY_ARGS=(--d_model 16 --n_heads 2 --num_encoder_blocks 1 --d_ff 16)
mkdir -p "$OUT" "$WORK"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1

left() { echo $((BUDGET - SECONDS)); }
cap() {  # the smaller of a step's cap and the time left, at least 1
  local l; l=$(left); (( l < $1 )) && echo $(( l > 1 ? l : 1 )) || echo "$1"
}
compile_check() {  # `gpu_check.sh compile`: a loan of its own for training.compile against eager
  local dev=${TSDEV:-cuda} steps=${STEPS:-40} configs=${CONFIGS:-paper} mode
  for mode in ${COMPILE_MODES:-reduce-overhead default}; do
    echo "== compile $mode against eager: $configs, $steps paired steps, real fold-0 packed batches (cap $(cap 240)s)"
    timeout "$(cap 240)" "$PY" benchmarks/train_speed.py --device "$dev" --amp --configs "$configs" --compile "$mode" \
      --compile-width-multiple 200 --compile-rows-multiple 8 --steps "$steps" --data "$DATA" \
      --json "$OUT/compile_$mode.json" | tail -n 12
  done
  echo "== done in ${SECONDS}s; files in $OUT:"; ls "$OUT"
}
hrun() {  # $1: time limit in seconds; the rest: harness run arguments
  local t=$1; shift
  timeout "$t" "$PY" -m harness.cli run "$@" --dataset assist2015 --data_dir "$DATA" --devices "$DEVICES" \
    "${TINY_ARGS[@]}" | tail -n 3
}
newest() { ls -d "$1"/*/ 2>/dev/null | tail -n 1; }
record() {  # $1: key in $OUT/timings.json; $2: experiment folder; $3: wall seconds of the step ("" if none)
  "$PY" - "$OUT/timings.json" "$@" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
out, key, exp, wall = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3] or "/nonexistent"), sys.argv[4]
doc = json.loads(out.read_text()) if out.is_file() else {}
entry: dict = {"folder": exp.name}
epochs = exp / "metrics_epoch.csv"
if epochs.is_file():
    rows = pd.read_csv(epochs)
    entry["seed_epochs_run"] = len(rows)
    entry["seeds_with_epochs"] = int(rows["seed"].nunique())
    entry["epoch_seconds_mean"] = float(rows["epoch_seconds"].mean()) if "epoch_seconds" in rows else None
for t in sorted((exp / "artifacts").glob("timings_seed*.json")) if exp.is_dir() else []:
    entry.setdefault("per_seed", {})[t.stem.removeprefix("timings_seed")] = json.loads(t.read_text())
if wall:
    entry["step_wall_seconds"] = float(wall)
    if entry.get("seed_epochs_run"):
        entry["wall_seconds_per_seed_epoch"] = float(wall) / entry["seed_epochs_run"]
if "seed_epochs_run" not in entry:
    entry["error"] = "no epoch finished within the step's cap"
doc[key] = entry
doc["what"] = ("single_job: one seed alone on the device; table_<point>: the paper table's seeds sharing the device "
               "(--jobs_per_device). epoch_seconds_mean: mean wall time of one seed's epoch (training + its "
               "validation pass) over all seed-epochs; wall_seconds_per_seed_epoch: the step's wall time (start-up, "
               "data, final evaluations included) over the seed-epochs it ran")
out.write_text(json.dumps(doc, indent=2))
print(key, json.dumps({k: v for k, v in entry.items() if k != "per_seed"}))
PY
}

echo "== 0. machine ($(date -u +%FT%TZ)); budget ${BUDGET}s"
[[ "${1:-}" == "compile" ]] && { compile_check; exit 0; }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
            torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"; } | tee "$OUT/gpu.txt"
[[ -d "$DATA" ]] || { echo "dataset not found: $DATA (run: bash benchmarks/gpu_check.sh --prepare)"; exit 2; }

echo "== 1. epoch time: paper configuration, AMP, fold 0, seed 42, 2 epochs, one job (cap ${T_EPOCH:-90}s)"
hrun "$(cap "${T_EPOCH:-90}")" epoch_time --epochs 2 --seeds 42 --output_base "$WORK/epoch"
record single_job "$(newest "$WORK/epoch")" ""

table() {  # $1: amp or fp32, $2: cap in seconds
  local point=$1 t; t=$(cap "$2")
  echo "== paper table, $point: seeds $SEEDS, $EPOCHS epochs, $JOBS jobs per device (cap ${t}s)"
  local start=$SECONDS
  timeout "$t" "$PY" benchmarks/paper_table.py --points "$point" --title "paper_table_$point" \
    --data_dir "$DATA" --output_base "$WORK/table" --devices "$DEVICES" --jobs_per_device "$JOBS" \
    --epochs "$EPOCHS" --seeds "$SEEDS" --out "$OUT/paper_table_$point.md" -- "${TINY_ARGS[@]}" | tail -n 25
  echo "wall time of the $point table: $((SECONDS - start)) s (the timeout stops a step at its cap)"
  local sweep; sweep=$(ls -d "$WORK"/table/*_sweep_paper_table_"$point" 2>/dev/null | tail -n 1)
  if [[ -n "$sweep" ]]; then  # a step stopped at its cap still gets the table of its finished seeds
    cp "$sweep/sweep_summary.csv" "$OUT/sweep_summary_$point.csv" 2>/dev/null
    "$PY" benchmarks/paper_table.py --table_only "$sweep" --out "$OUT/paper_table_$point.md" > /dev/null 2>&1
    record "table_$point" "$(ls -d "$sweep"/*_"$point"/ | tail -n 1)" "$((SECONDS - start))"
  fi
}

echo "== 2. bit-identical reruns: --no_amp --torch_deterministic, 1 epoch, twice (cap ${T_DET:-100}s)"
for r in a b; do
  hrun "$(cap $(( ${T_DET:-100} / 2 )))" "determinism_$r" --epochs 1 --seeds 42 --no_amp --torch_deterministic \
    --output_base "$WORK/det"
done
"$PY" - "$WORK/det" "$OUT/determinism.json" <<'PY'
import json, sys
from pathlib import Path
import torch
runs = sorted(p for p in Path(sys.argv[1]).iterdir() if p.is_dir()) if Path(sys.argv[1]).is_dir() else []
def finished(p: Path) -> bool:
    r = p / "results.json"
    return r.is_file() and json.loads(r.read_text()).get("status") in ("completed", "early_stopped")


done = [p for p in runs[-2:] if finished(p)]
if len(done) < 2:
    out = {"error": f"{len(done)} of 2 runs finished within the cap", "folders": [p.name for p in runs[-2:]]}
else:
    a, b = done
    ra, rb = (json.loads((p / "results.json").read_text()) for p in (a, b))
    sa = torch.load(a / "model_last.pth", map_location="cpu", weights_only=True)["model"]
    sb = torch.load(b / "model_last.pth", map_location="cpu", weights_only=True)["model"]
    ca, cb = (json.loads((p / "config.json").read_text())["config_md5"] for p in (a, b))
    out = {"what": "two runs of one command, --no_amp --torch_deterministic, 1 epoch, seed 42",
           "config_md5_equal": ca == cb, "results_equal": ra == rb,
           "state_dict_bit_identical": all(torch.equal(sa[k], sb[k]) for k in sa),
           "best_val_auc": [ra.get("best_epoch_auc"), rb.get("best_epoch_auc")], "folders": [a.name, b.name]}
print(json.dumps(out, indent=2)); Path(sys.argv[2]).write_text(json.dumps(out, indent=2))
PY

table amp "${T_TABLE:-330}"
if (( $(left) > 60 )); then table fp32 "$(left)"; else echo "== fp32 table skipped: $(left) s left"; fi
echo "== done in ${SECONDS}s; files in $OUT:"; ls "$OUT"
