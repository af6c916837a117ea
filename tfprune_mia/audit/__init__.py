"""Store-free, typed membership-inference auditing of any Keras model: signals -> attacks -> metrics -> results.

    from tfprune_mia.audit import audit
    result = audit(target, shadow, attacks=("samia", "rmia_offline", "conf"))
    print(result.table())
"""
import sys as _sys
import types as _types

from tfprune_mia.audit.core import DEFAULT_ATTACKS, audit, derived_seed, run_attack, unique_attacks  # noqa: F401
from tfprune_mia.audit.divergence import divergence_report  # noqa: F401
from tfprune_mia.audit.metrics import (METRIC_NAMES, attack_metrics, bootstrap_intervals,  # noqa: F401
                                       per_class_metrics)
from tfprune_mia.audit.results import AttackResult, AuditResult, ExperimentResult, ModelFacts  # noqa: F401
from tfprune_mia.audit.models import ModelData, audit_models  # noqa: F401


class _CallablePackage(_types.ModuleType):
    """`tfprune_mia.audit` is both this package and the `audit()` function: importing a submodule (say
    `tfprune_mia.audit.results`) makes Python bind the package to that attribute of `tfprune_mia`, so the package
    itself must also be callable as the function for `from tfprune_mia import audit` to mean one thing."""

    def __call__(self, *args, **kwargs):
        return audit(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallablePackage
