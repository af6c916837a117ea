"""Membership inference attacks over signals, and the metrics every attack is scored with."""
from tfprune_mia.attacks.base import ATTACKS, Attack, AttackContext, ReferenceSignals  # noqa: F401
from tfprune_mia.attacks.signals import MembershipSet, SignalConfig, Signals, compute_signals  # noqa: F401
from tfprune_mia.attacks.samia import SAMIA  # noqa: F401
from tfprune_mia.attacks import neural, reference, samia, tfp_bridge, threshold  # noqa: E402,F401  (register)


def make_attack(name: str, context: AttackContext = AttackContext()) -> Attack:
    """A fresh attack by registry name, e.g. `make_attack("conf").run(shadow, target.signals)`."""
    attack = ATTACKS.get(name)(context)
    attack.registry_name = name
    return attack
