"""How every absl binary runs: our flag parser and `--help` (with the registries' names), one `error:` line and
exit code 2 for bad input, Ctrl-C ending in one line and exit code 130 even when a library swallows it."""
from __future__ import annotations

import atexit
import gc
import importlib
import os
import signal
import sys
import threading
from typing import Callable

from absl import app, flags, logging

from tfprune_mia import noise
from tfprune_mia.errors import TfpruneError

FLAGS = flags.FLAGS
INTERRUPTED = "interrupted; re-run the same command to resume"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a process ended by Ctrl-C
# After Ctrl-C the run unwinds through KeyboardInterrupt; if that lands where a library swallows it (a finalizer,
# a callback), the process still ends this long after the signal. Artefacts are written atomically and every
# stage resumes, so ending hard loses only the unfinished epoch.
INTERRUPT_GRACE_SECONDS = 15.0
_interrupt = {"announced": False}
HELP_FLAGS = frozenset({"help", "helpshort", "helpfull", "helpxml", "?"})
# Flags whose value is a registry name: `--help` lists the registered names (the registries are filled by
# importing these packages, which imports TensorFlow, so it is done only when help is asked for).
REGISTRY_FLAGS = {
    "dataset": ("tfprune_mia.data", "DATASETS"),
    "model": ("tfprune_mia.models", "MODELS"),
    "pruner": ("tfprune_mia.pruning", "PRUNERS"),
    "shadow_pruner": ("tfprune_mia.pruning", "PRUNERS"),
    "pruners": ("tfprune_mia.pruning", "PRUNERS"),
    "attacks": ("tfprune_mia.attacks", "ATTACKS"),
    "tune_attack": ("tfprune_mia.attacks", "ATTACKS"),
    "defense": ("tfprune_mia.defenses", "DEFENSES"),
    "distribution": ("tfprune_mia.distribute", "STRATEGIES"),
}


def run_main(main: Callable[[], int]) -> None:
    """Run `main` under absl; a TfpruneError becomes one line on stderr and exit code 2, Ctrl-C one line and
    exit code 130 (every stage resumes, so the line says how to continue)."""

    # The interpreter's last full garbage collection of every TF graph and Keras model the run built took
    # seconds after the table was printed; at exit nothing needs it (atexit: only when the process really ends,
    # not after each in-process run of a test).
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)

    def wrapped(argv):
        # Before main imports TensorFlow: --verbosity=1 (debug) brings back the third-party noise.
        noise.configure(verbose=FLAGS.verbosity >= 1)
        if len(argv) > 1:
            print(f"error: unexpected arguments {argv[1:]}; flags look like --sparsity=0.7", file=sys.stderr)
            return 2
        previous_handler = _install_interrupt_handler()
        try:
            return main()
        except TfpruneError as err:
            logging.flush()
            print(f"error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            logging.flush()
            _announce_interrupt()
            return EXIT_INTERRUPTED
        finally:
            if previous_handler is not None:  # in-process callers (tests) get their handler back
                signal.signal(signal.SIGINT, previous_handler)

    app.run(wrapped, flags_parser=_parse_flags_or_exit)


def _install_interrupt_handler():
    """Replace Python's default Ctrl-C handler by one that also arms the grace-period exit; returns the
    previous handler (None when not installed: not the main thread, or the caller has its own handler)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        return None
    _interrupt["announced"] = False
    signal.signal(signal.SIGINT, _on_first_interrupt)
    return previous


def _on_first_interrupt(signum, frame):
    signal.signal(signal.SIGINT, _exit_interrupted)  # a second Ctrl-C ends the process at once
    timer = threading.Timer(INTERRUPT_GRACE_SECONDS, _exit_interrupted)
    timer.daemon = True
    timer.start()
    raise KeyboardInterrupt


def _announce_interrupt() -> None:
    if not _interrupt["announced"]:
        _interrupt["announced"] = True
        print(f"\n{INTERRUPTED}", file=sys.stderr, flush=True)


def _exit_interrupted(*_) -> None:
    try:
        _announce_interrupt()
    finally:
        os._exit(EXIT_INTERRUPTED)


def _parse_flags_or_exit(argv):
    """absl's own parser, but a malformed value (e.g. --sparsity=abc) ends like every other bad input: one
    `error:` line and exit code 2, instead of absl's two-line FATAL message and exit code 1. `--help` (and
    `-h`) shows this binary's flags with the registered names a flag accepts."""
    argv = ["--help" if arg == "-h" else arg for arg in argv]
    _make_our_flags_key_flags(argv[0])
    wants_help = any(_flag_name(arg) in HELP_FLAGS for arg in argv[1:])
    if wants_help:
        _describe_registry_choices()
    try:
        return FLAGS(argv)
    except SystemExit as done:
        # absl exits 1 after printing the help it was asked for; asking for help is not a failure.
        sys.exit(0 if wants_help and done.code == 1 else done.code)
    except flags.CantOpenFlagFileError as err:
        message = str(err).replace("ERROR:: ", "").replace("Unable", "unable", 1)
        print(f"error: {message}; check the path given to --flagfile", file=sys.stderr)
        sys.exit(2)
    except flags.Error as err:
        message = str(err)
        # A message from our checks already names the fix; absl's own (type errors, unknown flags) do not.
        hint = "" if ";" in message else "; see --help for every flag, its type and its choices"
        print(f"error: {message}{hint}", file=sys.stderr)
        sys.exit(2)


def _flag_name(arg: str) -> str:
    if not arg.startswith("-"):
        return ""
    return arg.lstrip("-").split("=", 1)[0]


def _make_our_flags_key_flags(main_module: str) -> None:
    """absl's --help shows only the key flags of the main module; ours are defined in this module (shared by
    every binary), so they are declared key flags of whichever module runs as main."""
    for module, module_flags in FLAGS.flags_by_module_dict().items():
        if module.startswith("tfprune_mia.") or module == main_module:
            for flag in module_flags:
                FLAGS.register_key_flag_for_module(main_module, flag)
    FLAGS.register_key_flag_for_module(main_module, FLAGS["verbosity"])
    FLAGS["verbosity"].help = ("-1: warnings and errors only; 0 (used when the flag is not given): also progress "
                               "and info; 1: also "
                               "debug and the TensorFlow/Keras messages hidden by default.")


def _describe_registry_choices() -> None:
    for name, (module, attribute) in REGISTRY_FLAGS.items():
        if name not in FLAGS or "Choices:" in FLAGS[name].help:
            continue
        names = getattr(importlib.import_module(module), attribute).names()
        extra = " or all" if name == "attacks" else ""
        FLAGS[name].help = f"{FLAGS[name].help} Choices: {', '.join(names)}{extra}."
