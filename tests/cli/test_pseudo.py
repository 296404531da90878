"""``comp fit RECIPE --pseudo-from RUN`` (issue 32, item 3): the same run as README's five hand
commands (same seed, CPU: oof.csv byte-identical), its rows kept in the new run with where they
came from, nothing written into the competition."""

from __future__ import annotations

import hashlib
import json

import pandas as pd

from tests.conftest import run_comp


def _hashes(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _ok(args, cwd):
    code, out, err = run_comp([str(a) for a in args], cwd)
    assert code == 0, out + err
    return out + err


def test_pseudo_from_equals_the_five_commands_by_hand(tmp_path, competition, recipe_file):
    runs = tmp_path / "runs"
    _ok(["fit", recipe_file, "--runs", runs, "--no-report", "--set", "name=base"], tmp_path)
    data_before = _hashes(competition)

    said = _ok(["fit", recipe_file, "--runs", runs, "--no-report", "--set", "name=auto", "--pseudo-from", "base",
                "--min-prob", "0.4"], tmp_path)
    assert _hashes(competition) == data_before  # nothing written into the competition
    record = json.loads((runs / "auto" / "pseudo.json").read_text())
    kept = pd.read_csv(runs / "auto" / "pseudo_labels.csv", dtype=str)
    assert record["from_run"] == "base" and record["min_prob"] == 0.4 and record["test_rows"] == 9
    assert record["kept_rows"] == len(kept) > 0 and sum(record["per_class"].values()) == len(kept)
    assert f"{len(kept)} extra rows" in said
    assert not list(runs.glob(".*pseudo*"))  # the scratch copy is gone

    # By hand: predict with the run's TTA and probabilities into the competition, fit with the rows.
    _ok(["predict", "--run", "base", "--runs", runs, "--tta", "--proba", "--out", competition / "pseudo.csv"], tmp_path)
    _ok(["fit", recipe_file, "--runs", runs, "--no-report", "--set", "name=hand", "--set", "data.extra_csv=pseudo.csv",
         "--set", "data.extra_image_dir=test", "--set", "data.extra_min_prob=0.4"], tmp_path)
    assert (runs / "auto" / "oof.csv").read_bytes() == (runs / "hand" / "oof.csv").read_bytes()

    # The new run's recipe names its own copy of the rows: it resumes and predicts on its own.
    recipe = (runs / "auto" / "recipe.toml").read_text()
    assert f'extra_csv = "{(runs / "auto" / "pseudo_labels.csv").resolve()}"' in recipe
    _ok(["predict", "--run", "auto", "--runs", runs, "--out", tmp_path / "auto.csv"], tmp_path)


def test_pseudo_from_refusals(tmp_path, recipe_file):
    runs = tmp_path / "runs"
    for args, words in ((["--pseudo-from", "nope"], "nope"),
                        (["--pseudo-from", "nope", "--min-prob", "1.5"], "--min-prob"),
                        (["--adapt-bn"], "--pseudo-from")):
        code, out, err = run_comp(["fit", str(recipe_file), "--runs", str(runs), *args], tmp_path)
        assert code == 2 and words in err and "Traceback" not in err, err
