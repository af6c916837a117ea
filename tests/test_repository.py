"""The repository's promises to users: README commands, CI running exactly them, flagfiles parse."""
import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parent.parent


def quick_start_commands():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start.*?```sh\n(.*?)```", readme, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_starts_with_install_and_demo_then_tests():
    install_and_demo, install_and_test = quick_start_commands()[:2]
    assert install_and_demo == "pip install -e . && train_prune"
    assert "pytest" in install_and_test and "[test]" in install_and_test


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert quick_start_commands()[1] in ci


def test_every_flagfile_parses_against_the_binary_flags():
    from absl import flags

    from tfprune_mia.bin import study, train_prune  # noqa: F401  (define the flags; study adds the grid flags)

    for path in sorted((REPO / "flags").glob("*.flags")):
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, value = line[2:].split("=", 1)
                assert name in flags.FLAGS, f"{path.name}: unknown flag --{name}"
                flags.FLAGS[name].parser.parse(value)


def test_paper_flagfiles_name_registered_datasets_and_models():
    from tfprune_mia.data import DATASETS
    from tfprune_mia.models import MODELS

    for path in sorted((REPO / "flags").glob("*.flags")):
        values = dict(line[2:].split("=", 1) for line in path.read_text().splitlines()
                      if line.startswith("--"))
        assert values["dataset"] in DATASETS and values["model"] in MODELS, path.name
