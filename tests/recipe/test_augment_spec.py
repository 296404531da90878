"""``[augment] pipeline``/``preset``/``auto_augment`` (issue 32, item 1) at recipe load: A.to_dict's
form loads unchanged, a file A.save wrote is inlined, a bad pipeline is one message naming it."""

from __future__ import annotations

import json
import os
import tomllib

import pytest

from comp.recipe import RecipeError, load_recipe, recipe_from_dict, recipe_to_toml
from comp.recipe.augment_spec import albumentations_version, presets

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402

SIX = A.Compose([
    A.RandomResizedCrop(size=(32, 32), scale=(0.5, 1.0)), A.HueSaturationValue(p=0.5), A.CLAHE(p=0.3),
    A.GaussNoise(p=0.3), A.OneOf([A.GaussianBlur(), A.MotionBlur()], p=0.3), A.GridDistortion(p=0.2),
    A.OpticalDistortion(p=0.2), A.ElasticTransform(p=0.2), A.CoarseDropout(p=0.3)])


def _toml(value) -> str:
    """A plain value as TOML (what a user pasting A.to_dict's output types)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items() if v is not None) + " }"
    return repr(value)


def _pasted(steps) -> str:
    """A.to_dict's transforms pasted as [[augment.pipeline]] tables (TOML has no null: those left out)."""
    out = []
    for step in steps:
        out.append("[[augment.pipeline]]")
        out += [f"{k} = {_toml(v)}" for k, v in step.items() if v is not None]
    return "\n".join(out) + "\n"


def _write(tmp_path, body: str, name="r.toml"):
    path = tmp_path / name
    path.write_text('[data]\nroot = "x"\n[augment]\nsize = 32\n' + body)
    return path


def _error(tmp_path, body: str, name="r.toml") -> str:
    with pytest.raises(RecipeError) as err:
        load_recipe(_write(tmp_path, body, name))
    return str(err.value)


def test_a_to_dict_output_pasted_into_a_recipe_loads_unchanged(tmp_path):
    steps = A.to_dict(SIX)["transform"]["transforms"]
    recipe = load_recipe(_write(tmp_path, _pasted(steps)))
    expected = [{k: v for k, v in s.items() if v is not None} for s in json.loads(json.dumps(steps))]
    for s in expected:
        for c in s.get("transforms", []):
            for k in [k for k, v in c.items() if v is None]:
                del c[k]
    assert json.loads(json.dumps(recipe.augment.pipeline)) == expected
    # The run's recipe.toml holds it as [[augment.pipeline]] tables and reads back equal.
    again = recipe_from_dict(tomllib.loads(recipe_to_toml(recipe)))
    assert again == recipe
    # and it builds back to the same albumentations pipeline.
    rebuilt = A.from_dict({"transform": {"__class_fullname__": "Compose", "transforms": again.augment.pipeline}})
    assert A.to_dict(rebuilt)["transform"]["transforms"] == A.to_dict(SIX)["transform"]["transforms"]


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_a_file_a_save_wrote_is_inlined(tmp_path, fmt):
    A.save(SIX, str(tmp_path / f"aug.{fmt}"), data_format=fmt)
    recipe = load_recipe(_write(tmp_path, f'pipeline = "aug.{fmt}"\n'))  # relative to the recipe
    assert [s["__class_fullname__"] for s in recipe.augment.pipeline][:3] == [
        "RandomResizedCrop", "HueSaturationValue", "CLAHE"]
    assert "[[augment.pipeline]]" in recipe_to_toml(recipe)  # the run never needs the file again


@pytest.mark.parametrize("body,words", [
    ('[[augment.pipeline]]\n__class_fullname__ = "Blurr"\n', ["pipeline[0] Blurr", "no such transform",
                                                              "did you mean Blur", "albumentations"]),
    ('[[augment.pipeline]]\n__class_fullname__ = "GaussianBlur"\nfoo = 1\n', ["pipeline[0] GaussianBlur",
                                                                              "unknown argument 'foo'"]),
    ('[[augment.pipeline]]\n__class_fullname__ = "GaussianBlur"\np = 2\n', ["GaussianBlur", "p", "less than"]),
    ('[[augment.pipeline]]\n__class_fullname__ = "GaussianBlur"\nblur_limit = "x"\n', ["blur_limit"]),
    ('[[augment.pipeline]]\np = 0.5\n', ["pipeline[0] needs __class_fullname__"]),
    ('[[augment.pipeline]]\n__class_fullname__ = "Normalize"\n', ["Normalize", "mean/std"]),
    ('[[augment.pipeline]]\n__class_fullname__ = "RandomResizedCrop"\nsize = [64, 64]\n',
     ["RandomResizedCrop", "64x64x3", "size = [32, 32]"]),
    ('[[augment.pipeline]]\n__class_fullname__ = "OneOf"\ntransforms = [{ __class_fullname__ = "Blurr" }]\n',
     ["pipeline[0].transforms[0] Blurr"]),
    ('pipeline = 3\n', ["[augment] pipeline must be string or array"]),
    ('pipeline = [1]\n', ["[augment] pipeline"]),
    ('preset = "fundus"\n[[augment.pipeline]]\n__class_fullname__ = "Blur"\n', ["preset", "comp recipe --preset"]),
    ('auto_augment = "rand-q9"\n', ["auto_augment", "timm cannot read it"]),
    ('auto_augment = "magic"\n', ["auto_augment", "trivialaugment"]),
    ('on = "device"\n[[augment.pipeline]]\n__class_fullname__ = "CLAHE"\n', ['on = "device"', "CLAHE"]),
    ('on = "device"\nauto_augment = "trivialaugment"\n', ['on = "device"', "auto_augment"]),
])
def test_a_bad_pipeline_is_one_message_naming_it(tmp_path, body, words):
    message = _error(tmp_path, body)
    for word in words:
        assert word in message, message
    if "no such" in message or "unknown argument" in message:
        assert albumentations_version() in message


def test_bad_pipelines_exit_2_with_one_line(tmp_path):
    from tests.conftest import run_comp

    path = _write(tmp_path, '[[augment.pipeline]]\n__class_fullname__ = "GaussianBlurr"\n')
    code, out, err = run_comp(["recipe", str(path)], tmp_path)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "GaussianBlurr" in err and "did you mean GaussianBlur" in err


def test_hostile_pipeline_files(tmp_path):
    (tmp_path / "real.json").write_text(json.dumps(A.to_dict(SIX)))
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    assert "is a link" in _error(tmp_path, 'pipeline = "link.json"\n')
    assert "not found" in _error(tmp_path, 'pipeline = "missing.yaml"\n')
    (tmp_path / "dir.json").mkdir()
    assert "is not a file" in _error(tmp_path, 'pipeline = "dir.json"\n')
    assert ".json, .yaml or .yml" in _error(tmp_path, 'pipeline = "aug.py"\n')
    (tmp_path / "bad.json").write_text("{not json")
    assert "not valid JSON" in _error(tmp_path, 'pipeline = "bad.json"\n')
    (tmp_path / "evil.yaml").write_text("!!python/object/apply:os.system ['touch pwned']\n")
    assert "not valid YAML" in _error(tmp_path, 'pipeline = "evil.yaml"\n')
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "big.json").write_bytes(b" " * (2 << 20))
    assert "larger than" in _error(tmp_path, 'pipeline = "big.json"\n')
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    assert "not UTF-8" in _error(tmp_path, 'pipeline = "bin.json"\n')
    (tmp_path / "list.json").write_text('{"transform": 3}')
    assert "no list of transforms" in _error(tmp_path, 'pipeline = "list.json"\n')
    if os.geteuid() != 0:
        (tmp_path / "locked.json").write_text("{}")
        (tmp_path / "locked.json").chmod(0)
        assert "cannot read" in _error(tmp_path, 'pipeline = "locked.json"\n')
    assert "NUL" in _error(tmp_path, 'pipeline = "a\\u0000.json"\n')
    assert "cannot read" in _error(tmp_path, f'pipeline = "{"x" * 300}.json"\n')  # a name too long
    # A null argument whose default is not None cannot be held by TOML: named, not guessed.
    (tmp_path / "null.json").write_text(json.dumps([{"__class_fullname__": "GaussianBlur", "sigma_limit": None}]))
    assert "sigma_limit = null" in _error(tmp_path, 'pipeline = "null.json"\n')


@pytest.mark.parametrize("name", ["fundus", "microscopy", "xray"])
def test_presets_load_and_round_trip_through_the_runs_recipe(tmp_path, name):
    recipe = load_recipe(_write(tmp_path, f'preset = "{name}"\n'))
    assert recipe.augment.pipeline == presets(32)[name] and len(recipe.augment.pipeline) >= 6
    assert recipe_from_dict(tomllib.loads(recipe_to_toml(recipe))) == recipe  # preset + its own pipeline


def test_comp_recipe_prints_a_preset_to_paste_and_a_recipe_as_read(tmp_path):
    from tests.conftest import run_comp

    code, out, err = run_comp(["recipe", "--preset", "xray", "--size", "32"], tmp_path)
    assert code == 0, err
    pasted = load_recipe(_write(tmp_path, out.split("size = 32", 1)[1], name="pasted.toml"))
    assert pasted.augment.pipeline == presets(32)["xray"]
    code, out, err = run_comp(["recipe", str(_write(tmp_path, 'preset = "fundus"\n'))], tmp_path)
    assert code == 0, err
    assert out.count("[[augment.pipeline]]") == len(presets(32)["fundus"]) and "RandomResizedCrop" in out


def test_on_auto_takes_the_cpu_path_for_what_the_device_cannot_run(tmp_path):
    import torch

    from comp.data.pipeline import device_config, resolve_augment_on

    cpu_only = load_recipe(_write(tmp_path, '[[augment.pipeline]]\n__class_fullname__ = "CLAHE"\n')).augment
    assert resolve_augment_on("auto", torch.device("cuda"), cpu_only) == "cpu"
    flips = load_recipe(_write(tmp_path, 'hflip = 0.0\n[[augment.pipeline]]\n__class_fullname__ = "HorizontalFlip"\n'
                                         'p = 0.3\n[[augment.pipeline]]\n__class_fullname__ = "RandomRotate90"\n'))
    a = flips.augment
    assert resolve_augment_on("auto", torch.device("cuda"), a) == "device"
    on_device = device_config(a)
    assert (on_device.hflip, on_device.rot90, on_device.pipeline) == (0.3, 1.0, [])
