"""comp.model: hand-built ResNets against timm/torchvision, build_model, freezing, param groups.

Everything runs on the CPU with tiny inputs, and nothing here opens a network connection: the
pretrained = true tests simulate an offline machine and guard the socket module.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from comp import model as models
from comp.errors import CompError
from comp.model import apply_freeze, build_model, param_groups, train_mode
from comp.model.resnet import RESNETS
from comp.recipe import ModelConfig

ROOT = Path(__file__).resolve().parents[2]


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere, BN statistics included (zero-init gammas would hide bugs)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif name.endswith(("bn1.weight", "bn2.weight", "bn3.weight", "downsample.1.weight")):
                t.copy_(torch.rand(t.shape, generator=gen) * 0.5 + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.05)
    return model


def shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def outputs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def no_sockets(monkeypatch):
    """Fail loudly if anything tries to resolve a name or open a connection."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return calls


# --------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet152"])
def test_hand_resnet_matches_timm(name):
    hand = randomize(RESNETS[name](), seed=1)
    ref = timm.create_model(name, pretrained=False)
    assert n_params(hand) == n_params(ref)
    assert shapes(hand) == shapes(ref)  # same names, same shapes, same order of buffers too
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))

    ref.load_state_dict(hand.state_dict(), strict=True)  # hand -> timm
    expected = outputs(hand, x)
    assert expected.shape == (2, 1000)
    torch.testing.assert_close(outputs(ref, x), expected, rtol=1e-4, atol=1e-5)

    randomize(ref, seed=2)  # timm -> hand, with other weights
    hand.load_state_dict(ref.state_dict(), strict=True)
    torch.testing.assert_close(outputs(hand, x), outputs(ref, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_hand_resnet_matches_torchvision(name):
    hand = randomize(RESNETS[name](), seed=3)
    ref = getattr(torchvision.models, name)(weights=None)
    assert n_params(hand) == n_params(ref)
    assert shapes(hand) == shapes(ref)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    ref.load_state_dict(hand.state_dict(), strict=True)
    torch.testing.assert_close(outputs(ref, x), outputs(hand, x), rtol=1e-4, atol=1e-5)
    randomize(ref, seed=4)
    hand.load_state_dict(ref.state_dict(), strict=True)
    torch.testing.assert_close(outputs(hand, x), outputs(ref, x), rtol=1e-4, atol=1e-5)


def test_hand_resnet34_and_101_have_timm_shapes():
    for name in ("resnet34", "resnet101"):
        assert shapes(RESNETS[name](num_classes=3)) == shapes(timm.create_model(name, num_classes=3))


def test_zero_init_last_starts_residual_branches_at_zero():
    model = RESNETS["resnet50"]()
    assert all(float(b.bn3.weight.detach().abs().sum()) == 0 for stage in (model.layer1, model.layer4) for b in stage)
    assert float(RESNETS["resnet18"](zero_init_last=False).layer1[0].bn2.weight.detach().sum()) == 64.0


def test_features_head_split_and_classifier_api():
    model = randomize(RESNETS["resnet18"](num_classes=5))
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, 512, 2, 2)
        assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)
        torch.testing.assert_close(model.forward_head(feats), model(x))
    assert model.get_classifier() is model.fc and model.fc.out_features == 5
    model.reset_classifier(7)
    assert model.get_classifier().out_features == 7 and model.num_classes == 7
    assert not model.fc.training  # follows the model's mode
    assert outputs(model, x).shape == (2, 7)
    model.reset_classifier(0)
    assert outputs(model, x).shape == (2, 512)
    assert RESNETS["resnet50"](num_classes=3).num_features == 2048


def test_drop_rate_is_dropout_before_fc():
    model = randomize(RESNETS["resnet18"](num_classes=4, drop_rate=0.5))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(outputs(model, x), outputs(model, x))  # eval: no dropout
    model.train()
    feats = torch.ones(2, 512, 1, 1)
    torch.manual_seed(0)
    pooled = torch.nn.functional.dropout(torch.ones(2, 512), 0.5, training=True)
    torch.manual_seed(0)
    torch.testing.assert_close(model.forward_head(feats), model.fc(pooled))


# --------------------------------------------------------------------------- build_model


def test_build_hand_and_timm_models():
    hand = build_model(ModelConfig(source="hand", name="resnet34", drop_rate=0.2), 6)
    assert type(hand).__name__ == "ResNet" and hand.fc.out_features == 6 and hand.drop_rate == 0.2
    tm = build_model(ModelConfig(source="timm", name="resnet18", drop_rate=0.3), 6)
    assert type(tm).__module__.startswith("timm.") and tm.get_classifier().out_features == 6
    assert tm.drop_rate == 0.3
    reg = build_model(ModelConfig(source="hand", name="resnet18", head="regression"), 5)
    assert outputs(reg, torch.randn(2, 3, 32, 32)).shape == (2, 1)
    reg = build_model(ModelConfig(source="timm", name="resnet18", head="regression"), 5)
    assert reg.get_classifier().out_features == 1


def test_build_model_errors_are_one_line():
    cases = [
        (ModelConfig(source="hand", name="vgg16"), "not a hand-built model"),
        (ModelConfig(source="timm", name="resnet181"), "'resnet181' is not a timm model"),
        (ModelConfig(source="hand", name="resnet18", freeze=5), "freeze = 5 is more than the 4 stages"),
        (ModelConfig(source="hand", name="resnet18", pretrained="/nonexistent/w.pth"), "/nonexistent/w.pth"),
    ]
    for cfg, words in cases:
        with pytest.raises(CompError) as info:
            build_model(cfg, 3)
        assert words in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(CompError, match="did you mean resnet18"):
        build_model(ModelConfig(name="resnet181"), 3)


def test_build_model_pretrained_file_into_hand_and_timm(tmp_path, caplog):
    source = randomize(RESNETS["resnet18"](), seed=5)
    path = tmp_path / "r18.pth"
    torch.save(source.state_dict(), path)
    for src in ("hand", "timm"):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="comp"):
            model = build_model(ModelConfig(source=src, name="resnet18", pretrained=str(path)), 5)
        lines = [r.getMessage() for r in caplog.records if r.name == "comp.model"]
        assert lines == [f"pretrained weights {path}: loaded {len(source.state_dict()) - 2} tensors, "
                         "skipped 2 (shape mismatch: fc.weight, fc.bias), missing 0"]
        got, want = model.state_dict(), source.state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want if not k.startswith("fc."))
        assert got["fc.weight"].shape == (5, 512)


# --------------------------------------------------------------------------- pretrained = true


def test_pretrained_true_offline_fails_fast_in_subprocess(tmp_path):
    """HF_HUB_OFFLINE=1 and an empty cache: a CompError within 10 s, and no socket touched."""
    script = textwrap.dedent("""
        import json, socket, sys, time
        calls = []
        def refuse(*args, **kwargs):
            calls.append(repr(args))
            raise OSError("network disabled by the test")
        socket.getaddrinfo = socket.create_connection = socket.socket.connect = refuse
        from comp.errors import CompError
        from comp.model import build_model
        from comp.recipe import ModelConfig
        start = time.monotonic()
        try:
            build_model(ModelConfig(source="timm", name="resnet18", pretrained=True), 5)
            message = None
        except CompError as err:
            message = str(err)
        print(json.dumps({"elapsed": time.monotonic() - start, "message": message, "calls": calls}))
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "TORCH_HOME": str(tmp_path / "torch")}
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["elapsed"] < 10
    assert result["calls"] == []
    message = result["message"]
    assert message is not None and "\n" not in message
    assert "pretrained = true" in message and "resnet18" in message
    assert "offline" in message and "set pretrained to a weights file path" in message


def test_pretrained_true_unreachable_hub_fails_fast(monkeypatch, tmp_path, no_sockets):
    """No HF_HUB_OFFLINE, but the Hub probe fails: cache-only lookup, no retries, no sockets."""
    from huggingface_hub import constants

    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    start = time.monotonic()
    with pytest.raises(CompError, match="set pretrained to a weights file path") as info:
        build_model(ModelConfig(source="timm", name="resnet18", pretrained=True), 5)
    assert time.monotonic() - start < 10
    assert "unreachable (offline)" in str(info.value)
    assert constants.HF_HUB_OFFLINE is False  # offline mode was switched on only for the lookup
    assert no_sockets == []


def test_pretrained_true_uses_local_hub_cache_offline(monkeypatch, tmp_path, no_sockets):
    """Weights already in the Hugging Face cache load with the Hub unreachable."""
    from huggingface_hub import constants

    hub_id = timm.create_model("resnet18").pretrained_cfg["hf_hub_id"]  # e.g. timm/resnet18.a1_in1k
    weights = randomize(timm.create_model("resnet18"), seed=6).state_dict()
    weights = {k: v for k, v in weights.items() if not k.endswith("num_batches_tracked")}
    repo = tmp_path / "hub" / ("models--" + hub_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    save_file(weights, str(repo / "snapshots" / commit / "model.safetensors"))

    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    model = build_model(ModelConfig(source="timm", name="resnet18", pretrained=True), 5)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in weights.items() if not k.startswith("fc."))
    assert state["fc.weight"].shape == (5, 512)
    assert no_sockets == []


def test_hub_probe_never_blocks_past_its_timeout(monkeypatch):
    def hang(*args, **kwargs):
        time.sleep(3)
        raise OSError("timed out")

    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.monotonic()
    assert models._hub_reachable(timeout=0.2) is False
    assert time.monotonic() - start < 2

    def refuse(*args, **kwargs):
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    start = time.monotonic()
    assert models._hub_reachable(timeout=3.0) is False
    assert time.monotonic() - start < 1  # a failed connection does not wait out the timeout
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert models._hub_reachable(timeout=0.2) is True  # behind a proxy, let the hub client try


# --------------------------------------------------------------------------- freezing


def sgd_step(model: torch.nn.Module, cfg: ModelConfig, size: int = 32) -> None:
    groups = param_groups(model, cfg, lr=0.1, weight_decay=0.01)
    optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.0)
    train_mode(model, cfg)
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(2))
    loss = model(x).square().mean()
    loss.backward()
    optimizer.step()


def changed(before: dict, model: torch.nn.Module) -> set[str]:
    return {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}


def test_freeze_backbone_trains_only_the_head():
    cfg = ModelConfig(source="hand", name="resnet18", freeze="backbone")
    model = build_model(cfg, 5)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    before = snapshot(model)
    sgd_step(model, cfg)
    # Frozen weights AND frozen BN running statistics are untouched; only the head moved.
    assert changed(before, model) == {"fc.weight", "fc.bias"}
    assert not model.bn1.training and model.fc.training


def test_freeze_two_stages_keeps_stem_layer1_layer2():
    cfg = ModelConfig(source="hand", name="resnet18", freeze=2)
    model = build_model(cfg, 5)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if n.startswith(("conv1", "bn1", "layer1.", "layer2."))}
    before = snapshot(model)
    sgd_step(model, cfg)
    moved = changed(before, model)
    assert {"fc.weight", "fc.bias", "layer3.0.conv1.weight", "layer4.1.bn2.bias",
            "layer3.0.bn1.running_mean"} <= moved  # trainable stages and their BN stats update
    assert not any(k.startswith(("conv1", "bn1", "layer1.", "layer2.")) for k in moved)
    assert not model.layer2[0].bn1.training and model.layer3[0].bn1.training


def test_freeze_zero_and_none_freeze_nothing():
    for freeze in ("none", 0):
        model = build_model(ModelConfig(source="hand", name="resnet18", freeze=freeze), 3)
        assert all(p.requires_grad for p in model.parameters())


def test_freeze_stages_match_between_hand_and_timm():
    for n in (1, 3, 4):
        hand = build_model(ModelConfig(source="hand", name="resnet50", freeze=n), 3)
        tm = build_model(ModelConfig(source="timm", name="resnet50", freeze=n), 3)
        frozen = [{k for k, p in m.named_parameters() if not p.requires_grad} for m in (hand, tm)]
        assert frozen[0] == frozen[1] and f"layer{n}.0.conv1.weight" in frozen[0]
        assert not any(k.startswith(f"layer{n + 1}.") for k in frozen[0])


def test_freeze_other_timm_families():
    cfg = ModelConfig(source="timm", name="convnext_atto", freeze="backbone")
    model = build_model(cfg, 4)
    head = model.get_classifier()
    assert {id(p) for p in model.parameters() if p.requires_grad} == {id(p) for p in head.parameters()}
    before = snapshot(model)
    sgd_step(model, cfg)
    assert changed(before, model) == {"head.fc.weight", "head.fc.bias"}

    model = build_model(ModelConfig(source="timm", name="convnext_atto", freeze=1), 4)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if n.startswith(("stem.", "stages.0."))}
    with pytest.raises(CompError, match="freeze = 5 is more than the 4 stages of convnext_atto"):
        build_model(ModelConfig(source="timm", name="convnext_atto", freeze=5), 4)


def test_train_mode_without_freeze_is_plain_train():
    cfg = ModelConfig(source="hand", name="resnet18")
    model = build_model(cfg, 3).eval()
    train_mode(model, cfg)
    assert all(m.training for m in model.modules())
    frozen_cfg = ModelConfig(source="hand", name="resnet18", freeze=1)
    model = build_model(frozen_cfg, 3)
    model.eval()
    train_mode(model, frozen_cfg)
    assert model.training and not model.layer1[1].bn2.training and model.layer2[0].bn1.training
    assert apply_freeze(build_model(cfg, 3), ModelConfig(freeze=1))[:2] == ["conv1.weight", "bn1.weight"]


# --------------------------------------------------------------------------- param groups


def test_param_groups_lr_multiplier_and_no_decay():
    cfg = ModelConfig(source="hand", name="resnet18", backbone_lr_mult=0.1)
    model = build_model(cfg, 5)
    groups = {g["name"]: g for g in param_groups(model, cfg, lr=0.01, weight_decay=0.05)}
    assert set(groups) == {"head", "head_no_decay", "backbone", "backbone_no_decay"}
    assert groups["head"]["lr"] == 0.01 and groups["head_no_decay"]["lr"] == 0.01
    assert groups["backbone"]["lr"] == pytest.approx(0.001)
    assert groups["backbone_no_decay"]["lr"] == pytest.approx(0.001)
    assert groups["head"]["weight_decay"] == 0.05 and groups["backbone"]["weight_decay"] == 0.05
    assert groups["head_no_decay"]["weight_decay"] == 0.0 and groups["backbone_no_decay"]["weight_decay"] == 0.0
    assert [p is model.fc.weight for p in groups["head"]["params"]] == [True]
    assert [p is model.fc.bias for p in groups["head_no_decay"]["params"]] == [True]
    assert all(p.ndim == 1 for p in groups["backbone_no_decay"]["params"])  # BN weights and biases
    assert all(p.ndim == 4 for p in groups["backbone"]["params"])  # conv kernels
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))
    optimizer = torch.optim.AdamW(list(groups.values()), lr=123.0)  # per-group lrs win
    assert sorted(g["lr"] for g in optimizer.param_groups) == pytest.approx([0.001, 0.001, 0.01, 0.01])


def test_param_groups_skip_frozen_and_zero_multiplier_holds_backbone():
    cfg = ModelConfig(source="hand", name="resnet18", freeze=2, backbone_lr_mult=0.5)
    model = build_model(cfg, 5)
    grouped = {id(p) for g in param_groups(model, cfg, 0.1, 0.0) for p in g["params"]}
    assert grouped == {id(p) for p in model.parameters() if p.requires_grad}
    assert id(model.layer1[0].conv1.weight) not in grouped

    cfg = ModelConfig(source="hand", name="resnet18", backbone_lr_mult=0.0)
    model = build_model(cfg, 5)
    before = snapshot(model)
    sgd_step(model, cfg)
    weights = {k for k in changed(before, model) if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert weights == {"fc.weight", "fc.bias"}


def test_param_groups_errors():
    model = build_model(ModelConfig(source="hand", name="resnet18"), 3)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(CompError, match="no trainable parameters"):
        param_groups(model, ModelConfig(), 0.1, 0.0)


# --------------------------------------------------------------------------- small stem


@pytest.mark.parametrize("source", ["hand", "timm"])
def test_small_stem_keeps_spatial_detail(source):
    default = build_model(ModelConfig(source=source, name="resnet18"), 5)
    small = build_model(ModelConfig(source=source, name="resnet18", stem="small"), 5)
    x = torch.randn(2, 3, 32, 32)
    assert default.forward_features(x).shape == (2, 512, 1, 1)
    assert small.forward_features(x).shape == (2, 512, 4, 4)  # 32 / 8: only the stages stride
    assert small.conv1.weight.shape == (64, 3, 3, 3) and small.conv1.stride == (1, 1)
    assert small(x).shape == (2, 5)
    # Everything but the stem keeps the default model's names and shapes.
    a, b = default.state_dict(), small.state_dict()
    assert a.keys() == b.keys()
    assert [k for k in a if a[k].shape != b[k].shape] == ["conv1.weight"]


def test_small_stem_with_a_weights_file_skips_the_7x7_conv(tmp_path, caplog):
    source = randomize(RESNETS["resnet18"](), seed=3)
    path = tmp_path / "r18.pth"
    torch.save(source.state_dict(), path)
    with caplog.at_level(logging.INFO, logger="comp"):
        model = build_model(ModelConfig(source="hand", name="resnet18", stem="small", pretrained=str(path)), 5)
    lines = [r.getMessage() for r in caplog.records if r.name == "comp.model"]
    assert "skipped 3 (shape mismatch: conv1.weight, fc.weight, fc.bias)" in lines[0]
    assert torch.equal(model.state_dict()["layer1.0.conv1.weight"], source.state_dict()["layer1.0.conv1.weight"])


def test_small_stem_needs_a_resnet_style_model():
    with pytest.raises(CompError, match='stem = "small" needs a ResNet-style model'):
        build_model(ModelConfig(name="convnext_atto", stem="small"), 3)
