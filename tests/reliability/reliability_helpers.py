"""Shared by the reliability tests: run the real binaries, snapshot run directories, compare reports."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

# The smallest configuration that still exercises every stage (original, pruned, signals, attack, report).
TINY_FLAGS = ["--epochs=2", "--finetune_epochs=1", "--num_shadows=1", "--attack_epochs=1", "--attacks=conf",
              "--num_perturbations=1", "--batch_size=64"]
RUN_DIR = "digits-small_cnn-seed7"
SIGKILL_RETURNCODE = -9


def run_binary(module: str, *flags: str, fault: Optional[str] = None, timeout: int = 600
               ) -> subprocess.CompletedProcess:
    """`python -m tfprune_mia.bin.<module> flags...` as a user runs it, optionally with a fault injected."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TFPRUNE_MIA_FAULT", None)
    if fault:
        env["TFPRUNE_MIA_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", f"tfprune_mia.bin.{module}", *flags], capture_output=True,
                          text=True, env=env, timeout=timeout)


def last_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    return lines[-1] if lines else ""


def snapshot(root: Path) -> Dict[str, Tuple[int, int, str]]:
    """relative path -> (size, mtime_ns, sha256) of every file under root, bar the advisory lock files (which
    record the last process that held them; they hold no data)."""
    root = Path(root)
    if not root.exists():
        return {}
    return {str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns,
                                          hashlib.sha256(path.read_bytes()).hexdigest())
            for path in sorted(root.rglob("*")) if path.is_file() and not is_lock_file(path)}


def is_lock_file(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".lock")


def completed_artefacts(root: Path) -> Dict[str, Tuple[int, int, str]]:
    """The files a later run must reuse untouched: the split, finished models (model.h5 + meta.json marker),
    cached signals and finished results."""
    snap = snapshot(root)
    # A configuration's scores and figures are finished only once its results JSON (written last) exists.
    finished_results = [Path(rel).stem for rel in snap
                        if Path(rel).parent.name == "results" and rel.endswith(".json")]
    keep = {}
    for rel, info in snap.items():
        name = Path(rel).name
        if name.startswith("."):
            continue
        parent = str(Path(rel).parent)
        finished_model = name in ("model.h5", "meta.json") and f"{parent}/meta.json" in snap
        in_results = "/results/" in f"/{rel}"
        finished_result = in_results and any(rel.split("/results/", 1)[-1].startswith(key + c)
                                             for key in finished_results for c in ".-")
        if name == "split.npz" or finished_model or name.startswith("signals-") or finished_result:
            keep[rel] = info
    return keep


def assert_nothing_half_written(root: Path) -> None:
    """After a crash: every visible file is complete, temp files are hidden, every marker has its model."""
    for path in Path(root).rglob("*"):
        if not path.is_file():
            continue
        if path.name.startswith("."):
            continue  # an atomic write's temp file: hidden, never read by any stage
        if path.suffix == ".json":
            json.loads(path.read_text())  # raises on a truncated file
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                for key in data.files:
                    data[key]
        elif path.name == "model.h5" or path.name == "best_weights.h5":
            assert path.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n", f"{path} is not a complete HDF5 file"
        if path.name == "meta.json":
            assert (path.parent / "model.h5").is_file(), f"{path} marks a stage whose model.h5 is missing"


def result_files(root: Path):
    return sorted(p for p in (Path(root) / RUN_DIR / "results").glob("*.json") if not p.name.startswith("."))


def comparable(report: Dict) -> Dict:
    """A report without wall-clock times and paths, which legitimately differ between runs."""
    report = json.loads(json.dumps(report))
    report.pop("seconds", None)
    report.pop("result_path", None)
    # Figures are referenced by absolute path; their names must match, their directory may not.
    report["figures"] = {key: Path(value).name for key, value in report.get("figures", {}).items()}
    for setting in report.get("attacks", {}).values():
        for metrics in setting.values():
            metrics.pop("seconds", None)
    return report


def read_result(root: Path) -> Dict:
    (path,) = result_files(root)
    return json.loads(path.read_text())


def copy_run(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest)
    return dest
