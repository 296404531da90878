"""Task kinds on the same images (benchmarks/kinds.md): a multiclass, a multilabel and a regression
fit of the same model on the same mosaics, timed by `comp bench` (the full train step and one
whole epoch), one after the other on a quiet machine.

The images are the multi-label demo's (2x2 mosaics of the digits, `comp demo --kind multilabel`);
the three competitions differ only in train.csv: the tags shown (multilabel, BCE), the number of
digits shown as a class "0".."4" (multiclass, cross-entropy) and the same number as a value
(regression, MSE). Everything else is recipes/demo_multilabel.toml: ResNet18 from scratch, 32 px,
batch 64. Written under --work, never into the repository.

    python benchmarks/kinds_bench.py --work /tmp/comp_kinds [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd


def comp(*args: object) -> str:
    cmd = [sys.executable, "-m", "comp", *map(str, args)]
    print("$ comp " + " ".join(map(str, args)), flush=True)
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}):\n{result.stdout[-3000:]}")
    return result.stdout


def competitions(work: Path) -> dict[str, tuple[Path, list[str]]]:
    """The three competitions over one image folder, and each one's recipe overrides."""
    ml = work / "ml"
    if not (ml / "train.csv").exists():
        comp("demo", "--kind", "multilabel", "--dest", ml)
    train = pd.read_csv(ml / "train.csv", dtype=str, keep_default_na=False)
    count = train.tags.map(lambda t: len(t.split()))
    out = {"multilabel": (ml, [])}
    for kind, column in (("multiclass", count.astype(str)), ("regression", count.astype(float))):
        root = work / kind
        root.mkdir(parents=True, exist_ok=True)
        for folder in ("train", "test"):
            if not (root / folder).exists():
                os.symlink(ml / folder, root / folder)
        pd.DataFrame({"image_name": train.image_name, "shown": column}).to_csv(root / "train.csv", index=False)
        test = pd.read_csv(ml / "test.csv", dtype=str)
        test.to_csv(root / "test.csv", index=False)
        sets = [f"data.task={kind}", "data.label_col=shown", "data.sample_submission=", "data.solution_csv=",
                "loss.name=" + ("ce" if kind == "multiclass" else "mse"), "loss.pos_weight=none",
                "predict.decision=argmax", "submission.metric=", "train.monitor=auto"]
        out[kind] = (root, sets)
    return out


def ab_steps(work: Path, rounds: int = 10) -> None:
    """The three kinds' training steps interleaved in one process (robust to other load on the
    machine: every round times each kind once, in turn): one batch of 64 real mosaics, the
    recipe's model (timm ResNet18, 32 px, 10 / 5 / 1 outputs) with each kind's loss and targets,
    forward + backward + AdamW step. Prints the median seconds per step and the ratio to multiclass."""
    import time

    import cv2
    import numpy as np
    import torch

    from comp.model import build_model
    from comp.model.losses import build_loss
    from comp.recipe import load_recipe

    recipe = load_recipe(Path("recipes/demo_multilabel.toml"))
    ml = work / "ml"
    train = pd.read_csv(ml / "train.csv", dtype=str, keep_default_na=False)[:64]
    images = np.stack([cv2.imread(str(ml / "train" / f"{i}.png"))[:, :, ::-1] for i in train.image_name])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5)
    tags = [t.split() for t in train.tags]
    names = [str(d) for d in range(10)]
    y_ml = torch.tensor([[float(n in t) for n in names] for t in tags])
    count = torch.tensor([len(t) for t in tags])
    kinds = {"multiclass": (5, build_loss(dataclass_loss(recipe, "ce"), [1] * 5), count),
             "multilabel": (10, build_loss(recipe.loss, y_ml.sum(0).long().tolist(), names, rows=64), y_ml),
             "regression": (1, build_loss(dataclass_loss(recipe, "mse"), [64]), count.float()[:, None])}
    steps = {}
    for kind, (outputs, loss, y) in kinds.items():
        torch.manual_seed(0)
        model = build_model(recipe.model, outputs)
        steps[kind] = (model, torch.optim.AdamW(model.parameters(), 1e-3), loss, y)
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for r in range(rounds + 2):
        for kind, (model, opt, loss, y) in steps.items():
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss(model(x), y).backward()
            opt.step()
            if r >= 2:  # two rounds of warm-up
                times[kind].append(time.perf_counter() - t0)
    base = float(np.median(times["multiclass"]))
    print("| kind | median s per step (64 images) | vs multiclass |")
    print("|---|---|---|")
    for kind, t in times.items():
        print(f"| {kind} | {np.median(t):.4f} | {np.median(t) / base:.3f} |")
    print(f"({rounds} interleaved rounds, torch threads {torch.get_num_threads()})")


def dataclass_loss(recipe, name: str):
    import dataclasses

    return dataclasses.replace(recipe.loss, name=name, pos_weight="none")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/comp_kinds"))
    ap.add_argument("--rounds", type=int, default=3, help="comp bench runs per kind, in turn (the median is kept)")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--ab", type=int, default=0, help="instead: this many interleaved rounds of the bare training "
                                                      "steps in one process (robust to other load)")
    args = ap.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.ab:
        competitions(work)
        ab_steps(work, args.ab)
        return
    results: dict[str, list[dict]] = {}
    for r in range(args.rounds):
        for kind, (root, sets) in competitions(work).items():
            out = work / f"bench_{kind}_{r}.json"
            comp("bench", "recipes/demo_multilabel.toml", "--runs", work / "runs", "--out", out, "--steps", args.steps,
                 "--epochs", 1, "--infer-images", 200, "--set", f"data.root={root}", "--set", f"name=bench_{kind}",
                 "--set", "train.workers=0", *[x for s in sets for x in ("--set", s)])
            results.setdefault(kind, []).append(json.loads(out.read_text()))
    print("| kind | bare train step (img/s) | full train step (img/s) | whole epoch (img/s) | epoch vs multiclass |")
    print("|---|---|---|---|---|")
    median = {k: {p: float(pd.Series([v["phases"][p]["images_per_s"] for v in vs]).median())
                  for p in ("step", "train", "epoch")} for k, vs in results.items()}
    for kind, m in median.items():
        ratio = m["epoch"] / median["multiclass"]["epoch"]
        print(f"| {kind} | {m['step']:.0f} | {m['train']:.0f} | {m['epoch']:.0f} | {ratio:.3f} |")
    print("(medians of", args.rounds, "rounds; each round benches the three kinds in turn)")


if __name__ == "__main__":
    main()
