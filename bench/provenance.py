"""Where and with what a run was made: device, git commit, package versions, date."""

from __future__ import annotations

import datetime
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def _git(*args) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout


def uncommitted_code() -> list[str]:
    """Paths with uncommitted changes (untracked ones included) outside results/: what
    would make a run's commit name code other than the code that ran. Changes inside
    results/ are the runs themselves."""
    try:
        lines = _git("status", "--porcelain", "--untracked-files=all").splitlines()
    except (OSError, subprocess.CalledProcessError):
        return []
    paths = [line[3:].split(" -> ")[-1].strip('"') for line in lines]
    return [p for p in paths if not p.startswith("results/")]


def git_commit() -> str:
    """HEAD, with "-dirty" when code outside results/ has uncommitted changes."""
    try:
        commit = _git("rev-parse", "HEAD").strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if uncommitted_code() else "")


def publishes(results_dir: Path) -> bool:
    """Is this results folder the repository's own results/ (what gets committed and cited)?"""
    return Path(results_dir).resolve().is_relative_to((REPO / "results").resolve())


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def versions() -> dict:
    found = {"python": platform.python_version(), "torch": torch.__version__}
    for package in ("pytorch-lightning", "numpy", "pandas"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    if torch.cuda.is_available():
        found["cuda"] = torch.version.cuda
        found["cudnn"] = str(torch.backends.cudnn.version())
    return found


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
