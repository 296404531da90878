"""comp.model.weights: state-dict files in every common wrapping, and refusal of code pickles."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from comp.errors import CompError
from comp.model.resnet import resnet18, resnet50
from comp.model.weights import LoadReport, load_pretrained, read_state_dict


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    """A 1000-class resnet18 state dict with distinctive values."""
    torch.manual_seed(0)
    model = resnet18()
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.25)
    return model.state_dict()


def check_loaded(model: torch.nn.Module, report: LoadReport, source: dict) -> None:
    """Everything but the 1000-class head came from ``source``; the head kept its own init."""
    fresh_fc = resnet18(num_classes=5).fc
    state = model.state_dict()
    assert report.skipped == ["fc.weight", "fc.bias"]
    assert len(report.loaded) == len(source) - 2 and report.missing == [] and report.unexpected == []
    assert report.summary() == (f"loaded {len(source) - 2} tensors, skipped 2 "
                                "(shape mismatch: fc.weight, fc.bias), missing 0")
    for key, value in source.items():
        if not key.startswith("fc."):
            assert torch.equal(state[key], value), key
    assert state["fc.weight"].shape == fresh_fc.weight.shape == (5, 512)
    assert float(state["fc.weight"].abs().max()) < 0.25  # nn.Linear init, not the file's values


def test_pth_into_smaller_head(tmp_path, source):
    path = tmp_path / "r18.pth"
    torch.save(source, path)
    model = resnet18(num_classes=5)
    check_loaded(model, load_pretrained(model, path), source)


def test_safetensors(tmp_path, source):
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in source.items()}, str(path))
    model = resnet18(num_classes=5)
    check_loaded(model, load_pretrained(model, str(path)), source)


@pytest.mark.parametrize("wrap", ["state_dict", "model", "model_state_dict"])
def test_wrapped_with_ddp_prefix(tmp_path, source, wrap):
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 7, "format": 1, wrap: {f"module.{k}": v for k, v in source.items()}}, path)
    model = resnet18(num_classes=5)
    check_loaded(model, load_pretrained(model, path), source)


def test_compiled_model_prefix_and_bin_suffix(tmp_path, source):
    path = tmp_path / "pytorch_model.bin"
    torch.save({f"_orig_mod.{k}": v for k, v in source.items()}, path)
    model = resnet18(num_classes=5)
    check_loaded(model, load_pretrained(model, path), source)


def test_torchvision_and_timm_weights_load_fully(tmp_path):
    for i, ref in enumerate((torchvision.models.resnet50(weights=None),
                             timm.create_model("resnet50", pretrained=False))):
        with torch.no_grad():
            for t in ref.state_dict().values():
                if t.is_floating_point():
                    t.normal_()
        path = tmp_path / f"r50_{i}.pth"
        torch.save(ref.state_dict(), path)
        model = resnet50()
        report = load_pretrained(model, path)
        assert (len(report.loaded), report.skipped, report.missing) == (len(ref.state_dict()), [], [])
        assert all(torch.equal(model.state_dict()[k], v) for k, v in ref.state_dict().items())


def test_missing_and_unexpected_are_reported(tmp_path, source):
    partial = {k: v for k, v in source.items() if not k.startswith("layer4.")}
    partial["aux.weight"] = torch.zeros(3)
    path = tmp_path / "partial.pth"
    torch.save(partial, path)
    model = resnet18()
    report = load_pretrained(model, path)
    n_layer4 = sum(k.startswith("layer4.") for k in source)
    assert len(report.missing) == n_layer4 and report.unexpected == ["aux.weight"]
    assert f"missing {n_layer4} (layer4." in report.summary()
    assert report.summary().endswith("ignored 1 unknown (aux.weight)")
    assert "\n" not in report.summary() and str(report).startswith(str(path))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_code_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        """Unpickling this writes ``target``: the classic code-running checkpoint."""

        def __init__(self, target: Path):
            self.target = target

        def __reduce__(self):
            return (exec, (f"open({str(self.target)!r}, 'w').write('ran')",))

    # The payload is live: a plain, unsafe unpickle really runs it (on a separate marker).
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Payload(probe)))
    assert probe.read_text() == "ran"

    zipped = tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.zeros(1), "x": Payload(marker)}, zipped)
    legacy = tmp_path / "evil_legacy.pt"
    legacy.write_bytes(pickle.dumps({"fc.weight": Payload(marker)}))
    for path in (zipped, legacy):
        with pytest.raises(CompError) as info:
            load_pretrained(resnet18(), path)
        message = str(info.value)
        assert message.startswith(f"refusing to load {path}") and "not a plain state dict" in message
        assert "\n" not in message
        assert not marker.exists()


def test_unreadable_files_name_the_path(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(CompError, match=f"not found: {missing}"):
        load_pretrained(resnet18(), missing)
    with pytest.raises(CompError, match="not found"):
        load_pretrained(resnet18(), tmp_path)  # a directory is not a weights file

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00\x01not a checkpoint at all" * 10)
    bad_st = tmp_path / "garbage.safetensors"
    bad_st.write_bytes(b"\xff" * 64)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path in (garbage, bad_st, empty):
        with pytest.raises(CompError) as info:
            load_pretrained(resnet18(), path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_not_a_state_dict(tmp_path):
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(CompError, match="is not a state dict"):
        load_pretrained(resnet18(), tensor)
    no_tensors = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "lr": 0.1}, no_tensors)
    with pytest.raises(CompError, match="holds no tensors"):
        load_pretrained(resnet18(), no_tensors)
    other = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(CompError, match="shares no tensor with the model"):
        load_pretrained(resnet18(), other)


def test_read_state_dict_unwraps(tmp_path, source):
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.items()}, "epoch": 1}, path)
    state = read_state_dict(Path(path))
    assert list(state) == list(source)
