"""Every schedule's LR against its closed form, driven through the training loop's call protocol."""

from __future__ import annotations

import io
import math

import pytest
import torch

from comp.errors import CompError
from comp.model.optim import build_optimizer
from comp.model.scheduler import Scheduler, build_scheduler
from comp.recipe import OptimConfig, RecipeError, ScheduleConfig, recipe_from_dict

HEAD_LR, BACKBONE_LR = 0.1, 0.01  # a backbone_lr_mult of 0.1


def _optimizer(lr: float = HEAD_LR, backbone_lr: float = BACKBONE_LR) -> torch.optim.Optimizer:
    head = torch.nn.Parameter(torch.zeros(2))
    backbone = torch.nn.Parameter(torch.zeros(2))
    return build_optimizer(OptimConfig(name="sgd", lr=lr),
                           [{"params": [head], "lr": lr}, {"params": [backbone], "lr": backbone_lr}])


def _build(epochs: int = 10, spe: int = 10, mode: str = "max", **cfg) -> tuple[Scheduler, torch.optim.Optimizer]:
    opt = _optimizer()
    return build_scheduler(ScheduleConfig(**cfg), opt, epochs, spe, mode=mode), opt


def _drive(sched: Scheduler, opt: torch.optim.Optimizer, epochs: int, spe: int,
           metrics: list[float] | None = None, start_epoch: int = 0) -> list[list[float]]:
    """The LRs (per group) used by each optimiser step, following the trainer's protocol."""
    used, updates = [], start_epoch * spe
    for epoch in range(start_epoch, epochs):
        for _ in range(spe):
            used.append([g["lr"] for g in opt.param_groups])
            opt.step()
            updates += 1
            sched.step_update(updates)
        sched.step_epoch(epoch + 1, None if metrics is None else metrics[epoch])
    return used


def _lr_at(sched: Scheduler, step: int, group: int = 0) -> float:
    """Group ``group``'s LR for optimiser step ``step`` (0-based) by the closed form: after
    ``step_update(n)`` (and at epoch ends ``step_epoch``) the LR in effect is this for step n."""
    return sched.base_lrs[group] * sched.multiplier_at(step)


def _assert_follows_closed_form(sched: Scheduler, used: list[list[float]]) -> None:
    for k, lrs in enumerate(used):
        for g, lr in enumerate(lrs):
            assert lr == pytest.approx(_lr_at(sched, k, g), rel=1e-12, abs=1e-15), (k, g)


# --------------------------------------------------------------------------- cosine


def test_cosine_with_warmup_closed_form():
    sched, opt = _build(name="cosine", warmup_epochs=1, min_lr=0.001)
    w, total = 10, 100
    assert sched.interval == "iteration"
    assert opt.param_groups[0]["lr"] == pytest.approx(HEAD_LR / w)  # before the first step
    assert _lr_at(sched, 0) == pytest.approx(HEAD_LR / w)
    assert _lr_at(sched, 4) == pytest.approx(HEAD_LR * 5 / w)
    assert _lr_at(sched, w - 1) == pytest.approx(HEAD_LR)  # end of warmup
    assert _lr_at(sched, w) == pytest.approx(HEAD_LR)  # cosine starts at the peak
    mid = w + (total - w) // 2
    assert _lr_at(sched, mid) == pytest.approx(0.001 + (HEAD_LR - 0.001) / 2)
    last = total - 1
    assert _lr_at(sched, last) == pytest.approx(
        0.001 + (HEAD_LR - 0.001) * 0.5 * (1 + math.cos(math.pi * (last - w) / (total - w))))
    assert _lr_at(sched, total) == pytest.approx(0.001)
    assert _lr_at(sched, total + 50) == pytest.approx(0.001)
    # The backbone keeps its own base LR and its floor scales with it.
    assert _lr_at(sched, w, group=1) == pytest.approx(BACKBONE_LR)
    assert _lr_at(sched, total, group=1) == pytest.approx(0.0001)
    used = _drive(sched, opt, 10, 10)
    _assert_follows_closed_form(sched, used)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.001)


def test_cosine_without_warmup_starts_at_base_lr():
    sched, opt = _build(name="cosine", epochs=4, spe=5)
    assert opt.param_groups[0]["lr"] == HEAD_LR
    assert opt.param_groups[1]["lr"] == BACKBONE_LR
    assert _lr_at(sched, 10) == pytest.approx(HEAD_LR / 2)
    assert _lr_at(sched, 20) == pytest.approx(0.0, abs=1e-15)


def test_fractional_warmup_rounds_to_steps():
    sched, _ = _build(name="cosine", warmup_epochs=0.25, epochs=2, spe=8)
    assert sched.warmup_steps == 2
    assert _lr_at(sched, 0) == pytest.approx(HEAD_LR / 2)
    assert _lr_at(sched, 1) == pytest.approx(HEAD_LR)


# --------------------------------------------------------------------------- per-epoch schedules


def test_constant_with_warmup():
    sched, opt = _build(name="constant", warmup_epochs=2, epochs=5, spe=4)
    assert sched.interval == "epoch"
    assert [_lr_at(sched, k) for k in (0, 3, 7, 8, 19)] == pytest.approx(
        [HEAD_LR / 8, HEAD_LR * 4 / 8, HEAD_LR, HEAD_LR, HEAD_LR])
    _assert_follows_closed_form(sched, _drive(sched, opt, 5, 4))


def test_step_decays_at_epoch_boundaries():
    sched, opt = _build(name="step", step_size=3, gamma=0.5, epochs=8, spe=4)
    used = _drive(sched, opt, 8, 4)
    _assert_follows_closed_form(sched, used)
    per_epoch = [used[e * 4][0] for e in range(8)]
    assert per_epoch == pytest.approx([HEAD_LR * 0.5 ** (e // 3) for e in range(8)])
    # The last step of epoch 2 is still undecayed; the first of epoch 3 is decayed.
    assert used[11][0] == pytest.approx(HEAD_LR)
    assert used[12][0] == pytest.approx(HEAD_LR * 0.5)
    assert used[12][1] == pytest.approx(BACKBONE_LR * 0.5)


def test_step_with_warmup_and_floor():
    sched, _ = _build(name="step", step_size=1, gamma=0.1, warmup_epochs=1, min_lr=0.002,
                      epochs=5, spe=2)
    assert _lr_at(sched, 0) == pytest.approx(HEAD_LR / 2)
    assert _lr_at(sched, 1) == pytest.approx(HEAD_LR)
    assert _lr_at(sched, 2) == pytest.approx(HEAD_LR * 0.1)
    assert _lr_at(sched, 4) == pytest.approx(0.002)  # 0.001 would be below min_lr
    assert _lr_at(sched, 8, group=1) == pytest.approx(0.0002)


def test_multistep_two_phase():
    sched, opt = _build(name="multistep", milestones=[6, 3], gamma=0.1, epochs=8, spe=3)
    used = _drive(sched, opt, 8, 3)
    _assert_follows_closed_form(sched, used)
    per_epoch = [used[e * 3][0] for e in range(8)]
    expected = [HEAD_LR] * 3 + [HEAD_LR * 0.1] * 3 + [HEAD_LR * 0.01] * 2
    assert per_epoch == pytest.approx(expected)


# --------------------------------------------------------------------------- onecycle


def test_onecycle_matches_torch():
    epochs, spe = 5, 8
    sched, opt = _build(name="onecycle", pct_start=0.25, epochs=epochs, spe=spe)
    total = epochs * spe
    ref_opt = _optimizer()
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=[HEAD_LR, BACKBONE_LR],
                                              total_steps=total, pct_start=0.25,
                                              anneal_strategy="cos", cycle_momentum=False)
    expected = []
    for k in range(total):
        expected.append([g["lr"] for g in ref_opt.param_groups])
        ref_opt.step()
        if k < total - 1:  # torch refuses to step past total_steps
            ref.step()
    used = _drive(sched, opt, epochs, spe)
    for k in range(total):
        assert used[k] == pytest.approx(expected[k], rel=1e-9), k
    _assert_follows_closed_form(sched, used)
    peak = round(0.25 * total) - 1
    assert _lr_at(sched, peak) == pytest.approx(HEAD_LR)
    assert _lr_at(sched, 0) == pytest.approx(HEAD_LR / 25)
    assert _lr_at(sched, total - 1) == pytest.approx(HEAD_LR / 25 / 1e4)
    assert max(_lr_at(sched, k) for k in range(total)) == pytest.approx(HEAD_LR)


def test_onecycle_ends_at_min_lr_when_given():
    sched, _ = _build(name="onecycle", min_lr=0.001, epochs=2, spe=10)
    assert _lr_at(sched, 19) == pytest.approx(0.001)
    assert _lr_at(sched, 19, group=1) == pytest.approx(0.0001)


# --------------------------------------------------------------------------- plateau


def test_plateau_matches_torch_reduce_on_plateau():
    metrics = [0.5, 0.6, 0.6, 0.59, 0.55, 0.7, 0.7, 0.7, 0.69, 0.68, 0.8, 0.1, 0.1]
    epochs, spe = len(metrics), 2
    sched, opt = _build(name="plateau", gamma=0.5, patience=2, epochs=epochs, spe=spe)
    used = _drive(sched, opt, epochs, spe, metrics)
    ref_opt = _optimizer()
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, mode="max", factor=0.5, patience=2)
    for e, m in enumerate(metrics):
        assert used[e * spe] == pytest.approx([g["lr"] for g in ref_opt.param_groups]), e
        ref.step(m)


def test_plateau_decays_after_patience_bad_epochs_and_respects_min_lr():
    sched, opt = _build(name="plateau", gamma=0.1, patience=1, min_lr=0.002, mode="min",
                        epochs=20, spe=1)
    sched.step_epoch(1, 1.0)  # first value is the best so far
    sched.step_epoch(2, 1.0)  # bad epoch 1: within patience
    assert opt.param_groups[0]["lr"] == pytest.approx(HEAD_LR)
    sched.step_epoch(3, 1.5)  # bad epoch 2 > patience: decay
    assert opt.param_groups[0]["lr"] == pytest.approx(HEAD_LR * 0.1)
    assert opt.param_groups[1]["lr"] == pytest.approx(BACKBONE_LR * 0.1)
    sched.step_epoch(4, 0.5)  # better (mode min): counter resets
    sched.step_epoch(5, 0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(HEAD_LR * 0.1)
    sched.step_epoch(6, 0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.002)  # 0.001 floored at min_lr
    assert opt.param_groups[1]["lr"] == pytest.approx(0.0002)
    for e in range(7, 12):
        sched.step_epoch(e, 0.9)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.002)
    # Step updates do not undo the decay.
    sched.step_update(100)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.002)


def test_plateau_ignores_a_missing_metric():
    sched, opt = _build(name="plateau", gamma=0.1, patience=0, epochs=5, spe=1)
    sched.step_epoch(1, 0.5)
    for e in range(2, 5):
        sched.step_epoch(e, None)
        sched.step_epoch(e, float("nan"))
    assert opt.param_groups[0]["lr"] == pytest.approx(HEAD_LR)
    assert sched.num_bad == 0


# --------------------------------------------------------------------------- resuming


def _roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("cfg, metrics", [
    (dict(name="cosine", warmup_epochs=1.5, min_lr=0.001), None),
    (dict(name="onecycle"), None),
    (dict(name="multistep", milestones=[2, 5], warmup_epochs=1), None),
    (dict(name="plateau", patience=1, gamma=0.3),
     [0.1, 0.2, 0.2, 0.2, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3]),
])
def test_state_dict_round_trip_resumes_the_same_sequence(cfg, metrics):
    epochs, spe, stop = 10, 4, 4
    straight, opt = _build(epochs=epochs, spe=spe, **cfg)
    expected = _drive(straight, opt, epochs, spe, metrics)

    first, opt1 = _build(epochs=epochs, spe=spe, **cfg)
    head = _drive(first, opt1, stop, spe, metrics)
    saved_sched, saved_opt = _roundtrip(first.state_dict()), _roundtrip(opt1.state_dict())

    resumed, opt2 = _build(epochs=epochs, spe=spe, **cfg)
    opt2.load_state_dict(saved_opt)
    resumed.load_state_dict(saved_sched)
    tail = _drive(resumed, opt2, epochs, spe, metrics, start_epoch=stop)
    flat = [lr for lrs in head + tail for lr in lrs]
    assert flat == pytest.approx([lr for lrs in expected for lr in lrs], rel=1e-12)
    assert resumed.state_dict() == straight.state_dict()


def test_state_dict_is_plain_python():
    sched, opt = _build(name="plateau")
    sched.step_epoch(1, 0.5)
    state = sched.state_dict()

    def plain(v):
        if isinstance(v, (list, tuple)):
            return all(plain(x) for x in v)
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        return v is None or type(v) in (int, float, str, bool)

    assert plain(state)


def test_resume_with_another_schedule_is_an_error():
    sched, _ = _build(name="cosine")
    other, _ = _build(name="step")
    with pytest.raises(CompError, match="schedule is 'cosine'"):
        other.load_state_dict(sched.state_dict())


# --------------------------------------------------------------------------- bad recipes


@pytest.mark.parametrize("cfg, match", [
    (dict(name="cosine", warmup_epochs=10), r"\[schedule\] warmup_epochs"),
    (dict(name="onecycle", warmup_epochs=1), r"\[schedule\] warmup_epochs"),
    (dict(name="cosine", min_lr=0.5), r"\[schedule\] min_lr"),
    (dict(name="multistep"), r"\[schedule\] milestones"),
    (dict(name="step", step_size=0), r"\[schedule\] step_size"),
    (dict(name="onecycle", pct_start=1.0), r"\[schedule\] pct_start"),
    (dict(name="plateau", gamma=0.0), r"\[schedule\] gamma"),
])
def test_bad_schedule_settings_are_refused_when_the_recipe_loads(cfg, match):
    with pytest.raises(RecipeError, match=match):
        recipe_from_dict({"name": "x", "train": {"epochs": 10}, "schedule": cfg})
