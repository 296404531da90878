"""Distribution shift on RetinaMNIST (benchmarks/shift.md): the shipped recipe under corrupted test
images, plain and with three levers (a robustness preset, --adapt-bn, one --pseudo-from round).

Protocol (the defaults): `comp import medmnist` writes the competition into a scratch folder; the
400 test images are written again under each of four fixed corruptions in the style of
ImageNet-C, severity 3 (below), each into its own copy of the competition (train rows and labels
unchanged, test/ replaced); recipes/retinamnist.toml is fitted per seed

* plain: as shipped,
* preset: with `[augment] preset = "fundus"` (its pipeline after the recipe's own flips/rotation),

and every test set (clean and the four corruptions) is predicted with `--tta`:

* plain, preset: as fitted,
* adapt_bn: the plain run with `comp predict --adapt-bn`,
* pseudo: `comp fit --pseudo-from <plain run> --min-prob 0.5` on that test set (one round: a new
  fit per corruption and seed), then predicted.

QWK, accuracy and macro one-vs-rest AUC against the test labels; mean and sample standard
deviation over the seeds. Everything is written under --work (never into the repository).

Corruptions (severity 3 of Hendrycks & Dietterich 2019, on 28x28 images):
contrast: x' = (x - mean(x)) * 0.2 + mean(x) (per image, all channels);
brightness: HSV value + 0.3 (of 1), clipped;
gaussian_blur: sigma 3 px at 224 px, scaled to the image: 3 * 28 / 224 = 0.375 px;
jpeg: quality 15.

Run from the repository root, e.g. the full protocol:
    python benchmarks/shift.py --work /tmp/shift
and a reduced one (what benchmarks/shift.md reports when it says so):
    python benchmarks/shift.py --work /tmp/shift --seeds 0 --epochs 8 --swa 3 --holdout
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image
from sklearn.metrics import cohen_kappa_score, roc_auc_score

CORRUPTIONS = ("clean", "contrast", "brightness", "gaussian_blur", "jpeg")
LEVERS = ("plain", "preset", "adapt_bn", "pseudo")


def corrupt(rgb: np.ndarray, kind: str) -> np.ndarray:
    """One uint8 RGB image under a severity-3 corruption (see the module)."""
    x = rgb.astype(np.float64) / 255.0
    if kind == "clean":
        return rgb
    if kind == "contrast":
        mean = x.mean()
        out = (x - mean) * 0.2 + mean
    elif kind == "brightness":
        hsv = cv2.cvtColor(x.astype(np.float32), cv2.COLOR_RGB2HSV)
        hsv[..., 2] = np.clip(hsv[..., 2] + 0.3, 0, 1)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    elif kind == "gaussian_blur":
        sigma = 3.0 * rgb.shape[1] / 224.0
        out = cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    elif kind == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=15)
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    else:
        raise ValueError(kind)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def comp(*args: str, quiet: bool = True) -> None:
    cmd = [sys.executable, "-m", "comp", *map(str, args)]
    print("$ comp " + " ".join(map(str, args)), flush=True)
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}):\n{result.stdout[-3000:]}")
    if not quiet:
        print(result.stdout[-2000:])


def write_corrupted(data: Path, work: Path) -> dict[str, Path]:
    """A copy of the competition per corruption, its test/ images corrupted; the clean one as is."""
    roots = {"clean": data}
    for kind in CORRUPTIONS[1:]:
        root = work / f"data_{kind}"
        if not (root / "done").exists():
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(data, root)
            for path in sorted((root / "test").iterdir()):
                rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
                cv2.imwrite(str(path), cv2.cvtColor(corrupt(rgb, kind), cv2.COLOR_RGB2BGR))
            (root / "done").write_text("")
        roots[kind] = root
    return roots


def score(csv: Path, solution: Path) -> dict[str, float]:
    sub = pd.read_csv(csv, dtype={"id": str}).set_index("id")
    truth = pd.read_csv(solution, dtype={"id": str}).set_index("id").loc[sub.index]
    y = truth["label"].astype(int).to_numpy()
    pred = sub["label"].astype(int).to_numpy()
    cols = sorted((c for c in sub.columns if c.startswith("prob_")), key=lambda c: int(c[5:]))
    probs = sub[cols].to_numpy(dtype=np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    return {"qwk": float(cohen_kappa_score(y, pred, weights="quadratic")), "acc": float((y == pred).mean()),
            "auc": float(roc_auc_score(y, probs, multi_class="ovr", average="macro", labels=list(range(len(cols)))))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/comp_shift"))
    ap.add_argument("--npz", type=Path, default=Path("../shared/data/retinamnist.npz"))
    ap.add_argument("--recipe", type=Path, default=Path("recipes/retinamnist.toml"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=0, help="0: the recipe's")
    ap.add_argument("--swa", type=int, default=-1, help="[train] swa_epochs; -1: the recipe's")
    ap.add_argument("--holdout", action="store_true",
                    help="validate on the official 120 valid rows (one fit per run) instead of the recipe's 5 folds")
    ap.add_argument("--min-prob", type=float, default=0.5)
    ap.add_argument("--levers", nargs="+", default=list(LEVERS), choices=LEVERS)
    ap.add_argument("--corruptions", nargs="+", default=list(CORRUPTIONS), choices=CORRUPTIONS)
    args = ap.parse_args()
    work = args.work.resolve()
    data, runs, subs = work / "data", work / "runs", work / "subs"
    subs.mkdir(parents=True, exist_ok=True)
    if not (data / "train.csv").exists():
        comp("import", "medmnist", args.npz, data)
    roots = write_corrupted(data, work)
    sets = [f"--set=data.root={data}"]
    if args.epochs:
        sets.append(f"--set=train.epochs={args.epochs}")
    if args.swa >= 0:
        sets.append(f"--set=train.swa_epochs={args.swa}")
    if args.holdout:
        sets += ["--set=cv.scheme=predefined", "--set=cv.split_col=split"]
    results = work / "results.jsonl"
    done = set()
    if results.exists():
        done = {(r["lever"], r["corruption"], r["seed"]) for r in map(json.loads, results.read_text().splitlines())}
    t0 = time.time()

    def record(lever: str, kind: str, seed: int, csv: Path) -> None:
        row = {"lever": lever, "corruption": kind, "seed": seed, **score(csv, data / "solution.csv")}
        print(json.dumps(row), flush=True)
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")

    for seed in args.seeds:
        for lever, extra in (("plain", []), ("preset", ["--set=augment.preset=fundus"])):
            if lever not in args.levers and not (lever == "plain" and {"adapt_bn", "pseudo"} & set(args.levers)):
                continue
            name = f"{lever}_s{seed}"
            if not (runs / name / "oof.csv").exists():
                comp("fit", args.recipe, "--runs", runs, "--no-report", "--overwrite", f"--set=seed={seed}",
                     f"--set=name={name}", *sets, *extra)
        for kind in args.corruptions:
            root = roots[kind]
            for lever in args.levers:
                if (lever, kind, seed) in done:
                    continue
                out = subs / f"{lever}_{kind}_s{seed}.csv"
                if lever in ("plain", "preset"):
                    comp("predict", "--runs", runs, "--run", f"{lever}_s{seed}", "--tta", "--proba", "--out", out,
                         "--data", root)
                elif lever == "adapt_bn":
                    comp("predict", "--runs", runs, "--run", f"plain_s{seed}", "--tta", "--proba", "--adapt-bn",
                         "--out", out, "--data", root)
                else:
                    name = f"pseudo_{kind}_s{seed}"
                    comp("fit", args.recipe, "--runs", runs, "--no-report", "--overwrite", f"--set=seed={seed}",
                         f"--set=name={name}", *sets, f"--set=data.root={root}", "--pseudo-from", f"plain_s{seed}",
                         "--min-prob", args.min_prob)
                    comp("predict", "--runs", runs, "--run", name, "--tta", "--proba", "--out", out)
                record(lever, kind, seed, out)
    print(f"elapsed {time.time() - t0:.0f} s")
    table(results)


def table(results: Path) -> None:
    """The markdown table: per corruption and lever, mean ± sd over seeds of QWK / acc / AUC."""
    rows = pd.DataFrame(map(json.loads, results.read_text().splitlines()))
    lines = ["| test set | lever | seeds | QWK | accuracy | AUC |", "|---|---|---|---|---|---|"]
    for kind in CORRUPTIONS:
        for lever in LEVERS:
            r = rows[(rows.corruption == kind) & (rows.lever == lever)]
            if not len(r):
                continue

            def fmt(col: str) -> str:
                sd = r[col].std(ddof=1) if len(r) > 1 else float("nan")
                return f"{r[col].mean():.3f}" + (f" ± {sd:.3f}" if len(r) > 1 else "")

            lines.append(f"| {kind} | {lever} | {len(r)} | {fmt('qwk')} | {fmt('acc')} | {fmt('auc')} |")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--table":
        table(Path(sys.argv[2]))
    else:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        main()
