"""The search space: checked against the recipe (its loader's own validation) before anything trains."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from comp.errors import CompError
from comp.recipe import load_recipe
from comp.tune.space import load_space
from tests.conftest import write_recipe


@pytest.fixture
def recipe(tmp_path: Path):
    return load_recipe(write_recipe(tmp_path / "tiny.toml", tmp_path / "data"))


def space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(text)
    return path


def refused(tmp_path: Path, recipe, text: str) -> str:
    with pytest.raises(CompError) as err:
        load_space(space(tmp_path, text), recipe)
    return str(err.value)


def test_a_space_becomes_overrides_the_recipe_accepts(tmp_path, recipe):
    s = load_space(space(tmp_path, """
        [optim.lr]
        low = 0.0003
        high = 0.01
        log = true
        [train.epochs]
        low = 1
        high = 3
        [model.name]
        choices = ["test_resnet", "resnet18"]
        [loss.label_smoothing]
        low = 0.0
        high = 0.2
        step = 0.1
        """), recipe)
    assert [p.key for p in s.params] == ["optim.lr", "train.epochs", "model.name", "loss.label_smoothing"]
    assert s.params[1].integer and not s.params[0].integer
    values = {p.key: p.suggest(optuna.trial.FixedTrial({"optim.lr": 0.001, "train.epochs": 2, "model.name": "resnet18",
                                                         "loss.label_smoothing": 0.1})) for p in s.params}
    overrides = s.overrides(values)
    assert overrides == ["optim.lr=0.001", "train.epochs=2", 'model.name="resnet18"', "loss.label_smoothing=0.1"]
    r = load_recipe(recipe.source.file, overrides)
    assert (r.optim.lr, r.train.epochs, r.model.name, r.loss.label_smoothing) == (0.001, 2, "resnet18", 0.1)
    # The same file, the same fingerprint (processes joining one study compare it).
    assert load_space(space(tmp_path, tmp_path.joinpath("space.toml").read_text()), recipe).fingerprint() == s.fingerprint()


@pytest.mark.parametrize("text, says", [
    ("", "searches nothing"),
    ("# nothing\n", "searches nothing"),
    ("[optim.lr]\nlow = 0.01\nhigh = 0.001\n", "[optim.lr] low (0.01) is above high (0.001)"),
    ('[optim.name]\nchoices = ["adamw", "lion"]\n', "[optim] name must be one of"),
    ("[optim.lrr]\nlow = 0.1\nhigh = 0.2\n", "unknown key [optim] lrr (did you mean lr?)"),
    ("[loss.label_smoothing]\nlow = 0.0\nhigh = 1.0\n", "[loss] label_smoothing must be in [0, 1)"),
    ("[optim.lr]\nlow = 0.0\nhigh = 0.1\nlog = true\n", "log = true needs low > 0"),
    ("[optim.lr]\nlow = 0.001\nhigh = 0.1\nlog = true\nstep = 0.01\n", "log or step, not both"),
    ("[train.epochs]\nlow = 1.5\nhigh = 3\n", "whole number in the recipe"),
    ('[model.name]\nlow = 1\nhigh = 2\n', "not a number in the recipe"),
    ("[cv.folds]\nchoices = [3, 5]\n", "[cv.folds] cannot be searched"),
    ("[seed]\nchoices = [1, 2]\n", "[seed] cannot be searched"),
    ("[optim.lr]\nlow = 0.001\n", "needs both low and high"),
    ("[optim.lr]\nlow = 0.001\nhigh = 0.01\nlg = true\n", "unknown field 'lg'"),
    ("[optim]\nlr = 0.01\n", "optim.lr = 0.01 is not a distribution"),
    ('[optim.lr]\nchoices = []\n', "non-empty array"),
    ('[optim.lr]\nchoices = [0.1, 0.1]\n', "lists a choice twice"),
    ('[optim.lr]\nlow = "a"\nhigh = 0.1\n', "low must be a number"),
    ("[optim.lr\n", "not valid TOML"),
])
def test_bad_spaces_are_one_message_naming_the_key(tmp_path, recipe, text, says):
    assert says in refused(tmp_path, recipe, text)


def test_a_missing_space_file_is_named(tmp_path, recipe):
    with pytest.raises(CompError, match="space not found"):
        load_space(tmp_path / "nope.toml", recipe)
