"""Membership inference attacks over signals, and the metrics every attack is scored with."""
from tfprune_mia.attacks.base import ATTACKS, Attack, AttackContext  # noqa: F401
from tfprune_mia.attacks.signals import MembershipSet, SignalConfig, Signals, compute_signals  # noqa: F401
from tfprune_mia.attacks import samia, threshold  # noqa: E402,F401  (register attacks)


def make_attack(name: str, context: AttackContext = AttackContext()) -> Attack:
    return ATTACKS.get(name)(context)
