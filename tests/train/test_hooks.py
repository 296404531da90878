"""The fold's hooks (issue 31, item 1): one interface, called in order; each hook's state in last.pt
under its name; a last.pt of the layout before hooks is one clear message."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comp.errors import CompError
from comp.run.checkpoint import save_checkpoint
from comp.run.folder import RunDir
from comp.train.checkpoints import LAST_FORMAT, FoldCheckpoints, TopK, load_last
from comp.train.hooks import EpochEnd, FoldHooks, Hook
from comp.train.state import TrainState


class Seen(Hook):
    def __init__(self, name: str, log: list, stop: str = "", names: dict | None = None) -> None:
        self.name, self.log, self.stop, self.names = name, log, stop, names or {}

    def epoch_end(self, run, state, end):
        self.log.append((self.name, end.stop, state.stopped))
        return self.stop or None

    def fold_end(self, run, state, earlier):
        self.log.append((self.name, sorted(earlier)))
        return self.names

    def state_dict(self):
        return {"mine": self.name}


def test_hooks_run_in_order_the_first_stop_wins_and_later_names_replace_earlier():
    log: list = []
    hooks = FoldHooks([Seen("a", log), Seen("b", log, stop="patience"), Seen("c", log, stop="other"),
                       Seen("d", log)], checkpoints=None)
    state = TrainState()
    end = EpochEnd(epoch=3, row={}, probs=None, score=0.5, validated=True, model=torch.nn.Linear(1, 1))
    hooks.epoch_end(None, state, end)
    assert log == [("a", "", 0), ("b", "", 0), ("c", "patience", 3), ("d", "patience", 3)]
    assert end.stop == "patience" and state.stopped == 3
    log.clear()
    first, second = (lambda: np.zeros(1)), (lambda: np.ones(1))
    hooks = FoldHooks([Seen("a", log, names={"best": first, "last": first}), Seen("b", log, names={"last": second})],
                      checkpoints=None)
    named = hooks.fold_end(None, state)
    assert named == {"best": first, "last": second} and log == [("a", []), ("b", ["best", "last"])]
    assert hooks.state_dict() == {"a": {"mine": "a"}, "b": {"mine": "b"}}


@pytest.mark.parametrize("names", [["ema", "ema"], ["epoch"], ["model"]])
def test_hook_names_never_clash_in_last_pt(names):
    with pytest.raises(ValueError, match="clash"):
        FoldHooks([Seen(n, []) for n in names], checkpoints=None)


def test_the_checkpoints_hook_keeps_its_epochs_probabilities_in_its_state(tmp_path):
    folder = RunDir(tmp_path / "r").fold(0)
    folder.create()
    hook = FoldCheckpoints(folder, ["a", "b"], TopK(2, "max"), write=False)
    model = torch.nn.Linear(1, 2)
    for epoch, score in ((1, 0.5), (2, 0.7), (3, 0.6)):
        probs = np.full((2, 2), epoch / 10)
        hook.epoch_end(None, None, EpochEnd(epoch, {}, probs, score, True, model))
    again = FoldCheckpoints(folder, ["a", "b"], TopK(2, "max"), write=False)
    again.load_state_dict(hook.state_dict())
    assert again.best == (0.7, 2) and sorted(again.kept_probs) == [2, 3]
    named = again.fold_end(None, None, {})
    assert named["best"]()[0, 0] == pytest.approx(0.2) and named["last"]()[0, 0] == pytest.approx(0.3)
    assert named["top_k"]()[0, 0] == pytest.approx(0.25)


def test_a_last_pt_of_the_layout_before_hooks_says_what_to_do(tmp_path):
    folder = RunDir(tmp_path / "r").fold(0)
    folder.create()
    old = {"epoch": 1, "step": 0, "updates": 2, "stopped": 0, "loss_sum": 0.0, "loss_count": 0, "correct": 0,
           "history": [], "kept_probs": {}, "last_probs": None, "top_k": {"k": 1, "mode": "max", "kept": []},
           "swa": None, "ema": None}
    save_checkpoint(folder.last, model=torch.nn.Linear(1, 2), optimizer={}, scheduler={}, scaler={}, **old)
    with pytest.raises(CompError, match=f"last.pt format 1, this comp reads {LAST_FORMAT}.*--overwrite"):
        load_last(folder, None, TrainState(), FoldHooks([], checkpoints=None))
