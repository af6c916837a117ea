"""What a user sees in the terminal: the binaries' own help, a clean stderr, and Ctrl-C as one line.

Every test runs a real `python -m tfprune_mia.bin.<binary>` process, with the environment a fresh shell has
(no TF_CPP_MIN_LOG_LEVEL, no TFPRUNE_MIA_VERBOSE), because the noise and the signal handling are process-wide.
"""
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from tfprune_mia.bin.runner import EXIT_INTERRUPTED, INTERRUPTED

TINY_FLAGS = ["--epochs=2", "--finetune_epochs=1", "--num_shadows=1", "--attack_epochs=1", "--attacks=conf",
              "--num_perturbations=1", "--batch_size=64", "--bootstrap_resamples=0"]
# What TensorFlow 2.15 and tf_keras printed on every run before (issue: "a clean run prints the table").
NOISE = ["Unable to register cuDNN factory", "Unable to register cuFFT factory", "Unable to register cuBLAS factory",
         "You are saving your model as an HDF5 file", "compiled metrics have yet to be built",
         "triggered tf.function retracing", "keras.initializers.serialize()"]
NATIVE_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] ", re.M)


def user_env(**extra):
    env = {key: value for key, value in os.environ.items()
           if key not in ("TF_CPP_MIN_LOG_LEVEL", "TFPRUNE_MIA_VERBOSE", "TFPRUNE_MIA_FAULT")}
    return {**env, "CUDA_VISIBLE_DEVICES": "", **extra}


def flag_entry(help_text, flag):
    """The help of one flag out of absl's help output (whitespace collapsed)."""
    entries = [text for text in re.split(r" (?=--(?:\[no\])?[a-z0-9_]+: )", re.sub(r"\s+", " ", help_text))
               if text.startswith(f"--{flag}: ")]
    assert entries, f"--{flag} is not in the help"
    return entries[0]


def ctrl_c_enabled():
    """Popen's preexec_fn: a child of a background job inherits SIGINT ignored (and Python then keeps it
    ignored), which a user's foreground terminal never does."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def binary(name, *flags):
    return [sys.executable, "-m", f"tfprune_mia.bin.{name}", *flags]


def test_help_lists_our_flags_with_the_registered_choices():
    from tfprune_mia.attacks import ATTACKS
    from tfprune_mia.data import DATASETS
    from tfprune_mia.defenses import DEFENSES
    from tfprune_mia.models import MODELS
    from tfprune_mia.pruning import PRUNERS

    result = subprocess.run(binary("train_prune", "--help"), capture_output=True, text=True, env=user_env(),
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for flag, registry in (("pruner", PRUNERS), ("shadow_pruner", PRUNERS), ("attacks", ATTACKS),
                           ("dataset", DATASETS), ("model", MODELS), ("defense", DEFENSES)):
        match = re.search(r" Choices: ([a-z0-9_, ]+?)( or all)?\.", flag_entry(result.stdout, flag))
        assert match, f"--{flag} has no choices in --help"
        assert match.group(1).split(", ") == registry.names(), flag
        assert bool(match.group(2)) == (flag == "attacks")
    for flag in ("sparsity", "run_root", "seed", "epochs"):
        flag_entry(result.stdout, flag)
    assert "-v,--verbosity: -1: warnings and errors only" in result.stdout
    assert not NATIVE_LOG_LINE.search(result.stderr), result.stderr[-2000:]


@pytest.fixture(scope="module")
def filter_pruning_run(tmp_path_factory):
    """A tiny run through filter pruning, which used to add initializer-serialisation warnings to the rest."""
    root = tmp_path_factory.mktemp("console") / "runs"
    result = subprocess.run(binary("train_prune", f"--run_root={root}", "--pruner=l1_filter", *TINY_FLAGS),
                            capture_output=True, text=True, env=user_env(), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, result


def test_a_clean_run_prints_no_third_party_noise(filter_pruning_run):
    _, result = filter_pruning_run
    assert "test accuracy" in result.stdout
    for noise in NOISE:
        assert noise not in result.stderr, noise
    assert not NATIVE_LOG_LINE.search(result.stderr), result.stderr[-3000:]
    assert "Warning" not in result.stderr, result.stderr[-3000:]


def test_verbosity_brings_the_hidden_messages_back(filter_pruning_run):
    root, _ = filter_pruning_run
    # Everything is cached: this run only imports TensorFlow and reprints the table.
    result = subprocess.run(binary("train_prune", f"--run_root={root}", "--pruner=l1_filter", *TINY_FLAGS,
                                   "--verbosity=1"), capture_output=True, text=True, env=user_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert NATIVE_LOG_LINE.search(result.stderr), result.stderr[-3000:]


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path):
    process = subprocess.Popen(binary("train_prune", f"--run_root={tmp_path}", *TINY_FLAGS, "--epochs=200",
                                      "--patience=200"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=user_env(),
                               preexec_fn=ctrl_c_enabled)
    lines, training = [], threading.Event()

    def read_stderr():
        for line in process.stderr:
            lines.append(line)
            if "training original victim" in line:
                training.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 300
        # Keras' TensorBoard callback writes its event file when fit starts.
        while not (training.is_set() or any(tmp_path.rglob("events.out.tfevents.*"))):
            assert time.monotonic() < deadline and process.poll() is None, "".join(lines)[-3000:]
            time.sleep(0.5)
        time.sleep(3)  # inside Keras fit by now
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("still running 120 s after Ctrl-C:\n" + "".join(lines)[-3000:])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=10)
    stderr = "".join(lines)
    assert process.returncode == EXIT_INTERRUPTED, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == INTERRUPTED
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]


@pytest.mark.parametrize("help_flag", ["-h", "--helpshort"])
def test_short_help_spellings_exit_zero_with_our_flags(monkeypatch, capsys, help_flag):
    from absl import flags

    from tfprune_mia.bin import sweep

    flags.FLAGS.unparse_flags()
    monkeypatch.setattr(sys, "argv", ["sweep", help_flag])
    with pytest.raises(SystemExit) as done:
        sweep.run()
    flags.FLAGS.unparse_flags()
    out = capsys.readouterr().out
    assert done.value.code == 0
    flag_entry(out, "sparsities")
    flag_entry(out, "sparsity")
    assert "Choices: admm, l1_filter" in flag_entry(out, "pruners")


def test_binaries_skip_the_final_garbage_collection(tmp_path):
    """After the table, the interpreter's last full collection of every graph and model a run built took
    seconds; run_main freezes the heap at exit instead (checked after it from a handler registered earlier)."""
    script = ("import atexit, gc, sys\n"
              "atexit.register(lambda: print('frozen', gc.get_freeze_count(), flush=True))\n"
              "from tfprune_mia.bin import compare_defenses\n"
              f"sys.argv = ['compare_defenses', '--results={tmp_path}/*.json']\n"
              "compare_defenses.run()\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=user_env(),
                            timeout=300)
    assert result.returncode == 2 and "error: no train_prune result matches" in result.stderr, result.stderr
    frozen = int(result.stdout.split()[-1])
    assert frozen > 1000, result.stdout


SWALLOWING_MAIN = """
import sys, time
from tfprune_mia.bin import runner

runner.INTERRUPT_GRACE_SECONDS = float(sys.argv[1])


def main():
    print("running", flush=True)
    while True:  # a library that catches KeyboardInterrupt and carries on
        try:
            time.sleep(0.05)
        except KeyboardInterrupt:
            pass


sys.argv = ["swallow"]
runner.run_main(main)
"""


@pytest.mark.parametrize("grace,signals,within", [(1.0, 1, 8.0), (60.0, 2, 8.0)])
def test_ctrl_c_ends_the_run_even_when_a_library_swallows_it(grace, signals, within):
    """Ctrl-C ends the process after the grace period, or at once on a second Ctrl-C, with the same one line."""
    process = subprocess.Popen([sys.executable, "-c", SWALLOWING_MAIN, str(grace)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=user_env(), preexec_fn=ctrl_c_enabled)
    try:
        assert process.stdout.readline().strip() == "running"
        start = time.monotonic()
        for _ in range(signals):
            process.send_signal(signal.SIGINT)
            time.sleep(0.3)
        _, stderr = process.communicate(timeout=within + 30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert time.monotonic() - start < within
    assert process.returncode == EXIT_INTERRUPTED
    assert stderr.strip().splitlines() == [INTERRUPTED], stderr


def test_in_process_runs_give_the_ctrl_c_handler_back(monkeypatch, capsys, tmp_path):
    from absl import flags

    from tfprune_mia.bin import train_prune

    flags.FLAGS.unparse_flags()
    monkeypatch.setattr(sys, "argv", ["train_prune", f"--run_root={tmp_path}", "--sparsity=1.5"])
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)  # pytest may run with it ignored
    try:
        with pytest.raises(SystemExit) as done:
            train_prune.run()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)
        flags.FLAGS.unparse_flags()
    assert done.value.code == 2 and "sparsity=1.5" in capsys.readouterr().err
