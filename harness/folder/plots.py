"""PNG plots in artifacts/: learning curves, interpretability per epoch, whole-student mastery trajectories.

Two pure steps, so a plot is a function of the evidence and can be checked against it:

- ``plot_data(histories, examples)`` gives, per plot file name, the canonical JSON-able data the plot
  draws (nothing else enters the picture);
- ``render_png(name, data)`` draws it: equal data gives equal bytes on one machine (no date and no
  Software stamp in the PNG; matplotlib's Agg renderer is deterministic). Two PNG text chunks name what
  was drawn: ``harness:data-sha256`` (sha256 of ``canonical_json(data)``) and ``harness:renderer``
  (``matplotlib <version>``); ``png_text(png)`` reads them back.

Drawn for reading at the width a README shows (about 900 px): integer epoch ticks, a label on every
axis, one panel per metric family, legends outside the data, several seeds as their mean with a band
(± one sample standard deviation over the seeds), validation accuracy against the majority-class rate.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import statistics
import struct
import zlib
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

LEARNING_CURVES = "learning_curves.png"
INTERPRETABILITY = "interpretability.png"
TRAJECTORIES = "mastery_trajectories.png"
PLOT_FILES = (LEARNING_CURVES, INTERPRETABILITY, TRAJECTORIES)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DATA_KEY = "harness:data-sha256"
RENDERER_KEY = "harness:renderer"
DPI = 100
FONT: dict[Any, Any] = {"font.size": 10, "axes.titlesize": 10.5, "axes.labelsize": 10, "legend.fontsize": 9,
        "xtick.labelsize": 9, "ytick.labelsize": 9}

# (column in metrics_epoch.csv, its CI stem, label)
_CURVES = {
    "auc": (("train_auc", "train"), ("val_auc", "validation")),
    "loss": (("train_bce", "train BCE"), ("val_loss", "validation BCE"),
             ("train_loss", "train objective (BCE + weighted terms)")),
}
_FAMILIES = (
    ("guide metrics: mean over concepts", "correlation with correct at t+1",
     (("mastery_correlation", "mastery", "mean mastery"), ("gain_correlation", "gain", "mean gain"))),
    ("asked concept", "correlation with correct at t+1",
     (("qmastery_correlation", "qmastery", "mastery of the asked concept"),
      ("qmastery_partial_correlation", "qmastery_partial", "same, step index partialled out"))),
    ("simulator truth", "correlation with true mastery",
     (("true_mastery_correlation", "true_mastery", "mastery of the asked concept vs its true mastery"),)),
)
_SHARES = tuple((f"{k}_abs_share", k) for k in ("bce", "constraint", "alignment", "lag", "retention"))


# ---------------------------------------------------------------------------------------------
# Data


def _num(v: Any) -> float | None:
    """A finite float, or None (missing, NaN, text)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _series(rows: list[dict], key: str) -> list[float | None]:
    return [_num(r.get(key)) for r in rows]


def _epochs(rows: list[dict]) -> list[int]:
    return [int(r["epoch"]) for r in rows]


def _over_seeds(histories: Mapping[int, list[dict]], key: str) -> dict[str, Any]:
    """Per epoch over the seeds that have a value there: epochs, mean, sample std (None below 2), n."""
    by_epoch: dict[int, list[float]] = {}
    for rows in histories.values():
        for e, v in zip(_epochs(rows), _series(rows, key), strict=True):
            if v is not None:
                by_epoch.setdefault(e, []).append(v)
    epochs = sorted(by_epoch)
    return {"epoch": epochs, "mean": [statistics.fmean(by_epoch[e]) for e in epochs],
            "std": [statistics.stdev(by_epoch[e]) if len(by_epoch[e]) > 1 else None for e in epochs],
            "n": [len(by_epoch[e]) for e in epochs]}


def _metric(histories: Mapping[int, list[dict]], key: str, stem: str | None = None) -> dict[str, Any] | None:
    """One metric as drawn: one seed's values (with its 95% CI when `stem` has one), or the mean of
    several seeds with their std; None when no epoch has a value."""
    if len(histories) == 1:
        rows = next(iter(histories.values()))
        values = _series(rows, key)
        if all(v is None for v in values):
            return None
        out: dict[str, Any] = {"epoch": _epochs(rows), "value": values}
        if stem is not None:
            low, high = _series(rows, f"{stem}_ci_low"), _series(rows, f"{stem}_ci_high")
            if any(v is not None for v in low + high):
                out["ci_low"], out["ci_high"] = low, high
        return out
    over = _over_seeds(histories, key)
    return over if over["epoch"] else None


def _majority_rate(histories: Mapping[int, list[dict]]) -> float | None:
    """The validation set's majority-class rate (the same students every epoch), as training recorded it."""
    for rows in histories.values():
        for r in rows:
            rate = _num(r.get("val_majority_rate"))
            if rate is not None:
                return rate
    return None


def plot_data(histories: Mapping[int, list[dict]], examples: Mapping[int, list[dict] | None], *,
              majority_rate: float | None = None) -> dict[str, Any]:
    """Per plot file name, the canonical data it draws (JSON values only; NaN as None).

    `histories`: per seed its epochs in order (metrics_epoch.csv rows, the trajectory's keys merged in:
    ``val_majority_rate``); `examples`: per seed the whole-student series of its final evaluation;
    `majority_rate`: the validation majority-class rate where the histories do not record it (older
    folders: a final evaluation's ``val_majority_rate``). The learning curves and interpretability plots
    need at least one epoch; the trajectories plot uses the first seed (in seed order) with examples.
    """
    hist = {int(s): rows for s, rows in sorted(histories.items()) if rows}
    out: dict[str, Any] = {}
    if hist:
        seeds = sorted(hist)
        out[LEARNING_CURVES] = {
            "seeds": seeds,
            "auc": {label: _metric(hist, key) for key, label in _CURVES["auc"]},
            "accuracy": {"validation": _metric(hist, "val_accuracy"),
                         "majority_rate": _majority_rate(hist) if _majority_rate(hist) is not None else _num(majority_rate)},
            "loss": {label: _metric(hist, key) for key, label in _CURVES["loss"]},
        }
        families = []
        for title, ylabel, metrics in _FAMILIES:
            drawn = {label: m for key, stem, label in metrics if (m := _metric(hist, key, stem)) is not None}
            if drawn:
                families.append({"title": title, "ylabel": ylabel, "metrics": drawn})
        shares = {label: m for key, label in _SHARES if (m := _metric(hist, key)) is not None}
        out[INTERPRETABILITY] = {"seeds": seeds, "families": families, "loss_shares": shares}
    with_examples = [(int(s), ex) for s, ex in sorted(examples.items()) if ex]
    if with_examples:
        seed, students = with_examples[0]
        out[TRAJECTORIES] = {"seed": seed, "students": [
            {"student": ex["student"], "window_starts": list(ex.get("window_starts") or [0]),
             **{k: [_num(v) for v in ex.get(k) or []] for k in ("mastery", "pred_mastery", "true_mastery", "target")}}
            for ex in students]}
    return out


def canonical_json(data: Any) -> str:
    """The bytes hashed into ``harness:data-sha256``: sorted keys, compact separators."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def data_sha256(data: Any) -> str:
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Rendering


def renderer() -> str:
    return f"matplotlib {matplotlib.__version__}"


def figure_png(fig: Any, data: Any) -> bytes:
    """The figure as PNG bytes, closed afterwards: no date, no Software stamp, and the harness text chunks
    naming the renderer and, unless `data` is None (a figure drawn from elsewhere), the data drawn."""
    buf = io.BytesIO()
    meta = {"Software": None, RENDERER_KEY: renderer()} | ({} if data is None else {DATA_KEY: data_sha256(data)})
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.15, metadata=meta)
    plt.close(fig)
    return buf.getvalue()


def png_text(png: bytes) -> dict[str, str]:
    """The text chunks of a PNG as {keyword: text}: tEXt (Latin-1), zTXt (zlib) and iTXt (UTF-8, compressed
    or not). A file that is not a PNG, or a chunk cut short, is a ValueError."""
    if not png.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    out: dict[str, str] = {}
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        body = png[pos + 8:pos + 8 + length]
        if len(body) < length:
            raise ValueError(f"PNG chunk {kind!r} cut short")
        if kind == b"tEXt":
            key, _, text = body.partition(b"\0")
            out[key.decode("latin-1")] = text.decode("latin-1")
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            out[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _, _, rest = rest.partition(b"\0")  # language tag
            _, _, text = rest.partition(b"\0")  # translated keyword
            out[key.decode("latin-1")] = (zlib.decompress(text) if compressed else text).decode("utf-8")
        elif kind == b"IEND":
            break
        pos += 12 + length  # length, type, data, CRC
    return out


def _epoch_axis(ax: Any) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def _xs(m: dict[str, Any]) -> list[int]:
    return m["epoch"]


def _nan(values: list[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def _draw(ax: Any, m: dict[str, Any], label: str, style: str = "-o", color: Any = None) -> None:
    """One metric: a seed's line with its CI band, or the mean of several seeds with a ± std band."""
    x = _xs(m)
    if "value" in m:
        line = ax.plot(x, _nan(m["value"]), style, label=label, color=color, markersize=4)[0]
        if "ci_low" in m:
            ax.fill_between(x, _nan(m["ci_low"]), _nan(m["ci_high"]), color=line.get_color(), alpha=0.15, lw=0)
        return
    line = ax.plot(x, m["mean"], style, label=label, color=color, markersize=4)[0]
    low = [mu - s if s is not None else math.nan for mu, s in zip(m["mean"], m["std"], strict=True)]
    high = [mu + s if s is not None else math.nan for mu, s in zip(m["mean"], m["std"], strict=True)]
    ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, lw=0)


def _legend_below(ax: Any, ncol: int = 1) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, frameon=False)


def _seeds_note(seeds: list[int], single: str) -> str:
    if len(seeds) == 1:
        return f"seed {seeds[0]}{single}"
    return f"mean of seeds {', '.join(map(str, seeds))}; band ± 1 sd over seeds"


def _render_learning_curves(data: dict[str, Any]) -> Any:
    fig, (ax_auc, ax_acc, ax_loss) = plt.subplots(1, 3, figsize=(13, 4.1))
    for (label, m), style in zip(data["auc"].items(), ("--o", "-o"), strict=True):
        if m is not None:
            _draw(ax_auc, m, label, style)
    ax_auc.set(title="AUC", ylabel="AUC")
    val = data["accuracy"]["validation"]
    if val is not None:
        _draw(ax_acc, val, "validation accuracy", "-o", color="tab:blue")
    rate = data["accuracy"]["majority_rate"]
    if rate is not None:
        ax_acc.axhline(rate, color="tab:red", ls="--", lw=1.2,
                       label=f"majority-class rate {rate:.3f} (a collapsed model sits on it)")
    ax_acc.set(title="validation accuracy", ylabel="accuracy")
    for (label, m), style in zip(data["loss"].items(), ("--o", "-o", ":o"), strict=True):
        if m is not None:
            _draw(ax_loss, m, label, style)
    ax_loss.set(title="loss", ylabel="loss per valid position")
    for ax in (ax_auc, ax_acc, ax_loss):
        _epoch_axis(ax)
        _legend_below(ax)
    fig.suptitle(f"Learning curves ({_seeds_note(data['seeds'], '')})")
    return fig


def _render_interpretability(data: dict[str, Any]) -> Any:
    panels = len(data["families"]) + 1
    cols = 2
    rows = (panels + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 4.2 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax, family in zip(flat, data["families"], strict=False):
        for (label, m), style in zip(family["metrics"].items(), ("-o", "--s"), strict=False):
            _draw(ax, m, label, style)
        ax.axhline(0.0, color="grey", lw=0.6)
        ax.set(title=family["title"], ylabel=family["ylabel"])
    share_ax = flat[len(data["families"])]
    for label, m in data["loss_shares"].items():
        _draw(share_ax, m, label, "-o")
    share_ax.set(title="part of the training objective", ylabel="|term| / sum of |terms|", ylim=(-0.02, 1.02))
    for ax in flat[:panels]:
        _epoch_axis(ax)
        _legend_below(ax, ncol=2)
    for ax in flat[panels:]:
        ax.set_visible(False)
    band = "band: 95% bootstrap CI over students" if len(data["seeds"]) == 1 else ""
    fig.suptitle("Interpretability per epoch over the sampled validation students "
                 f"({_seeds_note(data['seeds'], '; ' + band if band else '')})")
    return fig


def _render_trajectories(data: dict[str, Any]) -> Any:
    students = data["students"]
    fig, axes = plt.subplots(len(students), 1, figsize=(10, 2.5 * len(students) + 0.8), squeeze=False)
    for ax, ex in zip(axes[:, 0], students, strict=True):
        t = list(range(len(ex["mastery"])))
        ax.plot(t, _nan(ex["mastery"]), color="tab:blue", label="mean mastery over concepts")
        ax.plot(t, _nan(ex["pred_mastery"]), color="tab:orange", label="mastery of the concept asked next")
        if any(v is not None for v in ex["true_mastery"]):
            ax.plot(t, _nan(ex["true_mastery"]), ":", color="tab:green", lw=1.6,
                    label="true mastery of that concept (simulator)")
        ax.scatter(t, _nan(ex["target"]), s=9, c="k", zorder=3, label="next answer (1 correct, 0 wrong)")
        for i, x in enumerate(ex["window_starts"][1:]):
            ax.axvline(x - 0.5, color="tab:red", ls="--", lw=0.9,
                       label="window boundary (the model restarts)" if i == 0 else None)
        ax.set(ylim=(-0.08, 1.08), ylabel="mastery / answer", xlim=(-0.5, max(len(t) - 0.5, 0.5)),
               title=f"student {ex['student']}: {len(t)} steps in {len(ex['window_starts'])} window(s)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1, 0].set_xlabel("step (interaction of the student)")
    handles: dict[str, Any] = {}
    for ax in axes[:, 0]:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    fig.suptitle(f"Mastery trajectories of the best model, seed {data['seed']} (validation students)")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / fig.get_figheight()))
    fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=3, frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.25 / fig.get_figheight()))
    return fig


_RENDERERS = {LEARNING_CURVES: _render_learning_curves, INTERPRETABILITY: _render_interpretability,
              TRAJECTORIES: _render_trajectories}


def render_png(name: str, data: dict[str, Any]) -> bytes:
    """The PNG of plot `name` drawing `data` (from plot_data); byte-identical for equal data on one machine."""
    with plt.rc_context(FONT):
        fig = _RENDERERS[name](data)
        if name != TRAJECTORIES:
            fig.tight_layout()
        return figure_png(fig, data)


# ---------------------------------------------------------------------------------------------
# Files


def render_plots(histories: Mapping[int, list[dict]], examples: Mapping[int, list[dict] | None], *,
                 majority_rate: float | None = None) -> dict[str, bytes]:
    """{folder-relative name: PNG bytes} of a run's plots: a pure function of the seeds' histories and
    examples (see plot_data); the folder's derivation writes them (harness/folder/derive.py)."""
    return {f"artifacts/{name}": render_png(name, data)
            for name, data in plot_data(histories, examples, majority_rate=majority_rate).items()}


def figure_bytes(fig: Any, data: Any) -> bytes:
    """A figure drawn elsewhere (a sweep's plots) as PNG bytes, with `data` (what it draws) hashed into
    its harness:data-sha256 chunk."""
    fig.tight_layout()
    return figure_png(fig, data)


def png_problem(found: bytes, expected: bytes) -> str | None:
    """Why a plot in a folder does not show what its evidence gives (None: it does). Other bytes are
    accepted only when both record the same drawn data and another renderer drew the folder's."""
    try:
        f, e = png_text(found), png_text(expected)
    except ValueError:
        return "is not a PNG with the harness's text chunks (edited, or not drawn by the harness)"
    if f.get(DATA_KEY) and f.get(DATA_KEY) == e.get(DATA_KEY):
        if f.get(RENDERER_KEY) != e.get(RENDERER_KEY):
            return None
        return "same data but other pixels than this renderer draws (edited after it was drawn)"
    return "does not draw what the evidence gives (edited, or drawn from other data)"
