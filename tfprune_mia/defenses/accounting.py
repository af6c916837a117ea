"""Privacy accounting for DP-SGD: the epsilon that Poisson-subsampled Gaussian steps promise, by two accountants.

Each DP-SGD step with sampling rate q and noise multiplier sigma is a Poisson-subsampled Gaussian mechanism (Abadi
et al., CCS 2016); a training run is `steps` of them, and several runs on the same records (training the original
with DP, then fine-tuning the pruned model) compose into one event. `dp_accounting` (Google's, shipped with TF
Privacy) bounds epsilon two ways, both upper bounds on the true epsilon:

- `rdp`: Renyi-DP moments (Mironov, CSF 2017; Mironov, Talwar & Zhang 2019), converted to (eps, delta); loose by
  roughly 10-20% at the usual settings.
- `pld`: the privacy loss distribution, composed numerically (Koskela et al. 2020; Doroshenko et al., PETS 2022),
  with pessimistic discretisation; close to the true epsilon of the mechanism.

The PLD figure is the one to compare with an empirical lower bound; RDP is kept because TF Privacy reports it.
"""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Callable, Dict, Sequence

from tfprune_mia.errors import ConfigError
from tfprune_mia.registry import Registry

if TYPE_CHECKING:
    import dp_accounting

NOISE_FLOOR = 0.3
ACCOUNTANTS: Registry[Callable[[], "dp_accounting.PrivacyAccountant"]] = Registry("privacy accountant")


# dp_accounting is imported when an accountant is first made, not with the package: every process imports the
# defenses registry, and only DP runs account (its import pulls its PLD machinery: ~0.1 CPU-s, 6 MB).
@ACCOUNTANTS.register("rdp")
def _rdp_accountant() -> "dp_accounting.PrivacyAccountant":
    import dp_accounting

    return dp_accounting.rdp.RdpAccountant()


@ACCOUNTANTS.register("pld")
def _pld_accountant() -> "dp_accounting.PrivacyAccountant":
    import dp_accounting

    return dp_accounting.pld.PLDAccountant()


@dataclasses.dataclass(frozen=True)
class DpSgdStage:
    """One DP-SGD run: `steps` Poisson-subsampled Gaussian steps with rate `sample_rate` (batch size / records)."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self):
        if not self.noise_multiplier >= 0:
            raise ConfigError(f"noise_multiplier={self.noise_multiplier} must be >= 0")
        if not 0 < self.sample_rate <= 1:
            raise ConfigError(f"sample_rate={self.sample_rate} must be in (0, 1]: batch size / training records")
        if self.steps < 0 or int(self.steps) != self.steps:
            raise ConfigError(f"steps={self.steps} must be a whole number >= 0")

    def event(self) -> "dp_accounting.DpEvent":
        import dp_accounting

        step = dp_accounting.PoissonSampledDpEvent(self.sample_rate,
                                                   dp_accounting.GaussianDpEvent(self.noise_multiplier))
        return dp_accounting.SelfComposedDpEvent(step, int(self.steps))


def composed_epsilon(stages: Sequence[DpSgdStage], delta: float, accountant: str = "rdp") -> float:
    """epsilon at `delta` of all `stages` run on the same records; inf when any stage adds no noise."""
    _check_delta(delta)
    stages = [stage for stage in stages if stage.steps > 0]
    if any(stage.noise_multiplier == 0 for stage in stages):
        return math.inf
    if not stages:
        return 0.0
    import dp_accounting

    ledger = ACCOUNTANTS.get(accountant)()
    ledger.compose(dp_accounting.ComposedDpEvent([stage.event() for stage in stages]))
    return float(ledger.get_epsilon(delta))


def dp_sgd_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                   accountant: str = "rdp") -> float:
    """epsilon of one DP-SGD run; inf without noise, 0 without steps."""
    return composed_epsilon([DpSgdStage(noise_multiplier, sample_rate, steps)], delta, accountant)


def dp_sgd_epsilons(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                    accountants: Sequence[str] = ("rdp", "pld")) -> Dict[str, float]:
    """The same run's epsilon by each accountant, for reporting them side by side."""
    return {name: dp_sgd_epsilon(noise_multiplier, sample_rate, steps, delta, name) for name in accountants}


def calibrate_noise(target_epsilon: float, sample_rate: float, steps: int, delta: float,
                    accountant: str = "rdp") -> float:
    """The smallest noise multiplier (to 1e-4) whose epsilon after `steps` steps is at most target_epsilon.

    Noise below NOISE_FLOOR is not searched: such runs promise epsilon in the hundreds at usual rates, and the
    PLD accountant's cost explodes there (38 GiB at sigma 1e-3). A target met already at the floor gets the floor,
    which keeps the promise with more noise than needed."""
    _check_delta(delta)
    if not target_epsilon > 0:
        raise ConfigError(f"target epsilon {target_epsilon} must be > 0")
    epsilon_at = lambda sigma: dp_sgd_epsilon(sigma, sample_rate, steps, delta, accountant)  # noqa: E731
    if epsilon_at(NOISE_FLOOR) <= target_epsilon:
        return NOISE_FLOOR
    low, high = NOISE_FLOOR, 1.0
    while epsilon_at(high) > target_epsilon:
        low, high = high, 2.0 * high
        if high > 1e4:
            raise ConfigError(f"target epsilon {target_epsilon} is unreachable in {steps} steps at sampling rate "
                              f"{sample_rate:g}; raise the target or train fewer steps")
    from dp_accounting import mechanism_calibration

    # dp_accounting's own search (Brent's method) guarantees epsilon(result) <= target.
    return float(mechanism_calibration.calibrate_dp_mechanism(
        ACCOUNTANTS.get(accountant), lambda sigma: DpSgdStage(sigma, sample_rate, steps).event(), target_epsilon,
        delta, bracket_interval=mechanism_calibration.ExplicitBracketInterval(low, high), tol=1e-4))


def default_delta(num_records: int) -> float:
    """min(1e-5, N^-1.1): well below 1/N, since delta = 1/N allows the mechanism to expose one record in N
    outright (Dwork & Roth, The Algorithmic Foundations of Differential Privacy, Sec. 2.3: delta should be below the
    inverse of any polynomial in the size of the database)."""
    if num_records < 1:
        raise ConfigError(f"num_records={num_records}: delta needs the number of training records (>= 1)")
    return min(1e-5, float(num_records) ** -1.1)


def _check_delta(delta: float) -> None:
    if not 0 < delta < 1:
        raise ConfigError(f"delta={delta} must be in (0, 1); see default_delta(N)")
