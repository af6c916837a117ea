"""Same seed on CPU -> identical numbers; every result records what is needed to reproduce it."""
import json

from reliability_helpers import RUN_DIR, TINY_FLAGS, comparable, read_result, result_files, run_binary


def test_same_seed_gives_identical_metrics_in_a_fresh_process(tmp_path, reference_run):
    _, reference = reference_run
    result = run_binary("train_prune", f"--run_root={tmp_path / 'runs'}", *TINY_FLAGS)
    assert result.returncode == 0, result.stderr[-3000:]
    again = comparable(read_result(tmp_path / "runs"))
    assert again["attacks"] == reference["attacks"]  # the metrics, spelled out for a readable failure
    assert again == reference


def test_result_records_versions_seed_split_hash_and_full_config(reference_run):
    from tfprune_mia.data.splits import load_split
    from tfprune_mia.pipeline.config import FORMAT_VERSION

    root, _ = reference_run
    (path,) = result_files(root)
    report = json.loads(path.read_text())
    assert report["format_version"] == FORMAT_VERSION
    versions = report["versions"]
    for package in ("tfprune_mia", "tensorflow", "tf_keras", "numpy", "scikit-learn", "python"):
        assert versions.get(package), f"{package} version missing from {sorted(versions)}"
    config = report["config"]
    assert config["seed"] == 7 and config["dataset"] == "digits" and config["num_shadows"] == 1
    assert config["train"]["epochs"] == 2 and config["finetune"]["epochs"] == 1
    assert config["train"]["batch_size"] == 64 and config["signals"]["num_perturbations"] == 1
    assert config["prune"] == {"pruner": "l1_unstructured", "sparsity": 0.7,
                               "options": {"schedule": "constant", "scope": "layer", "m_by_n": ""}}
    assert config["attacks"] == ["conf"] and config["attack_epochs"] == 1
    # The split hash is the one of the split file the run used.
    assert report["split_fingerprint"] == load_split(root / RUN_DIR / "split.npz").fingerprint()


def test_result_config_is_the_complete_experiment_config(reference_run):
    """Every field of ExperimentConfig (bar the output location) is in the result, so a reader can rebuild it."""
    import dataclasses

    from tfprune_mia.pipeline.config import ExperimentConfig

    root, _ = reference_run
    config = json.loads(result_files(root)[0].read_text())["config"]
    # Options added later are stored only when set, so older results keep their keys; from_dict restores them.
    added_later = {"attack_artifact", "released_sparsities", "canaries", "canary_kind", "stacked_training"}
    # Where the run lives and which devices trained it are execution choices, in no key (meta.json records them).
    execution = {"run_root", "distribution"}
    fields = {f.name for f in dataclasses.fields(ExperimentConfig)} - execution - added_later
    assert fields <= set(config), sorted(fields - set(config))
    assert json.loads(json.dumps(ExperimentConfig.from_dict(config).to_dict())) == config
