"""Built-in sweep specs: `harness sweep <title> --matrix NAME`, listed by `harness sweep --list-matrices`."""

from __future__ import annotations

import copy
from typing import Any

from harness.sweep.spec import SweepError

# The launch guide's scenario matrix (§5) and launch patterns (§4.3-4.7), one point each. "Fast
# sanity" (§4.2) is not a point: it changes seeds and epochs, which a sweep shares between points
# (use --seeds 21 --epochs 3 on the command line for a fast sweep instead).
GUIDE: dict[str, Any] = {
    "description": "launch guide §5 scenario matrix / §4.3-4.7 launch patterns",
    "base_point": "baseline",
    "seeds": [21, 42, 63],
    "points": {
        "baseline": {"description": "§4.1 balanced performance + interpretability",
                     "flags": {"ablation_mode": "both_lag"}},
        "perf_only": {"description": "§4.3 performance focus: alignment, retention and lag gain off",
                      "flags": {"ablation_mode": "none"}},
        "align_only": {"description": "§4.4 interpretability emphasis: alignment only",
                       "flags": {"ablation_mode": "alignment_only"}},
        "interp_max": {"description": "§5 interpretability max: alignment/retention/lag weights x1.5",
                       "flags": {"ablation_mode": "both_lag", "alignment_weight": 0.45,
                                 "retention_weight": 0.18, "lag_gain_weight": 0.075}},
        "no_amp_ref": {"description": "§4.5 deterministic reference: fp32, deterministic algorithms",
                       "flags": {"ablation_mode": "both_lag", "mixed_precision": False,
                                 "torch_deterministic": True}},
        "warmup12": {"description": "§4.6 extended warm-up of the constraints",
                     "flags": {"ablation_mode": "both_lag", "warmup_constraint_epochs": 12}},
        "high_sparsity": {"description": "§4.7 high sparsity exploration",
                          "flags": {"ablation_mode": "both_lag", "sparsity_loss_weight": 0.35}},
    },
}

MATRICES: dict[str, dict[str, Any]] = {"guide": GUIDE}


def matrix(name: str) -> dict[str, Any]:
    if name not in MATRICES:
        raise SweepError(f"--matrix {name}: unknown matrix (known: {', '.join(sorted(MATRICES))}; "
                         "see --list-matrices)")
    return copy.deepcopy(MATRICES[name])


def list_matrices() -> str:
    lines = []
    for name, doc in MATRICES.items():
        lines.append(f"{name}: {doc['description']} (seeds {doc['seeds']}, base point {doc['base_point']})")
        for point, block in doc["points"].items():
            flags = " ".join(_flag_text(k, v) for k, v in block.get("flags", {}).items())
            lines.append(f"  {point:<14} {flags:<70} {block.get('description', '')}")
    return "\n".join(lines)


def _flag_text(name: str, value: Any) -> str:
    if value is True:
        return f"--{name}"
    if value is False:
        return "--no_amp" if name == "mixed_precision" else f"--no_{name}"
    return f"--{name} {value}"
