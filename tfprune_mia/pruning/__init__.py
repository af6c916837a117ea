"""Pruner registry. A pruner turns a trained classifier into one ready for masked fine-tuning, and the
fine-tuned result into a plain exported model (`prune_and_finetune` runs the whole step). Each pruner's own
settings are its `options_class` (a frozen dataclass), passed as `PruneConfig(pruner, sparsity, options)`."""
from __future__ import annotations

from tfprune_mia.options import NoOptions  # noqa: F401
from tfprune_mia.pruning.base import (PRUNERS, PruneConfig, Pruner, PruneResult, make_pruner,  # noqa: F401
                                      prune_and_finetune, prune_and_finetune_detailed)
from tfprune_mia.pruning import admm, magnitude, structured  # noqa: E402,F401  (register their pruners)
from tfprune_mia.pruning.admm import ADMMOptions  # noqa: E402,F401
from tfprune_mia.pruning.magnitude import L1UnstructuredOptions  # noqa: E402,F401
from tfprune_mia.pruning.sparsity import sparsity_report  # noqa: E402,F401
from tfprune_mia.pruning.structured import SlimmingOptions  # noqa: E402,F401
