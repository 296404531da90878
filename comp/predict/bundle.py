"""A prediction bundle: what ``comp predict`` needs from one or more runs, and nothing else.

``comp export`` writes it; ``comp predict --bundle`` reads it, with no runs folder, and writes
nothing inside it (a Kaggle dataset is read-only). Its layout::

    bundle.json                 the manifest: format, comp version, the runs in ensemble order
                                with their classes and weights files, the ensemble weights, TTA,
                                the decision, and every file's size and SHA-256
    blend.json                  with --blend: the blend (its mean and its fitted decision)
    README.md                   the commands that install comp and predict with the bundle
    runs/<name>/run.json        the run's record (its classes, in order)
    runs/<name>/recipe.toml     the run's resolved recipe
    runs/<name>/thresholds.json the decision fitted on its out-of-fold predictions (when it has one)
    runs/<name>/fold<K>/<which>.safetensors
                                the weights ``comp predict --run`` would use, weights only
    runs/<name>/fold<K>/<which>.onnx
                                with --onnx: the same model as ONNX (comp.predict.onnx), which
                                ``comp predict --bundle`` runs with ONNX Runtime when it is installed
    wheels/                     with --wheels: comp's wheel and its dependencies' (pip download)

A run's folder in a bundle is a :class:`~comp.run.folder.RunDir` with only those files, so a
bundle predicts through the same code as its runs (:func:`comp.predict.predict.predict`), the
weights read from safetensors instead of checkpoints. Opening a bundle checks its format and
every listed file's checksum before anything is read (:func:`open_bundle`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import comp
from comp import atomic
from comp.console import timestamp
from comp.errors import CompError
from comp.predict.decision import load_decision
from comp.predict.predict import blend_decision, checkpoint_paths
from comp.kinds import RULES, activation_of
from comp.recipe import PredictConfig, choices
from comp.run.folder import BlendInfo, RunDir, check_output

if TYPE_CHECKING:  # torch only where a bundle is written: one with ONNX models predicts without it
    import torch

logger = logging.getLogger(__name__)

FORMAT = 1  # bumped when a bundle written by this comp could not be read by an older one
MANIFEST = "bundle.json"
BLEND = "blend.json"
README = "README.md"
RUNS, WHEELS = "runs", "wheels"
WEIGHTS_SUFFIX = ".safetensors"
# A run's small files a bundle carries: its record, its resolved recipe, its fitted decision.
_RUN_FILES = ("info_path", "recipe_path", "thresholds_path")
# Left out by `comp export --no-torch`: the image the bundle is used on has them (Kaggle's does).
TORCH_PACKAGES = ("torch", "torchvision", "triton")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class BundleRun:
    """One run of a bundle: its folder inside the bundle and the weights files it predicts with."""

    name: str
    path: Path
    classes: list[str]
    weight_files: list[Path]
    onnx_files: list[Path] = dataclasses.field(default_factory=list)  # exported with --onnx


@dataclass(frozen=True)
class Bundle:
    """An opened (verified) bundle."""

    path: Path
    comp_version: str
    runs: list[BundleRun]
    weights: list[float]  # the ensemble weights, one per run
    tta: bool
    decision: str  # argmax, ordinal_thresholds or threshold (the first run's thresholds.json)
    checkpoints: str | None  # the checkpoints exported (None: each run's [predict] checkpoints)
    wheels: list[str]
    blend: BlendInfo | None = None  # exported with --blend: its mean and fitted decision

    @property
    def run_dirs(self) -> list[Path]:
        return [r.path for r in self.runs]


# --------------------------------------------------------------------------- writing


def export_bundle(run_dirs: list[Path], out: Path, *, weights: list[float] | None = None, tta: bool = False,
                  checkpoints: str | None = None, decision: str | None = None,
                  wheels: WheelSpec | None = None, blend: BlendInfo | None = None, onnx: bool = False) -> Bundle:
    """Write a bundle of ``run_dirs`` (ensembled in that order with ``weights``) into ``out``;
    with ``blend`` (``comp blend``'s, whose runs and weights ``run_dirs`` and ``weights`` are),
    its mean and fitted decision go along, as ``comp predict --blend`` uses them.

    Every check runs before anything is written (the runs, their weights, the decision, the
    ensemble weights); the bundle is built in a hidden folder beside ``out`` and renamed into
    place complete, so a failure (a pip download included) leaves nothing behind.

    ``onnx``: each model also as ONNX, checked against torch on test images (:mod:`comp.predict.onnx`).
    """
    from comp.model import build_model
    from comp.run.checkpoint import load_checkpoint, load_model_state

    out = Path(out)
    check_output(out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise CompError(f"--out {out} exists and is not an empty folder: name a new one")
    weights = [float(w) for w in weights] if weights else [1.0] * len(run_dirs)
    if len(weights) != len(run_dirs) or any(w < 0 or w != w for w in weights) or sum(weights) <= 0:
        raise CompError(f"need one non-negative --weight per run ({len(run_dirs)} runs, got {weights})")
    names = [RunDir(d).name for d in run_dirs]
    if len(set(names)) != len(names):
        raise CompError(f"two runs share a name: {names}; a bundle keeps each run under its name")
    first = RunDir(run_dirs[0])
    # A decision the run (or blend) cannot make stops here.
    if blend is None:
        decision = load_decision(first.recipe(), run_dirs[0], decision).rule
    else:
        decision = blend_decision(first, blend, decision).rule
    sources = []
    for d in run_dirs:
        run = RunDir(d)
        which = checkpoints or run.recipe().predict.checkpoints
        sources.append((run, checkpoint_paths(d, which)))
        if run.classes() != first.classes():
            raise CompError(f"runs disagree on the classes: {first.name} {first.classes()} vs "
                            f"{run.name} {run.classes()}")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic.temp_folder(out.parent, f".{out.name}.", ".export")
    onnx_records: dict[str, Any] = {}
    try:
        runs = []
        for run, paths in sources:
            onnx_files, check = [], None
            target = RunDir(tmp / RUNS / run.name)
            target.path.mkdir(parents=True)
            for attr in _RUN_FILES:
                src = getattr(run, attr)
                if src.is_file():
                    shutil.copyfile(src, getattr(target, attr))
            files = []
            classes = len(run.classes())
            model = build_model(dataclasses.replace(run.recipe().model, pretrained=False), classes)
            for path in paths:
                dest = target.path / path.relative_to(run.path).with_suffix(WEIGHTS_SUFFIX)
                dest.parent.mkdir(parents=True, exist_ok=True)
                state = load_checkpoint(path)["model"]
                load_model_state(model, state, path, classes=classes)  # it fits the run's model: checked here
                save_weights(state, dest)
                files.append(dest)
                if onnx:
                    from comp.predict.onnx import ONNX_SUFFIX, check_inputs, export_fold

                    check = check_inputs(run.recipe()) if check is None else check
                    onnx_path = dest.with_suffix(ONNX_SUFFIX)
                    what = f"{run.name} {path.parent.name}/{path.stem}"
                    onnx_records[_rel(tmp, onnx_path)] = export_fold(model, onnx_path, run.recipe(), classes, check, what,
                                                                           activation_of(run.task(), run.recipe().model.head))
                    onnx_files.append(onnx_path)
            runs.append(BundleRun(run.name, target.path, run.classes(), files, onnx_files))
        if blend is not None:
            # Without fitted_on (checked here, by blend_members; there are no runs to check in a
            # bundle): the blend.json of format 1, which comp before it reads.
            shown = {k: v for k, v in dataclasses.asdict(blend).items() if k != "fitted_on"}
            atomic.write_text(tmp / BLEND, json.dumps(shown, indent=2) + "\n")
        wheel_names = fetch_wheels(wheels, tmp / WHEELS) if wheels is not None else []
        listed = sorted((tmp / RUNS).rglob("*")) + ([tmp / BLEND] if blend is not None else [])
        manifest = {
            "format": FORMAT,
            "comp": comp.__version__,
            "created": timestamp(),
            "runs": [{"name": r.name, "classes": r.classes, "weights": [_rel(tmp, f) for f in r.weight_files],
                      **({"onnx": [_rel(tmp, f) for f in r.onnx_files]} if r.onnx_files else {})} for r in runs],
            **({"onnx": onnx_records} if onnx_records else {}),
            "ensemble_weights": weights,
            "tta": tta,
            "decision": decision,
            "checkpoints": checkpoints,
            "blend": None if blend is None else BLEND,
            "files": {_rel(tmp, p): _file_record(p) for p in listed if p.is_file()},
            "wheels": {name: _file_record(tmp / WHEELS / name) for name in wheel_names},
        }
        atomic.write_text(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        atomic.write_text(tmp / README, bundle_readme(manifest, out.name))
        if out.exists():
            out.rmdir()  # empty, checked above
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_bundle(out)


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    """A state dict as safetensors, weights only (no optimiser, no pickle), written atomically."""
    from safetensors.torch import save_file

    # Own contiguous copies: safetensors refuses shared or strided storage (channels-last, tied weights).
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    with atomic.atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def file_digest(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_record(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": file_digest(path)}


# --------------------------------------------------------------------------- reading


def open_bundle(path: Path) -> Bundle:
    """Read and verify a bundle: its manifest, its format (this comp must be able to read it),
    and every listed file (present, same size and SHA-256 as at export). Reads only."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        what = "not found" if not path.exists() else f"not a comp bundle (no {MANIFEST})"
        raise CompError(f"--bundle {path}: {what}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CompError(f"--bundle {path}: {MANIFEST} is damaged ({type(err).__name__}); export it again") from None
    if not isinstance(manifest, dict) or "format" not in manifest:
        raise CompError(f"--bundle {path}: {MANIFEST} is damaged (not a manifest: no \"format\"); export it again")
    fmt, version = manifest["format"], manifest.get("comp")
    if not _is_int(fmt) or not isinstance(version, str):
        field, value = ("format", fmt) if not _is_int(fmt) else ("comp", version)
        want = "a whole number" if field == "format" else "a version"
        raise _bad_field(path, field, f"is {_shown(value)}, not {want}")
    if fmt != FORMAT:
        raise CompError(f"--bundle {path} was made by comp {version} (bundle format {fmt}); this comp "
                        f"{comp.__version__} reads format {FORMAT}: install comp {version} (from the bundle's "
                        f"{WHEELS}/) or export the runs again with this comp")
    check_manifest(manifest, path)
    files = {name: (rec["bytes"], rec["sha256"]) for name, rec in manifest["files"].items()}
    runs = [BundleRun(r["name"], path / RUNS / r["name"], list(r["classes"]), [path / _inside(w) for w in r["weights"]],
                      [path / _inside(w) for w in r.get("onnx", [])])
            for r in manifest["runs"]]
    weights = [float(w) for w in manifest["ensemble_weights"]]
    tta, decision, checkpoints = manifest["tta"], manifest["decision"], manifest["checkpoints"]
    wheels = sorted(manifest.get("wheels") or {})
    blend_file = manifest.get("blend")
    for name, (size, digest) in files.items():
        file = path / _inside(name)
        if not file.is_file():
            raise CompError(f"--bundle {path} is incomplete: {name} is missing (copy or upload the whole folder)")
        if file.stat().st_size != size or file_digest(file) != digest:
            raise CompError(f"--bundle {path}: {name} differs from the file exported (checksum); "
                            f"copy or upload the bundle again")
    listed = {path / n for n in files}
    for run in runs:
        needed = [RunDir(run.path).info_path, RunDir(run.path).recipe_path, *run.weight_files, *run.onnx_files]
        unlisted = [f for f in needed if f not in listed]
        if unlisted or not run.weight_files:
            raise CompError(f"--bundle {path}: {MANIFEST} lists no checksum for run {run.name}'s files; export it again")
    blend = None
    if blend_file is not None:
        if _inside(blend_file) not in files:
            raise CompError(f"--bundle {path}: {MANIFEST} lists no checksum for {blend_file}; export it again")
        try:
            blend = BlendInfo(**json.loads((path / _inside(blend_file)).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as err:
            raise CompError(f"--bundle {path}: {blend_file} is damaged ({type(err).__name__}); export it again") from None
    return Bundle(path, version, runs, weights, tta, decision, checkpoints, wheels, blend)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    try:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
    except OverflowError:  # an integer beyond any float
        return False


def _shown(value: Any) -> str:
    """A manifest value as bundle.json writes it, cut short."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _bad_field(path: Path, field: str, what: str) -> CompError:
    return CompError(f"--bundle {path}: {MANIFEST} is damaged: \"{field}\" {what}; export it again")


def check_manifest(manifest: dict[str, Any], path: Path) -> None:
    """Every field of a (format 1) manifest has its type, length and sign, before any file or
    model is read: a hand-edited bundle.json is one message naming the field."""
    runs = manifest.get("runs")
    if not isinstance(runs, list) or not runs:
        raise _bad_field(path, "runs", f"is {_shown(runs)}, not a list of one or more runs")
    for i, run in enumerate(runs):
        at = f"runs[{i}]"
        if not isinstance(run, dict):
            raise _bad_field(path, at, f"is {_shown(run)}, not a run (name, classes, weights)")
        name, classes, files = run.get("name"), run.get("classes"), run.get("weights")
        if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name:
            raise _bad_field(path, f"{at}.name", f"is {_shown(name)}, not a run folder's name")
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise _bad_field(path, f"{at}.classes", f"is {_shown(classes)}, not a list of class names (a regression run: its target)")
        if classes != runs[0]["classes"]:
            raise _bad_field(path, f"{at}.classes", f"differ from runs[0].classes ({_shown(runs[0]['classes'])})")
        if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
            raise _bad_field(path, f"{at}.weights", f"is {_shown(files)}, not a list of one or more weights files")
    names = [r["name"] for r in runs]
    if len(set(names)) != len(names):
        raise _bad_field(path, "runs", f"name a run twice ({_shown(names)})")
    weights = manifest.get("ensemble_weights")
    if not isinstance(weights, list) or not all(_is_number(w) for w in weights):
        raise _bad_field(path, "ensemble_weights", f"is {_shown(weights)}, not a list of numbers")
    if len(weights) != len(runs):
        raise _bad_field(path, "ensemble_weights", f"has {len(weights)} value(s) for {len(runs)} run(s)")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise _bad_field(path, "ensemble_weights", f"is {_shown(weights)}: weights are >= 0 and not all 0")
    for field, ok, want in (
            ("tta", isinstance(manifest.get("tta"), bool), "true or false"),
            ("decision", manifest.get("decision") in RULES, " or ".join(RULES)),  # every kind's rules
            ("checkpoints", manifest.get("checkpoints") in (None, *choices(PredictConfig, "checkpoints")),
             "null or " + " or ".join(choices(PredictConfig, "checkpoints"))),
            ("blend", manifest.get("blend") is None or isinstance(manifest.get("blend"), str), "null or a file name")):
        if field not in manifest or not ok:
            value = _shown(manifest[field]) if field in manifest else "missing"
            raise _bad_field(path, field, f"is {value}, not {want}")
    for field in ("files", "wheels"):
        table = manifest.get(field, {} if field == "wheels" else None)
        if not isinstance(table, dict):
            raise _bad_field(path, field, f"is {_shown(table)}, not a table of files")
        for name, rec in table.items():
            size, digest = (rec.get("bytes"), rec.get("sha256")) if isinstance(rec, dict) else (None, None)
            if not _is_int(size) or size < 0 or not isinstance(digest, str) or not _SHA256.fullmatch(digest):
                raise _bad_field(path, f"{field}[{name}]", f"is {_shown(rec)}, not {{\"bytes\": size, \"sha256\": "
                                                            f"64 hex digits}}")


def _inside(name: str) -> str:
    """A manifest's relative path, refused when it would lead outside the bundle."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise CompError(f"bundle manifest names a path outside the bundle: {name!r}")
    return str(p)


def bundle_size(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def describe_bundle(bundle: Bundle) -> list[str]:
    """What a bundle holds, a line each: its size, each run's weights and decision, the wheels."""
    lines = [f"{bundle.path}: {_size(bundle_size(bundle.path))}, comp {bundle.comp_version}"]
    for run, w in zip(bundle.runs, bundle.weights):
        rel = ", ".join(_rel(run.path, f) for f in run.weight_files)
        size = sum(f.stat().st_size for f in run.weight_files)
        fitted = " + thresholds.json" if RunDir(run.path).thresholds_path.is_file() else ""
        lines.append(f"  {run.name} (weight {w:g}): {len(run.weight_files)} weights file(s) {rel} "
                     f"({_size(size)}), recipe.toml, run.json{fitted}; {len(run.classes)} classes "
                     f"{', '.join(run.classes)}")
        if run.onnx_files:
            lines.append(f"    + {len(run.onnx_files)} ONNX model(s) ({_size(sum(f.stat().st_size for f in run.onnx_files))}): "
                         "comp predict --bundle runs them with ONNX Runtime when it is installed")
    blend = "" if bundle.blend is None else f", blend {bundle.blend.name} ({bundle.blend.mean} mean, its fitted decision)"
    lines.append(f"  predict: TTA {'on' if bundle.tta else 'off'}, decision {bundle.decision}{blend}")
    if bundle.wheels:
        size = sum((bundle.path / WHEELS / n).stat().st_size for n in bundle.wheels if (bundle.path / WHEELS / n).is_file())
        lines.append(f"  {WHEELS}/: {len(bundle.wheels)} wheels ({_size(size)})")
    lines.append(f"  {README}: the commands to install comp offline and predict")
    return lines


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def bundle_readme(manifest: dict[str, Any], folder: str) -> str:
    """The bundle's README: what it holds and the exact commands of an offline notebook."""
    runs = ", ".join(f"{r['name']} ({len(r['weights'])} weights file(s))" for r in manifest["runs"])
    kaggle = f"/kaggle/input/{folder}"
    if manifest.get("wheels"):
        install = [f"pip install --no-index --find-links {kaggle}/{WHEELS} comp",
                   f"# packages the image already has (torch, ...) are kept; the others come from {WHEELS}/"]
    else:
        install = ["# no wheels in this bundle (comp export --wheels adds them): install comp from a",
                   "# dataset of its wheels, e.g.",
                   "pip install --no-index --find-links /kaggle/input/<comp-wheels> comp"]
    decision = manifest["decision"]
    return "\n".join([
        "# comp prediction bundle",
        "",
        f"Made by comp {manifest['comp']} (bundle format {manifest['format']}) on {manifest['created']}.",
        f"Runs, in ensemble order: {runs}; ensemble weights {manifest['ensemble_weights']};",
        f"TTA {'on' if manifest['tta'] else 'off'}; decision {decision}.",
        f"`{MANIFEST}` lists every file with its size and SHA-256: `comp predict --bundle` checks them",
        "all first and stops on a missing or altered one. Nothing is ever written inside this folder.",
        "",
        f"Upload this folder as a dataset (say `{folder}`), attach it and the competition to the",
        "notebook, turn the internet off, and run in a cell (`!` before each line in Jupyter):",
        "",
        "```sh",
        *install,
        f"comp predict --bundle {kaggle} --data /kaggle/input/<competition> --out submission.csv",
        "```",
        "",
        "`--data` is the competition folder (test.csv, the test images, sample_submission.csv);",
        "`--set data.test_csv=... --set data.test_image_dir=...` name other files inside it.",
        "",
    ])


# --------------------------------------------------------------------------- wheels


@dataclass(frozen=True)
class WheelSpec:
    """``comp export --wheels``: the target Python and platform tags, and whether torch is left out."""

    python_version: str
    platforms: tuple[str, ...]
    no_torch: bool = False
    also: tuple[str, ...] = ()  # more distributions with their dependencies (--onnx: onnxruntime)


def default_python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def default_platforms() -> tuple[str, ...]:
    """This machine's platform tags (manylinux_2_35_x86_64 ... manylinux1_x86_64 on Linux)."""
    from packaging.tags import platform_tags

    return tuple(t for t in platform_tags() if t != "linux_x86_64" and not t.startswith("linux_"))


def expand_platforms(platforms: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Each tag and the older tags its machine also runs: pip expands ``manylinux2014`` but not
    ``manylinux_2_<N>``, so ``manylinux_2_28_x86_64`` adds 2_27 ... 2_17, manylinux2014/2010/1."""
    out: list[str] = []
    for tag in platforms:
        parts = tag.split("_", 3)
        if len(parts) == 4 and parts[0] == "manylinux" and parts[1] == "2" and parts[2].isdigit():
            arch = parts[3]
            out += [f"manylinux_2_{n}_{arch}" for n in range(int(parts[2]), 16, -1)]
            out += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]
        else:
            out.append(tag)
    return tuple(dict.fromkeys(out))


def pinned_requirements(python_version: str, *, no_torch: bool = False, also: tuple[str, ...] = ()) -> list[str]:
    """comp's dependencies and theirs, ``name==version`` as installed here (the constraints.txt
    versions after ``make install``), with markers evaluated for ``python_version`` on this
    platform. ``no_torch`` leaves out torch, torchvision and triton and what only they need;
    ``also``: more distributions to carry with theirs (``onnxruntime`` for a bundle with ONNX models)."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    env = {**default_environment(), "python_version": python_version,
           "python_full_version": f"{python_version}.0"}
    skip = {canonicalize_name(n) for n in TORCH_PACKAGES} if no_torch else set()
    pins: dict[str, str] = {}
    todo = [(canonicalize_name(n), frozenset()) for n in ("comp", *also)]
    seen: set[tuple[str, frozenset]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            pins.setdefault(name, name)  # needed on the target, not installed here: pip picks the version
            continue
        if name != "comp":
            pins[name] = f"{name}=={dist.version}"
        for text in dist.requires or []:
            req = Requirement(text)
            wanted = req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in extras or {""})
            dep = canonicalize_name(req.name)
            if wanted and dep not in skip:
                todo.append((dep, frozenset(req.extras)))
    return sorted(pins.values())


def download_command(pins: list[str], dest: Path, spec: WheelSpec) -> list[str]:
    """The pip command that downloads exactly ``pins`` as wheels for the target Python and
    platform (binary only: nothing is built; ``--no-deps``: the pins are the whole closure)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(dest),
           "--python-version", spec.python_version, "--implementation", "cp"]
    for tag in expand_platforms(spec.platforms):
        cmd += ["--platform", tag]
    return cmd + pins


def comp_source() -> Path:
    """The source folder comp is installed from (an editable install's checkout)."""
    src = Path(comp.__file__).resolve().parent.parent
    if not (src / "pyproject.toml").is_file():
        raise CompError(f"--wheels builds comp's own wheel from its source folder, and comp at {src} has none "
                        f"(install comp with `pip install -e` from its checkout)")
    return src


def build_comp_wheel(dest: Path, source: Path | None = None) -> Path:
    """Build comp's wheel into ``dest`` offline (pip wheel, no build isolation, no index), from a
    copy of its source so that the checkout gets no build folder."""
    source = source or comp_source()
    dest.mkdir(parents=True, exist_ok=True)
    work = atomic.temp_folder(dest.parent, ".comp-src.")
    try:
        for name in ("pyproject.toml", "README.md", "setup.py", "setup.cfg"):
            if (source / name).is_file():
                shutil.copyfile(source / name, work / name)
        shutil.copytree(source / "comp", work / "comp", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        _pip([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
              "--wheel-dir", str(dest), str(work)], "building comp's wheel")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    built = sorted(dest.glob(f"comp-{comp.__version__}-*.whl"))
    if not built:
        raise CompError(f"building comp's wheel left no comp-{comp.__version__}-*.whl in {dest}")
    return built[-1]


def fetch_wheels(spec: WheelSpec, dest: Path) -> list[str]:
    """comp's wheel (built here) and its pinned dependencies' wheels (downloaded by pip) in
    ``dest``; returns the file names."""
    dest.mkdir(parents=True, exist_ok=True)
    build_comp_wheel(dest)
    pins = pinned_requirements(spec.python_version, no_torch=spec.no_torch, also=spec.also)
    left = f", {'/'.join(TORCH_PACKAGES)} left out" if spec.no_torch else ""
    if pins:
        logger.info(f"downloading {len(pins)} wheels for Python {spec.python_version} on {spec.platforms[0]}{left} "
                    f"(pip)")
        _pip(download_command(pins, dest, spec), "pip download")
    return sorted(p.name for p in dest.iterdir() if p.is_file())


def _pip(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).strip().splitlines() if ln.strip()]
        raise CompError(f"{what} failed (exit {done.returncode}): {lines[-1] if lines else 'no output'}")
