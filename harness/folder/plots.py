"""PNG plots in artifacts/: learning curves, interpretability per epoch, mastery trajectories."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402

# Fixed metadata so identical runs write identical PNG bytes.
_META = {"Software": "gainakt-harness", "Creation Time": None}


def _save(fig: Any, path: Path) -> None:
    """Render to memory, then write atomically: a symlink at `path` is replaced, never followed."""
    from harness.folder.experiment import atomic_write_bytes

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata=_META)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_plots(exp_dir: Path, histories: dict[int, list[dict]], trajectories: dict[int, list[dict]],
                examples: dict[int, list[dict] | None]) -> None:
    """Learning curves and interpretability per epoch (every seed with rows, resumed ones included)
    and mastery trajectories of a few students of the first seed that has them."""
    art = exp_dir / "artifacts"
    art.mkdir(exist_ok=True)
    if histories:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for seed, rows in histories.items():
            ep = [r["epoch"] for r in rows]
            axes[0].plot(ep, [r["train_auc"] for r in rows], "--", label=f"train {seed}")
            axes[0].plot(ep, [r["val_auc"] for r in rows], "-o", label=f"val {seed}")
            axes[1].plot(ep, [r["train_loss"] for r in rows], "--", label=f"train {seed}")
            axes[1].plot(ep, [r["val_loss"] for r in rows], "-o", label=f"val BCE {seed}")
        axes[0].set(title="AUC", xlabel="epoch")
        axes[1].set(title="loss", xlabel="epoch")
        for ax in axes:
            ax.legend(fontsize=7)
        _save(fig, art / "learning_curves.png")

        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for seed, rows in histories.items():
            ep = [r["epoch"] for r in rows]
            axes[0].plot(ep, [r["mastery_correlation"] for r in rows], "-o", label=f"mastery {seed}")
            axes[0].fill_between(ep, [r["mastery_ci_low"] for r in rows], [r["mastery_ci_high"] for r in rows],
                                 alpha=0.15)
            axes[0].plot(ep, [r["gain_correlation"] for r in rows], "-s", label=f"gain {seed}")
            traj = trajectories.get(seed) or []
            true_corr = [t.get("true_mastery_correlation") for t in traj]
            if any(v is not None for v in true_corr):
                axes[0].plot([t["epoch"] for t in traj], [v if v is not None else float("nan") for v in true_corr],
                             "-^", label=f"vs true mastery {seed}")
            for key in ("main_loss_share", "constraint_loss_share", "alignment_loss_share", "lag_loss_share",
                        "retention_loss_share"):
                axes[1].plot(ep, [r[key] for r in rows], label=f"{key.replace('_loss_share', '')} {seed}")
        axes[0].set(title="interpretability (validation sample)", xlabel="epoch", ylabel="correlation")
        axes[1].set(title="loss shares", xlabel="epoch")
        for ax in axes:
            ax.legend(fontsize=7)
        _save(fig, art / "interpretability.png")

    with_examples = [(s, ex) for s, ex in examples.items() if ex]
    if with_examples:
        seed, students = with_examples[0]
        fig, axes = plt.subplots(len(students), 1, figsize=(9, 2.2 * len(students)), squeeze=False)
        for ax, ex in zip(axes[:, 0], students, strict=True):
            t = range(len(ex["mastery"]))
            ax.plot(t, ex["mastery"], label="mean mastery")
            ax.plot(t, ex["pred_mastery"], label="mastery of next skill")
            if ex.get("true_mastery"):
                ax.plot(t, ex["true_mastery"], ":", label="true mastery (simulator)")
            ax.scatter(t, ex["target"], s=6, c="k", label="next correct")
            ax.set(title=f"seed {seed}, student {ex['student']}", ylim=(-0.05, 1.05))
        axes[0, 0].legend(fontsize=7, ncol=4)
        _save(fig, art / "mastery_trajectories.png")
