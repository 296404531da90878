"""The issue-19 table from `comp bench` results: one row per bench.json and augmentation path.

    .venv/bin/python benchmarks/bench_table.py runs/gpu_bench/*.json > runs/gpu_bench/table.md

Columns, images/s: (b) the bare step on synthetic device tensors, (c) the full step as fit runs
it and its ratio to (b) (the target is >= 0.9), (a) the loader alone, (e) whole epochs as fit runs
them; (f) the bare forward pass, (d) inference as comp predict runs it and its ratio to (f), and
(d) with the recipe's TTA views against (f) / views (the target is >= 0.8).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def rows(path: Path) -> list[str]:
    data = json.loads(path.read_text())
    phases = data["phases"]
    paths = data.get("by_augment") or {data["augment_on"]: {"phases": phases, "efficiency": data["efficiency"]}}
    forward = phases["forward"]["images_per_s"]
    infer, tta = phases["infer"]["images_per_s"], phases["infer_tta"]["images_per_s"]
    views = len(phases["infer_tta"]["views"])
    config = (f"{path.stem}: {data['model']} @{data['image_size']}, batch {data['batch_size']}"
              + (f", {data['preprocess']}" if data["preprocess"] != "none" else "")
              + (", cache" if data["cache"] else "") + (", compiled" if data.get("compile") else ""))
    out = []
    for name, p in paths.items():
        ph = p["phases"]
        b, c, a = ph["step"]["images_per_s"], ph["train"]["images_per_s"], ph["data"]["images_per_s"]
        e = f"{ph['epoch']['images_per_s']:.0f}" if "epoch" in ph else "–"
        eager = ph.get("step_eager", {}).get("images_per_s")
        out.append(f"| {config} | {name} | {b:.0f}" + (f" (eager {eager:.0f})" if eager else "")
                   + f" | {c:.0f} | {c / b:.2f} | {a:.0f} | {e} | {p['efficiency']:.2f} | {forward:.0f} | "
                   f"{infer:.0f} ({infer / forward:.2f}) | x{views}: {tta:.0f} ({tta * views / forward:.2f}) |")
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    first = json.loads(Path(argv[0]).read_text())
    print(f"{first['device']}, {first['cpu_cores']} cores, torch {first['versions']['torch']}, amp {first['amp']}, "
          f"channels_last {first['channels_last']}; images/s")
    print()
    print("| config | augment on | (b) bare step | (c) full step | (c)/(b) | (a) loader | (e) epochs | "
          "(c)/min(a,b) | (f) bare forward | (d) inference ((d)/(f)) | (d) TTA ((d)·views/(f)) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in argv:
        for row in rows(Path(name)):
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
