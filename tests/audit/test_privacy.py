"""audit_dp: one corrected bound per attack, the accountant's epsilon beside it, violations only where that
epsilon covers the released model."""
import numpy as np
import pytest

from tfprune_mia.audit.epsilon import one_run_audit
from tfprune_mia.audit.privacy import PrivacyAudit, audit_dp
from tfprune_mia.audit.results import AuditResult
from tfprune_mia.errors import ConfigError

M = 1000


def canaries(seed=0):
    rng = np.random.default_rng(seed)
    included = rng.random(M) < 0.5
    leaky = included + rng.normal(0, 0.05, M)  # ranks every IN canary above every OUT one
    blind = rng.normal(size=M)  # independent of the coins
    return included, leaky, blind


def test_each_attack_is_bounded_at_the_confidence_corrected_over_attacks():
    included, leaky, blind = canaries()
    audit = audit_dp({"leaky": leaky, "blind": blind}, included, 1e-5, "mislabel")
    assert audit.bounds["leaky"] == one_run_audit(leaky, included, 1e-5, 1 - 0.05 / 2)
    assert audit.best_attack == "leaky" and audit.epsilon == audit.bounds["leaky"].epsilon > 3
    assert audit.bounds["blind"].epsilon < 0.5
    assert audit.included == included.sum() and audit.confidence == 0.95
    alone = audit_dp({"leaky": leaky}, included, 1e-5, "mislabel")
    assert alone.epsilon > audit.epsilon  # one attack pays a smaller correction


def test_a_bound_above_an_epsilon_covering_the_released_model_is_a_violation():
    included, leaky, blind = canaries(1)
    end_to_end = {"epsilon": 1.2, "epsilon_pld": 1.0, "covers_released_model": True}
    flagged = audit_dp({"leaky": leaky}, included, 1e-5, "mislabel", defense=end_to_end)
    assert flagged.violation and flagged.promised_epsilon == 1.0
    # The same leak against a fine-tuning-only epsilon is shown, not flagged: that epsilon promises nothing
    # about the released model.
    finetune = audit_dp({"leaky": leaky}, included, 1e-5, "mislabel",
                        defense={**end_to_end, "covers_released_model": False})
    assert not finetune.violation and finetune.accountant_epsilon == 1.2
    honest = audit_dp({"blind": blind}, included, 1e-5, "mislabel", defense=end_to_end)
    assert not honest.violation
    assert not audit_dp({"leaky": leaky}, included, 1e-5, "mislabel").violation  # no accountant, no promise


def test_the_audit_round_trips_through_json_alone_and_inside_an_audit_result():
    included, leaky, _ = canaries(2)
    audit = audit_dp({"leaky": leaky}, included, 1e-5, "noise", skipped={"lira_offline": "why"},
                     defense={"epsilon": float("inf"), "epsilon_pld": float("inf"), "covers_released_model": True})
    assert PrivacyAudit.from_dict(audit.to_dict()) == audit
    assert audit.to_dict()["accountant_epsilon"] == "inf" and audit.violation is False  # inf is never exceeded
    result = AuditResult({}, privacy_audit=audit)
    assert AuditResult.from_dict(result.to_dict()).privacy_audit == audit
    assert "privacy_audit" not in AuditResult({}).to_dict()


def test_bad_confidence_and_stale_records_are_refused():
    included, leaky, _ = canaries()
    with pytest.raises(ConfigError, match="confidence=1.5"):
        audit_dp({"leaky": leaky}, included, 1e-5, "mislabel", confidence=1.5)
    record = audit_dp({"leaky": leaky}, included, 1e-5, "mislabel").to_dict()
    del record["bounds"]
    with pytest.raises(ConfigError, match="lacks 'bounds'"):
        PrivacyAudit.from_dict(record)
