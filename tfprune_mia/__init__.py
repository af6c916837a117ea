"""tfprune-mia: membership-inference risk of pruned neural networks, measured and defended.

Audit any Keras model in a few lines:

    from tfprune_mia import MembershipSet, audit, compute_signals
    target = MembershipSet.from_parts(compute_signals(net, x_in, y_in), compute_signals(net, x_out, y_out))
    print(audit(target, shadow, attacks=("samia", "rmia_offline", "conf")).table())

or run the paper's cached flow with `run_experiment(ExperimentConfig(...))`.

Importing the package pins the process to one Keras (tf_keras, i.e. Keras 2): tfmot 0.8 flips
TF_USE_LEGACY_KERAS on import and keras-tuner flips `tf.keras` back, so the variable must be set before
TensorFlow is first imported, and every module imports `tf_keras` explicitly (see tfprune_mia.backend). The public
names below are imported lazily, so `import tfprune_mia` stays cheap and sets the variable first.
"""
import importlib
import os

from tfprune_mia import noise

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# Before any TensorFlow import (TF reads its native log level once): known third-party noise stays quiet unless
# TFPRUNE_MIA_VERBOSE=1 or a binary's --verbosity=1.
noise.configure()

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "audit": "tfprune_mia.audit.core",
    "audit_models": "tfprune_mia.audit.models",
    "ModelData": "tfprune_mia.audit.models",
    "AttackResult": "tfprune_mia.audit.results",
    "AuditResult": "tfprune_mia.audit.results",
    "ExperimentResult": "tfprune_mia.audit.results",
    "ModelFacts": "tfprune_mia.audit.results",
    "compute_signals": "tfprune_mia.attacks.signals",
    "MembershipSet": "tfprune_mia.attacks.signals",
    "Signals": "tfprune_mia.attacks.signals",
    "SignalConfig": "tfprune_mia.attacks.signals",
    "ReferenceSignals": "tfprune_mia.attacks.base",
    "make_attack": "tfprune_mia.attacks",
    "ExperimentConfig": "tfprune_mia.pipeline.config",
    "run_experiment": "tfprune_mia.pipeline.experiment",
    "rerun_attacks": "tfprune_mia.pipeline.experiment",
    "PruneConfig": "tfprune_mia.pruning.base",
    "DefenseConfig": "tfprune_mia.defenses.base",
    "TrainConfig": "tfprune_mia.training",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tfprune_mia' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__():
    return __all__
