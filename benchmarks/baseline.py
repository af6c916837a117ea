"""The 'before' code of a benchmark: a module of the package as it was at a given commit, loaded from git."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_module_at(commit: str, relative_path: str, directory: Path, name: str):
    """Import `relative_path` (e.g. tfprune_mia/training.py) as of `commit` under the module name `name`;
    its own imports resolve to the current package."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:{relative_path}"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(directory) / f"{name}.py"  # a real file: autograph reads the source of what it converts
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
