import tomllib
from pathlib import Path

import pytest

from comp.recipe import RecipeError, load_recipe, recipe_from_dict, recipe_to_toml

RECIPES = sorted(Path(__file__).resolve().parents[2].glob("recipes/*.toml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem


def test_defaults_and_types():
    r = recipe_from_dict({"name": "x", "optim": {"lr": 1}, "model": {"freeze": 2}})
    assert r.optim.lr == 1.0 and isinstance(r.optim.lr, float)
    assert r.model.freeze == 2
    assert r.train.epochs == 10 and r.cv.scheme == "holdout"


@pytest.mark.parametrize("raw, message", [
    ({"model": {"nme": "resnet18"}}, "unknown key [model] nme"),
    ({"modle": {}}, "unknown key modle"),
    ({"train": {"epochs": "ten"}}, "[train] epochs must be integer, got string 'ten'"),
    ({"train": {"epochs": True}}, "[train] epochs must be integer"),
    ({"model": {"source": "keras"}}, "[model] source must be one of 'timm', 'hand', got 'keras'"),
    ({"model": {"stem": "tiny"}}, "[model] stem must be one of 'default', 'small', got 'tiny'"),
    ({"model": {"drop_rate": 1.0}}, "[model] drop_rate must be in [0, 1)"),
    ({"model": {"drop_rate": -0.1}}, "[model] drop_rate must be in [0, 1)"),
    ({"model": {"backbone_lr_mult": -1.0}}, "[model] backbone_lr_mult must not be negative"),
    ({"model": {"source": "hand", "pretrained": True}},
     "[model] pretrained = true: the hand-built resnet18 has no hub weights; set pretrained to a weights file"),
    ({"model": {"freeze": -1}}, '[model] freeze must be "none", "backbone" or a number of stages'),
    ({"augment": {"mean": [0.5, "a", 0.5]}}, "[augment] mean[1] must be number"),
    ({"augment": {"hflip": 1.5}}, "[augment] hflip is a probability"),
    ({"loss": {"class_weights": "inverse"}}, "[loss] class_weights must be"),
    ({"loss": {"name": "mse"}}, '[loss] name \'mse\' needs [model] head = "regression"'),
    ({"data": 3}, "[data] must be a table"),
])
def test_bad_recipes_name_the_key(raw, message):
    with pytest.raises(RecipeError) as err:
        recipe_from_dict({"name": "x", **raw}, "r.toml")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(RecipeError, match="recipe not found: .*nope.toml"):
        load_recipe(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nname = 1")
    with pytest.raises(RecipeError, match="bad.toml: not valid TOML"):
        load_recipe(bad)


def test_overrides_are_typed_and_validated(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('[model]\nname = "resnet18"\n')
    r = load_recipe(path, ["model.name=resnet50", "train.epochs=3", "optim.lr=1e-4",
                           "augment.mean=[0.1, 0.2, 0.3]", "model.pretrained=true",
                           'data.root="some dir"'])
    assert r.name == "r"
    assert (r.model.name, r.train.epochs, r.optim.lr) == ("resnet50", 3, 1e-4)
    assert r.augment.mean == [0.1, 0.2, 0.3] and r.model.pretrained is True
    assert r.data.root == "some dir"
    with pytest.raises(RecipeError, match=r"unknown key \[train\] epoch "):
        load_recipe(path, ["train.epoch=3"])
    with pytest.raises(RecipeError, match="--set expects section.key=value"):
        load_recipe(path, ["train.epochs"])


def test_toml_round_trip():
    r = recipe_from_dict({"name": "x", "model": {"pretrained": "w.pth"}, "loss": {"class_weights": [1, 2.5]},
                          "predict": {"tta": ["identity", "rot90"]}})
    assert recipe_from_dict(tomllib.loads(recipe_to_toml(r))) == r
