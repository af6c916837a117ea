import gc
import os

# Must precede the first TensorFlow import anywhere in the test process.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Progress lines would interleave with pytest's output; tests of the progress module pass quiet=False.
os.environ.setdefault("TFPRUNE_MIA_PROGRESS", "0")


def pytest_sessionfinish(session, exitstatus):
    """Skip the cyclic garbage collections of everything the tests built, which ran after the summary.

    After the summary pytest runs a full `gc.collect()` (to report unraisable exceptions) and the interpreter
    runs another at exit; with the many TensorFlow graphs, functions and Keras models a run builds, each took
    seconds to minutes (py-spy: the main thread in gc_collect_main, TensorFlow's threads idle in futex wait).
    Frozen objects are ignored by every later collection; the process exits right after, freeing all at once.
    """
    gc.freeze()
