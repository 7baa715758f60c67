#!/usr/bin/env bash
# One prepared GPU session (device tool, one H200, ~15 min of device time in all). In order of value:
#   1. epoch time of the paper configuration with AMP, packed (default) and --no_pack_windows, 2 epochs each,
#      with the final-evaluation times (artifacts/timings_seed42.json);
#   2. bit-identical reruns with --no_amp --torch_deterministic (1 epoch, twice, packed default);
#   3. the 5-seed paper table: benchmarks/paper_table.py (AMP and fp32 points, seeds sharing the GPU with
#      --jobs_per_device), resumable: rerun the script to continue where the loan ended;
#   4. training-step speed on CUDA (benchmarks/train_speed.py), if time is left.
# Usage on the GPU machine, from the repo root:
#   DATA=<assist2015_pykt dir> OUT=<results dir> JOBS=5 bash benchmarks/gpu_check.sh
# Each step has its own time limit (seconds, env: T_EPOCH T_DET T_TABLE T_SPEED) so one slow step cannot eat
# the loan; results land in $OUT (the device tool brings $OUT back).
set -uo pipefail
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
DATA=${DATA:-../shared/datasets/assist2015_pykt}
OUT=${OUT:-/tmp/gpu_check}
JOBS=${JOBS:-5}
EPOCHS=${EPOCHS:-12}
WORK=${WORK:-/tmp/gpu_check_work}
mkdir -p "$OUT" "$WORK"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
run() { python3 -m harness.cli run "$@" --dataset assist2015 --data_dir "$DATA" --seeds 42 --devices 0; }
timings() {  # epoch and final-evaluation seconds of the newest folder under $1
  local exp; exp=$(ls -d "$1"/*/ | tail -n 1)
  python3 - "$exp" <<'PY'
import json, sys
from pathlib import Path
exp = Path(sys.argv[1])
t = json.loads((exp / "artifacts" / "timings_seed42.json").read_text())
r = json.loads((exp / "results.json").read_text())
print(json.dumps({"folder": exp.name, "epoch_seconds": t["epoch_seconds"], "final_eval_seconds": t["final_eval_seconds"],
                  "best_val_auc": r["best_epoch_auc"], "test_auc": r["test_auc"], "test_window_auc": r["test_window_auc"]}))
PY
}

echo "== 1. epoch time, paper configuration, AMP, fold 0, 2 epochs: packed (default) then --no_pack_windows"
timeout "${T_EPOCH:-150}" run epoch_packed --epochs 2 --output_base "$WORK/epoch_packed" 2>&1 | tail -n 6
timings "$WORK/epoch_packed" | tee "$OUT/epoch_time_packed.json"
timeout "${T_EPOCH:-150}" run epoch_padded --epochs 2 --no_pack_windows --output_base "$WORK/epoch_padded" 2>&1 | tail -n 6
timings "$WORK/epoch_padded" | tee "$OUT/epoch_time_padded.json"

echo "== 2. bit-identical reruns: --no_amp --torch_deterministic, 1 epoch, twice"
for r in a b; do
  timeout "${T_DET:-120}" run determinism_$r --epochs 1 --no_amp --torch_deterministic --output_base "$WORK/det" 2>&1 | tail -n 3
done
python3 - "$WORK/det" "$OUT/determinism.json" <<'PY'
import json, sys
from pathlib import Path
import torch
runs = sorted(p for p in Path(sys.argv[1]).iterdir() if p.is_dir())
a, b = runs[-2:]
ra, rb = (json.loads((p / "results.json").read_text()) for p in (a, b))
sa = torch.load(a / "model_last.pth", map_location="cpu", weights_only=True)["model"]
sb = torch.load(b / "model_last.pth", map_location="cpu", weights_only=True)["model"]
ca, cb = (json.loads((p / "config.json").read_text())["config_md5"] for p in (a, b))
out = {"config_md5_equal": ca == cb, "results_equal": ra == rb,
       "state_dict_bit_identical": all(torch.equal(sa[k], sb[k]) for k in sa),
       "best_val_auc": [ra["best_epoch_auc"], rb["best_epoch_auc"]]}
print(json.dumps(out, indent=2)); Path(sys.argv[2]).write_text(json.dumps(out, indent=2))
PY

echo "== 3. paper table: 5 seeds x (AMP, fp32), $EPOCHS epochs, $JOBS jobs on the GPU (resumable)"
timeout "${T_TABLE:-420}" python3 benchmarks/paper_table.py --data_dir "$DATA" --output_base "$WORK/table" \
  --devices 0 --jobs_per_device "$JOBS" --epochs "$EPOCHS" --out "$OUT/paper_table.md" 2>&1 | tail -n 30
ls -d "$WORK"/table/*_sweep_paper_table 2>/dev/null | tail -n 1 | while read -r sweep; do
  cp "$sweep/sweep_summary.csv" "$sweep/sweep.json" "$OUT/" 2>/dev/null
  python3 benchmarks/paper_table.py --table_only "$sweep" --out "$OUT/paper_table.md" >/dev/null 2>&1
done

echo "== 4. training-step speed on CUDA (if time is left)"
timeout "${T_SPEED:-90}" python3 benchmarks/train_speed.py --device cuda --steps 20 --amp --configs paper,refstyle 2>&1 \
  | tee "$OUT/train_speed_cuda_amp.txt" | tail -n 8
