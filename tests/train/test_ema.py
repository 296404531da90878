"""The weights' EMA ([train] ema_decay) and early stopping ([train] patience), driven through the CLI;
their resume is a case of tests/train/test_resilience.py's interrupted-then-resumed test."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from comp.cli import app
from comp.recipe import RecipeError, load_recipe
from comp.run.checkpoint import load_checkpoint
from comp.train.ema import ModelEma
from comp.train.swa import SwaAverage


def comp(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)


def _fold(runs):
    return runs / "tiny" / "fold0"


def test_the_ema_weights_are_validated_kept_and_submitted(tmp_path, recipe_file):
    from comp.data.table import load_train_table
    from comp.model.runtime import resolve_runtime
    from comp.predict.predict import predict_run

    sets = ["--set", "train.epochs=2", "--set", "train.keep_top_k=2", "--set", "predict.checkpoints=top_k",
            "--set", "train.deterministic=true", "--no-report"]
    runs = tmp_path / "runs"
    result = comp("fit", recipe_file, "--runs", runs, "--set", "train.ema_decay=0.9", *sets)
    assert result.exit_code == 0, result.output + repr(result.exception)
    last, ema = load_checkpoint(_fold(runs) / "last.pt"), load_checkpoint(_fold(runs) / "ema.pt")
    # ema.pt is the EMA as the fold ended; last.pt keeps the weights as trained, and the EMA to resume
    for k, v in ema["model"].items():
        assert torch.equal(v, last["ema"][k]), k
    raw = last["model"]
    assert not torch.equal(ema["model"]["fc.weight"], raw["fc.weight"])
    assert not torch.equal(ema["model"]["bn1.running_mean"], raw["bn1.running_mean"])  # buffers averaged too
    assert torch.equal(ema["model"]["bn1.num_batches_tracked"], raw["bn1.num_batches_tracked"])
    kept = load_checkpoint(_fold(runs) / "epoch002.pt")["model"]  # the top-k keep EMA weights
    assert all(torch.equal(v, ema["model"][k]) for k, v in kept.items())

    # The OOF rows are the kept (EMA) epochs' predictions, as `comp predict` makes them...
    run = runs / "tiny"
    recipe = load_recipe(run / "recipe.toml")
    table, _ = load_train_table(recipe)
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str, "label": str})
    row = {id_: i for i, id_ in enumerate(table.ids)}
    valid = table.subset(np.array([row[i] for i in oof.id]))
    cpu = resolve_runtime(recipe.train, "cpu")
    submitted = predict_run(run, cpu, tta=False, table=valid)
    probs = oof[[c for c in oof.columns if c.startswith("prob_")]].to_numpy()
    assert np.allclose(probs, submitted.probs, atol=1e-5)
    # ...and the last epoch's val_loss is the cross-entropy of ema.pt's predictions: EMA-validated.
    final = predict_run(run, cpu, tta=False, table=valid, checkpoints="ema")
    labels = np.array([submitted.classes.labels.index(v) for v in oof.label])
    history = pd.read_csv(_fold(runs) / "history.csv")
    cross_entropy = -np.mean(np.log(final.probs[np.arange(len(labels)), labels]))
    assert history.val_loss.iloc[-1] == pytest.approx(cross_entropy, rel=1e-4)

    # The EMA only watches: the same fit without it trains the very same weights.
    plain = tmp_path / "plain"
    result = comp("fit", recipe_file, "--runs", plain, *sets)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert not (_fold(plain) / "ema.pt").exists()
    for k, v in load_checkpoint(_fold(plain) / "last.pt")["model"].items():
        assert torch.equal(v, raw[k]), k
    assert pd.read_csv(_fold(plain) / "history.csv").val_loss.iloc[-1] != history.val_loss.iloc[-1]


def test_patience_stops_a_stalled_fold_and_resume_trains_no_more(tmp_path, recipe_file):
    from comp.data.table import load_train_table
    from comp.model.runtime import resolve_runtime
    from comp.predict.predict import predict_run

    # A frozen backbone and a negligible LR: the (EMA's) accuracy never improves on epoch 1's.
    runs = tmp_path / "runs"
    sets = ["--set", "train.epochs=6", "--set", "train.patience=2", "--set", "model.freeze=backbone",
            "--set", "optim.lr=1e-9", "--set", "train.swa_epochs=2", "--set", "train.ema_decay=0.5",
            "--set", "predict.checkpoints=last", "--no-report"]
    result = comp("fit", recipe_file, "--runs", runs, *sets)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "fold 0: stopped early at epoch 3: accuracy has not improved on epoch 1's for 2 epochs" in result.output
    fold = _fold(runs)
    history = pd.read_csv(fold / "history.csv")
    assert list(history.epoch) == [1, 2, 3] and history.accuracy.nunique() == 1
    assert history.stopped_early.isna().tolist() == [True, True, False]
    assert "stopped early at epoch 3" in history.stopped_early.iloc[-1]
    result_json = json.loads((fold / "result.json").read_text())
    assert result_json["stopped_early"] == 3 and result_json["best_epoch"] == 1
    assert json.loads((runs / "tiny" / "run.json").read_text())["stopped_early"] == {"0": 3}
    swa = load_checkpoint(fold / "swa.pt")
    assert swa["swa_epochs"] == 2 and swa["epoch"] == 3  # the SWA window ends at the stop: epochs 2 and 3
    assert load_checkpoint(fold / "last.pt")["stopped"] == 3
    assert load_checkpoint(fold / "ema.pt")["epoch"] == 3  # the EMA as the fold stopped
    # "last" with EMA on: last.pt's weights as trained, validated once more for the OOF rows
    run = runs / "tiny"
    recipe = load_recipe(run / "recipe.toml")
    table, _ = load_train_table(recipe)
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str, "label": str})
    row = {id_: i for i, id_ in enumerate(table.ids)}
    last = predict_run(run, resolve_runtime(recipe.train, "cpu"), tta=False, checkpoints="last",
                       table=table.subset(np.array([row[i] for i in oof.id])))
    assert np.allclose(oof[[c for c in oof.columns if c.startswith("prob_")]].to_numpy(), last.probs, atol=1e-5)

    result = comp("fit", recipe_file, "--runs", runs, *sets, "--resume")
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "fold 0: already complete" in result.output
    # Killed after its last.pt but before result.json: the resume still trains no more epochs.
    (fold / "result.json").unlink()
    result = comp("fit", recipe_file, "--runs", runs, *sets, "--resume")
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "fold 0: stopped early at epoch 3; nothing left to train" in result.output
    assert "epoch   4" not in result.output
    assert list(pd.read_csv(fold / "history.csv").epoch) == [1, 2, 3]
    assert json.loads((fold / "result.json").read_text())["stopped_early"] == 3


def test_swa_window_is_the_running_mean_of_the_last_epochs():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    window, running = SwaAverage(model, window=2), SwaAverage(model)
    for epoch in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        window.update()
        if epoch >= 3:
            running.update()
    resumed = SwaAverage(model, window=2)
    resumed.load_state_dict(window.state_dict())  # as last.pt carries it
    assert window.count == running.count == resumed.count == 2
    for a, b, c in zip(window._mean().parameters(), running._mean().parameters(), resumed._mean().parameters()):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_ema_decay_warms_up_and_averages_buffers():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    ema = ModelEma(model, decay=0.99)
    # update t uses min(0.99, 1 - (1 + (t - 1)) ** -0.75): a copy first, then slowly slower
    assert [ema.decay(t) for t in (1, 2, 11)] == pytest.approx([0.0, 1 - 2 ** -0.75, 1 - 11 ** -0.75])
    assert ema.decay(10 ** 6) == 0.99
    model(torch.randn(8, 4))  # moves the BatchNorm running statistics
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    ema.update(model, step=2)
    decay = 1 - 2 ** -0.75
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(ema.state_dict()[k], decay * before[k] + (1 - decay) * v)
        else:
            assert torch.equal(ema.state_dict()[k], v)  # num_batches_tracked is copied
    assert not torch.equal(ema.state_dict()["1.running_mean"], before["1.running_mean"])


@pytest.mark.parametrize("sets,message", [
    (["predict.checkpoints=ema"], '[predict] checkpoints = "ema" needs [train] ema_decay > 0'),
    (["train.ema_decay=1.0"], "[train] ema_decay must be in [0, 1)"),
    (["train.patience=-1"], "[train] patience must not be negative"),
    (["train.patience=3", "cv.scheme=full"], "[train] patience needs validation rows"),
    (["train.patience=2", "schedule.name=plateau", "schedule.patience=2"],
     "[train] patience (2) must exceed [schedule] patience (2)"),
])
def test_ema_and_patience_settings_are_checked(recipe_file, sets, message):
    with pytest.raises(RecipeError) as err:
        load_recipe(recipe_file, sets)
    assert message in str(err.value)
