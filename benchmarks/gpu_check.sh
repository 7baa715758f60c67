#!/usr/bin/env bash
# One prepared GPU session (device tool): accuracy + epoch time of the paper configuration with AMP,
# bit-identical reruns with --no_amp --torch_deterministic, and the step-speed benchmark on CUDA.
# Usage on the GPU machine, from the repo root: DATA=<assist2015_pykt dir> OUT=<results dir> bash benchmarks/gpu_check.sh
set -uo pipefail
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
DATA=${DATA:-../shared/datasets/assist2015_pykt}
OUT=${OUT:-/tmp/gpu_check}
EPOCHS=${EPOCHS:-10}
WORK=$(mktemp -d)
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"

echo "== 1. paper configuration, AMP (default), fold 0, $EPOCHS epochs"
python3 benchmarks/accuracy_assist2015.py --data_dir "$DATA" --epochs "$EPOCHS" --output_base "$WORK/acc" \
  --json_out "$OUT/accuracy_paper_amp.json" -- --devices 0 --threads 8 2>&1 | tail -n 25

echo "== 2. bit-identical reruns: --no_amp --torch_deterministic, 1 epoch, twice"
for run in a b; do
  python3 -m harness.cli run determinism_$run --dataset assist2015 --data_dir "$DATA" --epochs 1 --seeds 42 \
    --devices 0 --no_amp --torch_deterministic --output_base "$WORK/det" 2>&1 | tail -n 4
done
python3 - "$WORK/det" "$OUT/determinism.json" <<'PY'
import json, sys, hashlib
from pathlib import Path
import torch
runs = sorted(p for p in Path(sys.argv[1]).iterdir() if p.is_dir())
a, b = runs
ra, rb = (json.loads((p / "results.json").read_text()) for p in runs)
for r in (ra, rb):
    r.pop("experiment_id", None)
sa = torch.load(a / "model_last.pth", map_location="cpu", weights_only=True)["model"]
sb = torch.load(b / "model_last.pth", map_location="cpu", weights_only=True)["model"]
same_weights = all(torch.equal(sa[k], sb[k]) for k in sa)
ca, cb = (json.loads((p / "config.json").read_text())["config_md5"] for p in runs)
out = {"config_md5_equal": ca == cb, "results_equal": ra == rb, "state_dict_bit_identical": same_weights,
       "best_val_auc": [ra["best_epoch_auc"], rb["best_epoch_auc"]]}
print(json.dumps(out, indent=2)); Path(sys.argv[2]).write_text(json.dumps(out, indent=2))
PY
python3 -m harness.cli compare "$(ls -d "$WORK"/det/*_a)" "$(ls -d "$WORK"/det/*_b)" 2>&1 | tail -n 8

echo "== 3. training-step speed on CUDA"
if [ -f benchmarks/train_speed.py ]; then
  python3 benchmarks/train_speed.py --device cuda --steps 20 2>&1 | tee "$OUT/train_speed_cuda.txt" | tail -n 20
  python3 benchmarks/train_speed.py --device cuda --steps 20 --amp 2>&1 | tee "$OUT/train_speed_cuda_amp.txt" | tail -n 20
fi
