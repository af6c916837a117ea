"""Defense registry: PPB, adversarial regularisation, DP-SGD and MCMIA, each applied while fine-tuning the
pruned model (`make_defense(config).hooks(context)` go into the fine-tuning's loss_terms)."""
from __future__ import annotations

from tfprune_mia.defenses.base import (DEFENSES, Defense, DefenseConfig, DefenseContext,  # noqa: F401
                                       make_defense)
from tfprune_mia.defenses import advreg, dp, mcmia, ppb  # noqa: E402,F401  (register defenses)
