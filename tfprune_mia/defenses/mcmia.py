"""MCMIA-Pruning & Min-Max (MCMIA, Wang et al. 2020): ADMM pruning whose W-step is Nasr's min-max game, optionally
continued in masked retraining. MCMIA-Pruning alone is the `admm` pruner with `--defense=none`.

Reconstruction choices (A-D, as in docs/deviations.md):
- A: starts from the normally trained original (the shared cached originals), as ADMM code always does.
- B: privacy term theta * mean log h(f(x), y) (= -theta * BCE(h, member)), the paper-level form.
- C: the game runs in both phases by default (`mcmia_retrain_game`); False pauses it in masked retraining,
  detected as the trainings that hold masks (ADMM's W-steps hold none), for the ablation.
- D: the evaluation attacker is the experiment's own (SAMIA, thresholds) trained on shadows, never the
  training-time h, and its non-members (test) are disjoint from the reference set (dev).
The ADMM mechanics (Z projection, duals, rho schedule) live in the pruner; the game reaches its W-step through
the loss_terms it forwards to training, as every hook does.
"""
from __future__ import annotations

import dataclasses

from tfprune_mia.defenses.advreg import AdvOptions, AdvReg
from tfprune_mia.defenses.base import DEFENSES
from tfprune_mia.errors import ConfigError
from tfprune_mia.options import option


@dataclasses.dataclass(frozen=True)
class MCMIAOptions(AdvOptions):
    """The game of `adv` (same flags), and whether it keeps running in masked retraining (note C)."""

    retrain_game: bool = option(True, flag="mcmia_retrain_game")

    def validate(self):
        super().validate()
        if self.mode != "proper":
            raise ConfigError("mcmia runs the proper min-max game inside ADMM; --adv_mode=as_coded is the pruning "
                              "paper's adv baseline only (use --defense=adv for it)")

    def key_parts(self):
        return [*super().key_parts(), "both" if self.retrain_game else "admm"]


@DEFENSES.register("mcmia")
class MCMIA(AdvReg):
    default_strength = 4.0  # the same theta as `adv`, so the two rows differ only by ADMM pruning
    options_class = MCMIAOptions
    required_pruner = "admm"

    def hooks(self, context):
        return [self.make_hook(context, active_with_masks=self.options.retrain_game)]
