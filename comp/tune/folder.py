"""A study's folder, ``runs/<study>/``: the one owner of its paths.

    study.json          what comp records about the study: its name, storage URL, when it began
    study.db            the default storage (SQLite), unless --storage names another
    trial_NNNN/         each trial: an ordinary run (run.json, recipe.toml, folds, oof.csv, report)
    trials.csv, report.md, history.png, importances.png, best.toml     ``comp tune --report``
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from comp import atomic
from comp.console import timestamp
from comp.errors import CompError
from comp.recipe.load import MAX_NAME, RUN_NAME
from comp.run.folder import check_runs_root

TRIAL_PREFIX = "trial_"


def trial_name(number: int) -> str:
    """The run name of trial ``number``: trial_0007."""
    return f"{TRIAL_PREFIX}{number:04d}"


@dataclass(frozen=True)
class StudyDir:
    """``runs_root/<name>/``: the study's trials (runs under it) and its files."""

    runs_root: Path
    name: str

    @property
    def path(self) -> Path:
        return Path(self.runs_root) / self.name

    @property
    def info_path(self) -> Path:
        return self.path / "study.json"

    @property
    def db(self) -> Path:
        return self.path / "study.db"

    @property
    def default_storage(self) -> str:
        return f"sqlite:///{self.db.resolve()}"

    @property
    def best_toml(self) -> Path:
        return self.path / "best.toml"

    @property
    def report_md(self) -> Path:
        return self.path / "report.md"

    @property
    def trials_csv(self) -> Path:
        return self.path / "trials.csv"

    @property
    def history_png(self) -> Path:
        return self.path / "history.png"

    @property
    def importances_png(self) -> Path:
        return self.path / "importances.png"

    def trial(self, number: int) -> Path:
        return self.path / trial_name(number)

    def check(self) -> None:
        """The name is one plain folder name of at most MAX_NAME characters; what lies at its place
        under --runs is a study comp made, an empty folder or nothing (never a link, a run, a file)."""
        if not RUN_NAME.fullmatch(self.name):
            raise CompError(f"study name {self.name[:40]!r} is not a plain folder name: the study lives in "
                            f"--runs/<study>, so use letters, digits, '-', '_' and '.', not starting with '.'")
        if len(self.name) > MAX_NAME:
            raise CompError(f"study name {self.name[:20]!r}... is {len(self.name)} characters long; a study "
                            f"name has at most {MAX_NAME}")
        check_runs_root(self.runs_root)
        path = self.path
        if path.is_symlink():
            raise CompError(f"{path} is a link: comp writes a study only into a folder of its own inside "
                            f"--runs {self.runs_root}/ (remove the link or choose another --study)")
        if not os.path.lexists(path):
            return
        if not path.is_dir():
            raise CompError(f"{path} exists and is not a study folder; choose another --study")
        if self.info_path.is_file() or not any(path.iterdir()):
            return
        what = "a run" if (path / "run.json").is_file() else "not a study (no study.json)"
        raise CompError(f"{path} exists and is {what}: comp keeps a study only in a folder it made; "
                        f"choose another --study")

    def exists(self) -> bool:
        return self.info_path.is_file()

    def read_info(self) -> dict:
        try:
            info = json.loads(self.info_path.read_text())
        except FileNotFoundError:
            raise CompError(f"no study {self.name!r} under {self.runs_root}/ (no {self.info_path})") from None
        except (OSError, json.JSONDecodeError) as err:
            raise CompError(f"cannot read {self.info_path}: {err}") from None
        if not isinstance(info, dict):
            raise CompError(f"cannot read {self.info_path}: not a JSON object")
        return info

    def create(self, storage: str | None) -> bool:
        """Make the folder and study.json (``storage``: the URL when it is not the default);
        whether this call made the folder."""
        made = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CompError(f"cannot make {self.path}: {err.strerror}") from None
        atomic.confine(self.path)  # writes in the study never follow a link out of it
        if not self.info_path.is_file():
            atomic.write_text(self.info_path, json.dumps({"name": self.name, "storage": storage,
                                                          "created": timestamp()}, indent=2) + "\n")
        return made
