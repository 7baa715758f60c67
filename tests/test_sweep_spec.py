"""Sweep specs and built-in matrices: every problem is one line before anything trains."""

from __future__ import annotations

import argparse
import json

import pytest

from harness.cli.main import main
from harness.sweep.matrix import MATRICES, list_matrices
from harness.sweep.spec import SweepError, parse_spec

FAST = ["--model_preset", "small", "--devices", "cpu", "--epochs", "1", "--synthetic_students", "40"]


def test_points_grid_and_seeds_become_named_points():
    spec = parse_spec({"base": {"flags": {"epochs": 2}, "set": {"training.batch_size": 16}},
                       "points": {"a": {}, "b": {"flags": {"ablation_mode": "none"}}},
                       "grid": {"learning_rate": [0.001, 0.0003]}, "seeds": [1, 2], "base_point": "b__learning_rate-0.001"})
    assert [p.name for p in spec.points] == ["a__learning_rate-0.001", "a__learning_rate-0.0003",
                                             "b__learning_rate-0.001", "b__learning_rate-0.0003"]
    assert spec.points[3].overrides.flags == {"ablation_mode": "none", "learning_rate": 0.0003}
    assert spec.base.sets == ["training.batch_size=16"] and spec.base.flags == {"epochs": 2}
    assert spec.seeds == [1, 2] and spec.base_point == "b__learning_rate-0.001"
    assert parse_spec({"grid": {"epochs": [1, 2]}}, cli_seeds=[7]).seeds == [7]
    assert parse_spec({"points": {"x": None}, "seeds": [1]}).base_point == "x"


@pytest.mark.parametrize("doc, message", [
    ({"points": {"a": {}}, "seeds": [1], "pionts": {}}, "spec: unknown key 'pionts'"),
    ({"points": {"a": {"flag": {}}}, "seeds": [1]}, "points.a: unknown key 'flag'"),
    ({"points": {"a": {"flags": {"learnin_rate": 1}}}, "seeds": [1]}, "unknown parameter 'learnin_rate'"),
    ({"points": {"a": {"flags": {"n_blocks": 1}}}, "seeds": [1]}, "a spec names the parameter 'num_encoder_blocks'"),
    ({"grid": {"epochs": []}, "seeds": [1]}, "grid.epochs: empty grid"),
    ({"grid": {}, "seeds": [1]}, "grid: expected a non-empty mapping"),
    ({"points": {"a": {}, "A": {}}, "seeds": [1]}, "duplicate point name 'A'"),
    ({"points": {"a b": {}}, "seeds": [1]}, "point name 'a b'"),
    ({"points": {"a": {}}}, "no seeds"),
    ({"points": {"a": {}}, "seeds": [1, 1]}, "duplicate seeds"),
    ({"seeds": [1]}, "neither points nor a grid"),
    ({"points": {"a": {"flags": {"epochs": "many"}}}, "seeds": [1]}, "epochs expects int"),
    ({"points": {"a": {"flags": {"ablation_mode": "most"}}}, "seeds": [1]}, "ablation_mode must be one of"),
    ({"points": {"a": {"flags": {"devices": ["0"]}}}, "seeds": [1]}, "devices is a launch setting"),
    ({"points": {"a": {}}, "seeds": [1], "base_point": "z"}, "base_point 'z' is not one of the points"),
])
def test_bad_specs_are_one_line_errors(doc, message):
    with pytest.raises(SweepError, match=message.replace("(", r"\(")):
        parse_spec(doc)


def _sweep(tmp_path, capsys, spec_text: str, *extra: str) -> tuple[int, str]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text)
    code = main(["sweep", "t", "--spec", str(spec), "--output_base", str(tmp_path / "out"), *FAST, *extra])
    return code, capsys.readouterr().err


def test_points_with_the_same_config_md5_are_refused_before_any_folder(tmp_path, capsys):
    code, err = _sweep(tmp_path, capsys, "points:\n  a: {flags: {epochs: 1}}\n  b: {}\nseeds: [1]\n")
    assert code == 1
    assert err.startswith("harness: error: points a and b resolve to the same config") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_set_errors_name_the_point_and_nothing_is_created(tmp_path, capsys):
    code, err = _sweep(tmp_path, capsys, "points:\n  a: {set: ['training.nope=1']}\nseeds: [1]\n")
    assert code == 1 and err.startswith("harness: error: point a: ") and "training.nope" in err
    assert not (tmp_path / "out").exists()


def test_yaml_and_cli_problems_are_one_line(tmp_path, capsys):
    code, err = _sweep(tmp_path, capsys, "points: [a, \n")
    assert code == 1 and "not valid YAML" in err and err.count("\n") == 1
    # Flags and values a sweep cannot take are usage errors (exit 2; argparse's own raise SystemExit).
    for argv, message in ((["--matrix", "nope"], "unknown matrix"),
                          (["--matrix", "guide", "--experiment_dir", "x"], "unrecognized arguments: --experiment_dir"),
                          (["--matrix", "guide", "--auc_tolerance", "0.1"], "unrecognized arguments: --auc_tolerance")):
        with pytest.raises(SystemExit) as exc:
            main(["sweep", "t", *argv, *FAST])
        assert exc.value.code == 2 and message in capsys.readouterr().err
    assert main(["sweep", "t", *FAST]) == 2
    assert "exactly one of --spec" in capsys.readouterr().err
    assert main(["sweep", "t", "--matrix", "guide", "--runtime", "docker", *FAST]) == 2
    assert "--runtime docker is not supported by sweeps" in capsys.readouterr().err
    assert main(["sweep", "t", "--matrix", "guide", "--ray_address", "auto", *FAST]) == 2
    assert "--ray_address needs --backend ray" in capsys.readouterr().err


def test_guide_matrix_is_listed_and_parses():
    text = list_matrices()
    assert text.startswith("guide: ") and "perf_only" in text and "--ablation_mode none" in text
    spec = parse_spec(MATRICES["guide"])
    assert [p.name for p in spec.points] == ["baseline", "perf_only", "align_only", "interp_max", "no_amp_ref",
                                             "warmup12", "high_sparsity"]
    assert spec.base_point == "baseline" and spec.seeds == [21, 42, 63]


def test_list_matrices_command(capsys):
    assert main(["sweep", "--list-matrices"]) == 0
    assert "high_sparsity" in capsys.readouterr().out


def test_ray_backend_without_ray_is_one_line(tmp_path, capsys, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main(["sweep", "t", "--matrix", "guide", "--backend", "ray", "--output_base", str(tmp_path), *FAST]) == 1
    assert capsys.readouterr().err == "harness: error: --backend ray needs Ray: pip install -e '.[ray]'\n"
    assert not list(tmp_path.iterdir())


def test_shared_storage_verdict_names_the_node():
    from harness.sweep.ray_backend import storage_problem

    assert storage_problem("tok", {"10.0.0.1 (abc)": "tok", "10.0.0.2 (def)": "tok"}) is None
    why = storage_problem("tok", {"10.0.0.1 (abc)": "tok", "10.0.0.2 (def)": "unreadable (FileNotFoundError: x)"})
    assert why == "Ray node 10.0.0.2 (def) cannot see it (unreadable (FileNotFoundError: x))"
    assert "reads a different file" in storage_problem("tok", {"n": "other"})


def test_a_matrix_point_equal_to_the_base_is_dropped_with_a_note_in_sweep_json(tmp_path, capsys, monkeypatch):
    """`--no_amp --torch_deterministic` makes the guide's no_amp_ref the baseline: dropped, not refused."""
    from harness.sweep import runner

    class NoTraining:  # the folders and sweep.json are written before any training: stop there
        def __init__(self, folder, state, backend):
            self.folder = folder

        def run(self, resume):
            return 0

    monkeypatch.setattr(runner, "Sweep", NoTraining)
    out = tmp_path / "out"
    code = main(["sweep", "g", "--matrix", "guide", "--seeds", "1", "--output_base", str(out), *FAST,
                 "--no_amp", "--torch_deterministic"])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "note: point no_amp_ref dropped" in stdout and "equals point baseline's" in stdout
    (sweep,) = out.iterdir()
    state = json.loads((sweep / "sweep.json").read_text())
    names = [p["name"] for p in state["points"]]
    assert "no_amp_ref" not in names and names[0] == "baseline" and len(names) == 6
    (drop,) = state["dropped_points"]
    assert drop["name"] == "no_amp_ref" and drop["same_as"] == "baseline"
    base = next(p for p in state["points"] if p["name"] == "baseline")
    assert drop["config_md5"] == base["config_md5"]
    assert {j["point"] for j in state["jobs"]} == set(names)
    assert not any(p.name.endswith("_no_amp_ref") for p in sweep.iterdir())


def test_the_guide_matrix_without_duplicates_drops_nothing(tmp_path, capsys, monkeypatch):
    from harness.sweep import runner
    from harness.sweep.spec import parse_spec

    spec = parse_spec(runner.matrix("guide"), [1])
    ns = argparse.Namespace(sets=[], from_config=None, **{"model_preset": "small"})
    runs, dropped = runner.resolve_points(spec, ns, None, drop_duplicates=True)
    assert dropped == [] and len(runs) == 7
