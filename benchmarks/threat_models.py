"""Threat models past the paper on a Fashion-MNIST subset sized for 2 CPU cores: the pair attacks (the attacker
holds the dense original beside the pruned victim) against the best single-model attack, LiRA/RMIA with 2, 8 and
16 pipeline-replaying reference models, and the deployed TFLite artefacts (float, int8, fp16).

    python benchmarks/threat_models.py --out docs/threat_models.md [--seeds 1,2,3] [--max_samples 3000]

Each seed trains the victim, 2 shadows and 16 reference models (original and pruned); the 2- and 8-reference
configurations reuse the first references (same roles, seeds and data), the artefact runs reuse every model.
The report is rewritten after every seed, so a partial run still leaves the finished seeds' figures.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Dict

from tfprune_mia.audit.tables import mean_std
from tfprune_mia.backend import enable_determinism
from tfprune_mia.pipeline.config import ExperimentConfig
from tfprune_mia.pipeline.experiment import run_experiment
from tfprune_mia.pruning import PruneConfig
from tfprune_mia.training import TrainConfig

SINGLE = ("conf", "loss", "entropy", "mentr", "lira_offline", "lira_online", "lira_online_pervar", "rmia_offline",
          "rmia_online")
PAIR = ("pair_conf", "pair_lr", "pair_lira_offline", "pair_lira_online")
REFERENCE = ("lira_offline", "lira_online", "lira_online_pervar", "rmia_offline", "rmia_online")
ARTIFACT_ATTACKS = ("conf", "loss", "lira_offline", "rmia_offline")
ARTIFACTS = ("keras", "tflite", "tflite_int8", "tflite_fp16")
COUNTS = (16, 8, 2)  # largest first: the smaller configurations reuse its models
METRICS = (("tpr_at_0.001_fpr", "TPR@0.1%"), ("tpr_at_0.01_fpr", "TPR@1%"), ("auc", "AUC"))


def base_config(args, seed: int) -> ExperimentConfig:
    train = TrainConfig(epochs=args.epochs, batch_size=64, patience=4)
    return ExperimentConfig(dataset="fashion_mnist", seed=seed, num_shadows=2, train=train,
                            finetune=dataclasses.replace(train, epochs=max(1, args.epochs // 2)),
                            prune=PruneConfig("l1_unstructured", 0.7), attacks=SINGLE + PAIR, attack_epochs=1,
                            num_reference_models=COUNTS[0], bootstrap_resamples=200, max_samples=args.max_samples,
                            run_root=args.run_root)


def run_seed(args, seed: int) -> Dict:
    config = base_config(args, seed)
    runs = {"references": {}, "artifacts": {}}
    for count in COUNTS:
        started = time.time()
        runs["references"][count] = run_experiment(dataclasses.replace(config, num_reference_models=count))
        print(f"seed {seed}: {count} references done in {time.time() - started:.0f} s", flush=True)
    for kind in ARTIFACTS:
        started = time.time()
        runs["artifacts"][kind] = run_experiment(dataclasses.replace(
            config, attacks=ARTIFACT_ATTACKS, num_reference_models=2, attack_artifact=kind))
        print(f"seed {seed}: artefact {kind} done in {time.time() - started:.0f} s", flush=True)
    return runs


def with_interval(attack, key: str) -> str:
    low, high = attack.interval(key) or (float("nan"), float("nan"))
    return f"{attack[key]:.3f} [{low:.3f}, {high:.3f}]"


def best_single(audit, metric: str = "tpr_at_0.01_fpr"):
    return max((audit[name] for name in SINGLE if name in audit.attacks and audit[name].ran),
               key=lambda r: r.metrics[metric])


def report(args, seeds: Dict[int, Dict]) -> str:
    some = next(iter(seeds.values()))
    # Stored results keep per-class counts, not the membership labels: the target's size is their sum.
    num_target = sum(int(v["count"]) for v in some["references"][COUNTS[0]].original["conf"].per_class.values())
    lines = [
        "# Threat models past the paper: measured on a Fashion-MNIST subset", "",
        f"Produced by `python benchmarks/threat_models.py --max_samples {args.max_samples} --epochs {args.epochs} "
        f"--seeds {','.join(map(str, seeds))}` ({len(seeds)} seed(s) finished). Setting: Fashion-MNIST, a seeded "
        f"random subset of {args.max_samples} records (victim: {num_target // 2} members and as "
        "many non-members), `small_cnn`, trained at most "
        f"{args.epochs} epochs (early stopping on dev), L1 unstructured pruning at sparsity 0.7 and fine-tuning "
        f"{max(1, args.epochs // 2)} epochs; 2 shadows; reference models trained on random halves of the victim's "
        "pool and pruned and fine-tuned exactly like the victim. Intervals are stratified bootstrap 95% intervals "
        "(200 resamples) of one seed; ± is the standard deviation over seeds. With about "
        f"{num_target // 2} non-members, TPR@0.1% FPR is the TPR at zero false positives.", "",
        "## Pair attacks on the pruned victim vs the best single-model attack (16 reference models)", "",
        "Best single-model attack: the one with the highest TPR@1% FPR on the pruned victim among "
        f"{', '.join(SINGLE)} (chosen per seed, which flatters it).", "",
        "| seed | best single (which) | TPR@1% | " + " | ".join(f"{p} TPR@1%" for p in PAIR) + " |",
        "|" + "---|" * (3 + len(PAIR))]
    for seed, runs in seeds.items():
        pruned = runs["references"][COUNTS[0]].pruned
        best = best_single(pruned)
        lines.append(f"| {seed} | {best.attack} | {with_interval(best, 'tpr_at_0.01_fpr')} | "
                     + " | ".join(with_interval(pruned[p], "tpr_at_0.01_fpr") for p in PAIR) + " |")
    lines += ["", "Mean ± std over seeds, pruned victim, 16 references:", "",
              "| attack | " + " | ".join(label for _, label in METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for name in SINGLE + PAIR:
        values = [runs["references"][COUNTS[0]].pruned[name] for runs in seeds.values()]
        lines.append(f"| {name} | " + " | ".join(mean_std([v[key] for v in values]) for key, _ in METRICS) + " |")
    lines += ["", "## LiRA / RMIA with 2, 8 and 16 pipeline-replaying reference models", "",
              "Mean ± std over seeds (the shadows are OUT reference models in every row).", "",
              "| attack | references | setting | " + " | ".join(label for _, label in METRICS) + " |",
              "|---|---|---|" + "---|" * len(METRICS)]
    for name in REFERENCE + ("pair_lira_offline", "pair_lira_online"):
        for count in sorted(COUNTS):
            for setting in ("original", "pruned"):
                values = [runs["references"][count][setting][name] for runs in seeds.values()]
                if not all(v.ran for v in values):
                    continue
                lines.append(f"| {name} | {count} | {setting} | "
                             + " | ".join(mean_std([v[key] for v in values]) for key, _ in METRICS) + " |")
    lines += ["", "## The deployed artefact", "",
              "Every model's signals (the attacker's shadows too) from the file that ships. Size: the artefact "
              "file; accuracy: the artefact's own on the victim's non-members. These runs train no extra reference "
              "models: LiRA offline calibrates on the 2 shadows only, hence lower than in the tables above.", "",
              "| artefact | setting | size KB (gzip KB) | test accuracy | "
              + " | ".join(f"{a} {label}" for a in ("conf", "lira_offline") for _, label in METRICS[1:]) + " |",
              "|---|---|---|---|" + "---|" * 4]
    for kind in ARTIFACTS:
        for setting in ("original", "pruned"):
            audits = [runs["artifacts"][kind][setting] for runs in seeds.values()]
            facts = [a.model.footprint or {} for a in audits]
            size = ("-" if kind == "keras" else
                    f"{sum(f['artifact_bytes'] for f in facts) / len(facts) / 1024:.1f} "
                    f"({sum(f['artifact_gzip_bytes'] for f in facts) / len(facts) / 1024:.1f})")
            cells = [mean_std([a[name][key] for a in audits]) for name in ("conf", "lira_offline")
                     for key, _ in METRICS[1:]]
            lines.append(f"| {kind} | {setting} | {size} | {mean_std([a.model.test_accuracy for a in audits])} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/threat_models.md")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--max_samples", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--run_root", default="runs/threat_models")
    args = parser.parse_args()
    enable_determinism()
    finished: Dict[int, Dict] = {}
    for seed in map(int, args.seeds.split(",")):
        finished[seed] = run_seed(args, seed)
        Path(args.out).write_text(report(args, finished))
        print(f"seed {seed} done; report at {args.out}", flush=True)


if __name__ == "__main__":
    main()
