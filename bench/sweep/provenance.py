"""Where and with what a run was made: device, git commit, package versions, date."""

from __future__ import annotations

import datetime
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]  # bench/sweep/provenance.py -> the repository


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


def cpu_model() -> str:
    """The processor's name (Linux: /proc/cpuinfo's model name), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(line.split(":", 1)[1].split())
    except OSError:
        pass
    return []


def machine(device: str) -> dict:
    """Everything besides the code and the seed that decides a run's numbers bit for bit:
    the processor and its instruction set (which kernels torch, oneDNN, MKL and numba
    pick), the thread counts (how sums are split), and on a GPU the CUDA/cuDNN settings."""
    import hashlib

    flags = cpu_flags()
    config = torch.__config__.show()
    found = {
        "cpu_model": cpu_model(),
        "cpu_flags_sha256": hashlib.sha256(" ".join(flags).encode()).hexdigest()[:16] if flags else "unknown",
        "cpu_simd": sorted(f for f in flags if f.startswith(("avx", "fma", "sse4", "amx"))),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "blas": next((part.split("=", 1)[1] for part in config.replace(",", " ").split() if part.startswith(
            "BLAS_INFO=")), "unknown"),
        "onednn": next((line.split("v", 1)[1].split()[0] for line in config.splitlines() if "MKL-DNN v" in line),
                       "unknown"),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    try:
        import numba

        # the most threads the compiled CW-RNN may use (it uses torch's count, up to this);
        # not numba.get_num_threads(), which starts numba's thread pool, whose idle workers
        # then spin beside torch's for the rest of the process
        found["numba_max_threads"] = numba.config.NUMBA_NUM_THREADS
    except ImportError:
        pass
    if device == "cuda":
        found.update(gpu=torch.cuda.get_device_name(), cudnn_deterministic=torch.backends.cudnn.deterministic,
                     cudnn_benchmark=torch.backends.cudnn.benchmark,
                     tf32=torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32)
    return found


def versions() -> dict:
    found = {"python": platform.python_version(), "torch": torch.__version__}
    for package in ("pytorch-lightning", "numpy", "pandas", "scipy", "numba", "librosa", "soundfile", "datasets",
                    "optuna"):
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
