"""pytest used to stay alive 50-110 s after its summary: full garbage collections of everything the tests built
(pytest's unraisable-exception check, then the interpreter's at exit). tests/conftest.py freezes the heap when
the session finishes; this runs a small session in a subprocess to check that the objects the tests left behind
are out of reach of those collections."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parent

SESSION = textwrap.dedent("""
    import atexit
    import gc

    KEPT = []


    def report():
        # atexit runs after pytest's cleanup collection and before the interpreter's final one.
        print(f"frozen={gc.get_freeze_count()} kept={len(KEPT)}", flush=True)


    atexit.register(report)


    def test_builds_a_cyclic_heap():
        for _ in range(50_000):
            node = {}
            node["self"] = node  # a cycle: only the cyclic collector could free it
            KEPT.append(node)
""")


def test_session_finish_freezes_what_the_tests_built(tmp_path):
    (tmp_path / "test_heap.py").write_text(SESSION)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
                             "--rootdir", str(tmp_path), str(tmp_path / "test_heap.py")],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    line = [text for text in result.stdout.splitlines() if text.startswith("frozen=")][-1]
    frozen, kept = (int(part.split("=")[1]) for part in line.split())
    assert kept == 50_000 and frozen > kept, line
