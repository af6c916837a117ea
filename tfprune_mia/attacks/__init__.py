"""Membership inference attacks over signals, and the metrics every attack is scored with."""
from tfprune_mia.attacks.base import ATTACKS, Attack, AttackContext, ReferenceSignals  # noqa: F401
from tfprune_mia.attacks.signals import MembershipSet, SignalConfig, Signals, compute_signals  # noqa: F401
from tfprune_mia.attacks.samia import SAMIA  # noqa: F401
from tfprune_mia.attacks import neural, pair, reference, samia, tfp_bridge, threshold  # noqa: E402,F401  (register)


def make_attack(name: str, context: AttackContext = AttackContext()) -> Attack:
    """A fresh attack by registry name; every attack is `fit(shadow, reference=None)` then `score(signals)`.

    >>> shadow = MembershipSet.from_parts(compute_signals(shadow_net, x[400:600], y[400:600]),
    ...                                   compute_signals(shadow_net, x[600:800], y[600:800]))
    >>> scores = make_attack("conf").run(shadow, compute_signals(net, x[:10], y[:10]))
    >>> scores.shape
    (10,)
    """
    attack = ATTACKS.get(name)(context)
    attack.registry_name = name
    return attack
