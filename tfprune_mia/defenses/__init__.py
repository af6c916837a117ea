"""Defense registry: PPB, adversarial regularisation, DP-SGD and MCMIA, each applied while fine-tuning the
pruned model (`make_defense(config).hooks(context)` go into the fine-tuning's loss_terms). Each defense's own
settings are its `options_class` (a frozen dataclass), passed as `DefenseConfig(name, strength, options)`."""
from __future__ import annotations

from tfprune_mia.defenses.base import (DEFENSES, Defense, DefenseConfig, DefenseContext,  # noqa: F401
                                       make_defense)
from tfprune_mia.defenses import advreg, dp, mcmia, ppb  # noqa: E402,F401  (register defenses)
from tfprune_mia.defenses.advreg import AdvOptions  # noqa: E402,F401
from tfprune_mia.defenses.dp import DPOptions  # noqa: E402,F401
from tfprune_mia.defenses.mcmia import MCMIAOptions  # noqa: E402,F401
