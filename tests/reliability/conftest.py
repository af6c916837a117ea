import pytest

from reliability_helpers import TINY_FLAGS, comparable, read_result, run_binary


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """One uninterrupted tiny train_prune run: the numbers every resumed run must reproduce exactly.

    Treat as read-only; tests that damage a run directory work on a copy (reliability_helpers.copy_run).
    """
    root = tmp_path_factory.mktemp("reference") / "runs"
    result = run_binary("train_prune", f"--run_root={root}", *TINY_FLAGS)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, comparable(read_result(root))
