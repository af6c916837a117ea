"""Tables from typed results: the defense comparison pools only seeds of one full configuration, never attack
sets or re-runs; reloaded results print in the configured order."""
from tfprune_mia.audit.results import AttackResult, AuditResult, ExperimentResult, ModelFacts
from tfprune_mia.audit.tables import defense_comparison_table, summary_table

METRICS = {"balanced_accuracy": 0.6, "auc": 0.65, "advantage": 0.2, "ppv": 0.6, "tpr_at_0.01_fpr": 0.03,
           "tpr_at_0.001_fpr": 0.01}


def fake_result(seed, attacks, auc=0.65, defense="none", accuracy=0.9):
    config = {"dataset": "digits", "model": "small_cnn", "seed": seed, "max_samples": 0, "num_shadows": 2,
              "attacks": list(attacks), "prune": {"pruner": "l1_unstructured", "sparsity": 0.7},
              "shadow_prune": {"pruner": "l1_unstructured", "sparsity": 0.7}, "defense": {"name": defense}}
    facts = ModelFacts(1.0, 0.9, accuracy, 3, {"prunable_sparsity": 0.7}, defense={"key": defense})
    settings = {s: AuditResult({a: AttackResult(a, {**METRICS, "auc": auc + 0.01 * i}, {"auc": (0.5, 0.8)})
                                for i, a in enumerate(attacks)}, model=facts) for s in ("original", "pruned")}
    return ExperimentResult(config, settings)


def test_rows_group_by_full_configuration_and_count_distinct_seeds():
    results = [fake_result(7, ["samia", "conf"], accuracy=0.90), fake_result(8, ["samia", "conf"], accuracy=0.92),
               fake_result(7, ["samia", "conf", "rmia_online"]),  # another attack set: its own row
               fake_result(8, ["samia", "conf"], accuracy=0.92)]  # a re-run of seed 8: counted once
    table = defense_comparison_table(results)
    rows = [line for line in table.splitlines() if line.startswith("| l1_unstructured")]
    assert len(rows) == 2
    assert "| samia,conf | 2 (7, 8) | 0.9100 ± 0.0141 |" in rows[0] + rows[1]
    assert "| samia,conf,rmia_online | 1 (7) |" in rows[0] + rows[1]


def test_reloaded_results_print_like_fresh_ones():
    fresh = fake_result(7, ["samia", "conf", "entropy"])
    # The JSON on disk sorts keys; the table must still follow the configured attack order.
    reloaded = ExperimentResult.from_dict(
        __import__("json").loads(__import__("json").dumps(fresh.to_dict(), sort_keys=True)))
    assert summary_table(reloaded) == summary_table(fresh)
    lines = summary_table(fresh).splitlines()
    interval_lines = [line.split()[1] for line in lines if "AUC 0." in line and "[" in line][:3]
    assert interval_lines == ["samia", "conf", "entropy"]
