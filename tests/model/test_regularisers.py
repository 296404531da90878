"""Regularisers timm users expect: stochastic depth ([model] drop_path_rate) in both model sources."""

from __future__ import annotations

import pytest
import torch
from timm.layers import DropPath
from typer.testing import CliRunner

from comp.cli import app
from comp.model import build_model
from comp.recipe import load_recipe


def _drop_paths(model: torch.nn.Module) -> dict[str, float]:
    return {name: m.drop_prob for name, m in model.named_modules() if isinstance(m, DropPath)}


@pytest.mark.parametrize("source,name,blocks", [("hand", "resnet18", 8), ("timm", "resnet18", 8),
                                                ("hand", "resnet50", 16), ("timm", "resnet50", 16)])
def test_drop_path_rate_reaches_every_residual_block(recipe_file, source, name, blocks):
    recipe = load_recipe(recipe_file, [f"model.source={source}", f"model.name={name}",
                                       "model.drop_path_rate=0.3"])
    model = build_model(recipe.model, 3)
    probs = _drop_paths(model)
    # timm's linear rule: block i of n drops with 0.3 * i / (n - 1); block 0's rate is 0 (no module)
    want = [0.3 * i / (blocks - 1) for i in range(1, blocks)]
    assert len(probs) == blocks - 1
    assert list(probs.values()) == pytest.approx(want)
    assert list(probs)[-1] == ("layer4.1.drop_path" if blocks == 8 else "layer4.2.drop_path")
    off = build_model(load_recipe(recipe_file, [f"model.source={source}", f"model.name={name}"]).model, 3)
    assert _drop_paths(off) == {}


def test_hand_and_timm_resnets_drop_the_same_blocks_and_keep_their_weight_names(recipe_file):
    sets = ["model.name=resnet34", "model.drop_path_rate=0.2"]
    hand = build_model(load_recipe(recipe_file, sets + ["model.source=hand"]).model, 3)
    timm_model = build_model(load_recipe(recipe_file, sets + ["model.source=timm"]).model, 3)
    assert _drop_paths(hand) == pytest.approx(_drop_paths(timm_model))
    assert hand.state_dict().keys() == timm_model.state_dict().keys()  # DropPath has no weights


def test_drop_path_drops_whole_residual_branches_in_training_only():
    from comp.model.resnet import BasicBlock

    torch.manual_seed(0)
    block = BasicBlock(8, 8, drop_path=0.5)
    torch.nn.init.ones_(block.bn2.weight)  # a non-zero branch, so dropping it shows
    x = torch.randn(64, 8, 4, 4)
    block.eval()
    torch.testing.assert_close(block(x), block(x))  # no randomness in eval mode
    block.train()
    with torch.no_grad():
        branch = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
        out = block(x)
    kept = [torch.allclose(out[i], torch.relu(branch[i] * 2 + x[i]), atol=1e-4) for i in range(64)]
    dropped = [torch.allclose(out[i], torch.relu(x[i])) for i in range(64)]
    assert all(k != d for k, d in zip(kept, dropped))  # each sample: its whole branch kept (scaled) or dropped
    assert 16 < sum(dropped) < 48


def test_a_drop_path_rate_out_of_range_is_one_line(recipe_file):
    result = CliRunner().invoke(app, ["check", str(recipe_file), "--set", "model.drop_path_rate=1.0"])
    assert result.exit_code == 2
    assert "[model] drop_path_rate must be in [0, 1)" in result.output
