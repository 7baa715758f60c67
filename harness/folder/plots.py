"""PNG plots in artifacts/: learning curves, interpretability per epoch, whole-student mastery trajectories."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402

# Fixed metadata so identical runs write identical PNG bytes.
_META = {"Software": "gainakt-harness", "Creation Time": None}


def _save(fig: Any, out: dict[str, bytes], name: str) -> None:
    """Render to memory: `out[name]` = the PNG bytes (equal data, equal bytes on one renderer)."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata=_META)
    plt.close(fig)
    out[name] = buf.getvalue()


def _col(rows: list[dict], key: str) -> list[float]:
    """A column of the rows, NaN where a row lacks it (older folders) or it is undefined."""
    return [float("nan") if r.get(key) is None else float(r[key]) for r in rows]


def _curves(out: dict[str, bytes], histories: dict[int, list[dict]]) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for seed, rows in histories.items():
        ep = [r["epoch"] for r in rows]
        axes[0].plot(ep, _col(rows, "train_auc"), "--", label=f"train {seed}")
        axes[0].plot(ep, _col(rows, "val_auc"), "-o", label=f"val {seed}")
        axes[1].plot(ep, _col(rows, "train_bce"), "--", label=f"train BCE {seed}")
        axes[1].plot(ep, _col(rows, "val_loss"), "-o", label=f"val BCE {seed}")
        axes[1].plot(ep, _col(rows, "train_loss"), ":", label=f"train objective (BCE + terms) {seed}")
    axes[0].set(title="AUC", xlabel="epoch")
    axes[1].set(title="loss (BCE on the same scale; objective dotted)", xlabel="epoch")
    for ax in axes:
        ax.legend(fontsize=7)
    _save(fig, out, "artifacts/learning_curves.png")


def _interpretability(out: dict[str, bytes], histories: dict[int, list[dict]]) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for seed, rows in histories.items():
        ep = [r["epoch"] for r in rows]
        for value, stem, style, label in (("mastery_correlation", "mastery", "-o", "mastery (guide)"),
                                          ("gain_correlation", "gain", "-s", "gain (guide)"),
                                          ("qmastery_correlation", "qmastery", "-d", "asked-concept mastery"),
                                          ("qmastery_partial_correlation", "qmastery_partial", "--d",
                                           "asked-concept mastery, time removed"),
                                          ("true_mastery_correlation", "true_mastery", "-^", "vs true mastery")):
            vals = _col(rows, value)
            if all(v != v for v in vals):  # all NaN: not measured in this run
                continue
            axes[0].plot(ep, vals, style, label=f"{label} {seed}")
            axes[0].fill_between(ep, _col(rows, f"{stem}_ci_low"), _col(rows, f"{stem}_ci_high"), alpha=0.12)
        for key in ("bce", "constraint", "alignment", "lag", "retention"):
            axes[1].plot(ep, _col(rows, f"{key}_abs_share"), label=f"{key} {seed}")
    axes[0].axhline(0.0, color="grey", lw=0.5)
    axes[0].set(title="mean over sampled validation students (95% bootstrap CI)", xlabel="epoch",
                ylabel="correlation")
    axes[1].set(title="|term| / sum |terms| of the training objective", xlabel="epoch", ylim=(-0.02, 1.02))
    for ax in axes:
        ax.legend(fontsize=6)
    _save(fig, out, "artifacts/interpretability.png")


def _trajectories(out: dict[str, bytes], seed: int, students: list[dict]) -> None:
    fig, axes = plt.subplots(len(students), 1, figsize=(9, 2.2 * len(students)), squeeze=False)
    for ax, ex in zip(axes[:, 0], students, strict=True):
        t = range(len(ex["mastery"]))
        ax.plot(t, ex["mastery"], label="mean mastery")
        ax.plot(t, ex["pred_mastery"], label="mastery of next skill")
        if ex.get("true_mastery"):
            ax.plot(t, ex["true_mastery"], ":", label="true mastery (simulator)")
        ax.scatter(t, ex["target"], s=6, c="k", label="next correct")
        starts = ex.get("window_starts") or [0]
        for i, x in enumerate(starts[1:]):
            ax.axvline(x - 0.5, color="red", ls="--", lw=0.8, label="window boundary (model resets)" if i == 0 else None)
        ax.set(title=f"seed {seed}, student {ex['student']} ({len(starts)} window(s), all steps)", ylim=(-0.05, 1.05))
    axes[0, 0].legend(fontsize=7, ncol=5)
    _save(fig, out, "artifacts/mastery_trajectories.png")


def render_plots(histories: dict[int, list[dict]], examples: dict[int, list[dict] | None]) -> dict[str, bytes]:
    """{folder-relative name: PNG bytes}: learning curves and interpretability per epoch (every seed with
    rows) and whole-student mastery trajectories (window boundaries marked) of the first seed that has them.
    A pure function of its arguments."""
    out: dict[str, bytes] = {}
    if histories:
        _curves(out, histories)
        _interpretability(out, histories)
    with_examples = [(s, ex) for s, ex in examples.items() if ex]
    if with_examples:
        _trajectories(out, *with_examples[0])
    return out


def png_text(data: bytes) -> dict[str, str]:
    """The tEXt chunks of a PNG (key -> text); empty for anything that is not a PNG."""
    import struct

    out: dict[str, str] = {}
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return out
    pos = 8
    while pos + 8 <= len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"tEXt" and b"\x00" in body:
            key, _, value = body.partition(b"\x00")
            out[key.decode("latin-1")] = value.decode("latin-1")
        if kind == b"IEND":
            break
        pos += 12 + length
    return out


def png_problem(found: bytes, expected: bytes) -> str | None:
    """Why a plot in a folder does not show what its evidence gives (None: it does). Other bytes are
    accepted only when both record the same drawn data and were drawn by another renderer version."""
    f, e = png_text(found), png_text(expected)
    key, renderer = "harness:data-sha256", "harness:renderer"
    if f.get(key) and f.get(key) == e.get(key):
        if f.get(renderer) != e.get(renderer):
            return None
        return "same data but other pixels than this renderer draws (edited after it was drawn)"
    return "does not draw what the evidence gives (edited, or drawn from other data)"
