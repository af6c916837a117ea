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

from tfprune_mia.defenses.advreg import AdvReg
from tfprune_mia.defenses.base import DEFENSES
from tfprune_mia.errors import ConfigError


@DEFENSES.register("mcmia")
class MCMIA(AdvReg):
    default_strength = 4.0  # the same theta as `adv`, so the two rows differ only by ADMM pruning
    fields = AdvReg.fields + ("mcmia_retrain_game",)
    required_pruner = "admm"

    @classmethod
    def key(cls, config):
        phases = "both" if config.mcmia_retrain_game else "admm"
        return f"mcmia-{config.adv_mode}-k{config.adv_steps}-{phases}-{config.strength:g}"

    @classmethod
    def check_config(cls, config):
        if config.adv_mode != "proper":
            raise ConfigError("mcmia runs the proper min-max game inside ADMM; --adv_mode=as_coded is the pruning "
                              "paper's adv baseline only (use --defense=adv for it)")

    def hooks(self, context):
        return [self.make_hook(context, active_with_masks=self.config.mcmia_retrain_game)]
