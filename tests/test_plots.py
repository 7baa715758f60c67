"""Plots are pure: plot_data gives what each PNG draws, render_png draws it byte-deterministically and
names the data it drew; and they are drawn for reading (labels on every axis, integer epochs, legends
outside the data, several seeds as a mean with a band, accuracy against the majority rate)."""

from __future__ import annotations

import copy
import hashlib
import json

import matplotlib
import pytest

from harness.folder import plots


def row(seed: int, epoch: int, shift: float = 0.0) -> dict:
    r = {"seed": seed, "epoch": epoch, "train_auc": 0.6 + 0.03 * epoch + shift, "val_auc": 0.62 + 0.02 * epoch + shift,
         "val_accuracy": 0.70 + 0.002 * epoch, "train_bce": 0.65 - 0.01 * epoch, "val_loss": 0.6,
         "train_loss": 0.8, "val_majority_rate": 0.69, "mastery_correlation": 0.1 + shift,
         "mastery_ci_low": 0.05, "mastery_ci_high": 0.15, "gain_correlation": 0.2, "qmastery_correlation": 0.15,
         "qmastery_partial_correlation": float("nan"), "true_mastery_correlation": None}
    for k, share in (("bce", 0.8), ("constraint", 0.15), ("alignment", 0.05), ("lag", 0.0), ("retention", 0.0)):
        r[f"{k}_abs_share"] = share
    return r


def example(student: int) -> dict:
    return {"student": student, "mastery": [0.2, 0.3, 0.35, 0.4], "pred_mastery": [0.1, 0.5, 0.6, 0.2],
            "true_mastery": [0.3, 0.4, 0.5, 0.6], "target": [1, 0, 1, 1], "window_starts": [0, 2]}


HIST = {21: [row(21, e) for e in (1, 2, 3)], 42: [row(42, e, 0.01) for e in (1, 2)]}
EXAMPLES = {42: None, 21: [example(3), example(8)]}


def test_plot_data_is_canonical_json_of_what_is_drawn():
    data = plots.plot_data(HIST, EXAMPLES)
    assert set(data) == set(plots.PLOT_FILES)  # the file names are kept
    json.dumps(data, allow_nan=False)  # JSON values only: NaN is None
    curves = data[plots.LEARNING_CURVES]
    assert curves["seeds"] == [21, 42] and curves["accuracy"]["majority_rate"] == 0.69
    val = curves["auc"]["validation"]  # two seeds: mean, sample std and n per epoch
    assert val["epoch"] == [1, 2, 3] and val["n"] == [2, 2, 1] and val["std"][2] is None
    assert val["mean"][0] == pytest.approx(0.645)
    families = {f["title"]: f for f in data[plots.INTERPRETABILITY]["families"]}
    assert "simulator truth" not in families  # never measured: no empty panel
    assert list(families["asked concept"]["metrics"]) == ["mastery of the asked concept"]
    assert data[plots.TRAJECTORIES]["seed"] == 21
    one = plots.plot_data({21: HIST[21]}, {})
    assert one[plots.INTERPRETABILITY]["families"][0]["metrics"]["mean mastery"]["ci_low"] == [0.05] * 3
    assert plots.plot_data({21: [dict(r, val_majority_rate=None) for r in HIST[21]]}, {}, majority_rate=0.7)[
        plots.LEARNING_CURVES]["accuracy"]["majority_rate"] == 0.7


@pytest.mark.parametrize("name", plots.PLOT_FILES)
def test_same_data_gives_the_same_bytes_and_the_chunks_name_it(name):
    data = plots.plot_data(HIST, EXAMPLES)[name]
    first = plots.render_png(name, data)
    again = plots.render_png(name, copy.deepcopy(data))
    assert first == again and first.startswith(b"\x89PNG")
    text = plots.png_text(first)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert text[plots.DATA_KEY] == hashlib.sha256(canonical.encode()).hexdigest()
    assert text[plots.RENDERER_KEY] == f"matplotlib {matplotlib.__version__}"
    assert "Software" not in text and "Creation Time" not in text  # no stamp, no date
    changed = plots.plot_data({21: [dict(r, val_auc=0.5, mastery_correlation=0.3) for r in HIST[21]], 42: HIST[42]},
                              {21: [dict(example(3), mastery=[0.9] * 4)]})[name]
    assert plots.png_text(plots.render_png(name, changed))[plots.DATA_KEY] != text[plots.DATA_KEY]


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("name", plots.PLOT_FILES)
def test_every_panel_is_labelled_with_integer_epochs_and_legends_outside_the_data(name):
    data = plots.plot_data(HIST, EXAMPLES)[name]
    with matplotlib.pyplot.rc_context(plots.FONT):
        fig = plots._RENDERERS[name](data)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert axes
    for ax in axes:
        assert ax.get_ylabel(), ax.get_title()
        if name != plots.TRAJECTORIES:
            assert ax.get_xlabel() == "epoch"
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert all(float(t).is_integer() for t in ticks), ticks
        legend = ax.get_legend()
        if legend is not None:
            assert not _overlaps(legend.get_window_extent(renderer), ax.get_window_extent(renderer))
    if name == plots.TRAJECTORIES:
        assert axes[-1].get_xlabel().startswith("step")
        (legend,) = fig.legends
        for ax in axes:
            assert not _overlaps(legend.get_window_extent(renderer), ax.get_window_extent(renderer))
    if name == plots.LEARNING_CURVES:  # accuracy is drawn against the majority-class rate
        acc = next(ax for ax in axes if ax.get_title() == "validation accuracy")
        assert any(line.get_label().startswith("majority-class rate 0.690") for line in acc.get_lines())
    matplotlib.pyplot.close(fig)


def test_render_plots_gives_each_file_its_rendered_data():
    files = plots.render_plots(HIST, EXAMPLES)
    data = plots.plot_data(HIST, EXAMPLES)
    assert set(files) == {f"artifacts/{name}" for name in plots.PLOT_FILES}
    for name in plots.PLOT_FILES:
        assert files[f"artifacts/{name}"] == plots.render_png(name, data[name])


def test_png_problem_accepts_another_renderer_of_the_same_data_only():
    data = plots.plot_data(HIST, EXAMPLES)[plots.LEARNING_CURVES]
    png = plots.render_png(plots.LEARNING_CURVES, data)
    other = png.replace(plots.renderer().encode(), b"matplotlib 0.0.0".ljust(len(plots.renderer()), b" "))
    assert plots.png_problem(other, png) is None  # same data drawn by another renderer version
    changed = plots.render_png(plots.LEARNING_CURVES, {**data, "seeds": [99]})
    assert "does not draw what the evidence gives" in plots.png_problem(changed, png)
    assert "not a PNG" in plots.png_problem(b"edited", png)


def test_png_text_reads_every_kind_of_text_chunk():
    """png_text agrees with Pillow (matplotlib's own dependency) on tEXt, zTXt and iTXt chunks."""
    import io as stdio

    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("plain", "latin é")
    info.add_text("zipped", "z" * 2000, zip=True)
    info.add_itxt("intl", "ünïcode ✓", lang="en", tkey="t")
    info.add_itxt("intl_zip", "ü" * 500, zip=True)
    buf = stdio.BytesIO()
    Image.new("L", (2, 2)).save(buf, format="PNG", pnginfo=info)
    text = plots.png_text(buf.getvalue())
    assert text == {"plain": "latin é", "zipped": "z" * 2000, "intl": "ünïcode ✓", "intl_zip": "ü" * 500}
    with pytest.raises(ValueError):
        plots.png_text(b"GIF89a")


def test_a_figure_saved_without_its_data_names_only_the_renderer():
    """The sweep's plots are saved from their figure alone: no data hash is claimed for them."""
    import matplotlib.pyplot as plt

    def png() -> bytes:
        fig, ax = plt.subplots()
        ax.plot([1, 2, 3])
        return plots.figure_png(fig, None)

    first = png()
    assert plots.png_text(first) == {plots.RENDERER_KEY: f"matplotlib {matplotlib.__version__}"}
    assert png() == first  # no date: the same figure gives the same bytes
