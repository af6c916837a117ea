"""Pruner registry. A pruner turns a trained classifier into one ready for masked fine-tuning, and the
fine-tuned result into a plain exported model (`prune_and_finetune` runs the whole step)."""
from __future__ import annotations

from tfprune_mia.pruning.base import PruneConfig, Pruner, PRUNERS, make_pruner, prune_and_finetune  # noqa: F401
from tfprune_mia.pruning import magnitude  # noqa: E402,F401  (registers its pruners)
