"""The install commands users are told to type resolve with the pip a fresh Python 3.11 venv ships (23.2.1).

That pip compares the extra name it is given with the raw Provides-Extra of the built metadata; setuptools
versions write extras normalised differently (`tfp_mia` became `tfp-mia`), so such an extra silently installed
nothing. Every extra must therefore be spelled identically before and after every normalisation.
"""
import configparser
import pathlib
import re
import shutil
import subprocess
import sys

from tfprune_mia.attacks.tfp_bridge import INSTALL_HINT

REPO = pathlib.Path(__file__).resolve().parent.parent
EXTRA_IN_COMMAND = re.compile(r"pip install [^`\n]*\[([^\]]+)\]")


def declared_extras():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return set(config["options.extras_require"])


def normalisations(name):
    return {re.sub(r"[-_.]+", "-", name).lower(),  # PEP 685 (current setuptools and pip)
            re.sub(r"[^A-Za-z0-9.-]+", "_", name).lower()}  # pkg_resources.safe_extra (older setuptools)


def built_provides_extra(tmp_path):
    """Provides-Extra of the metadata the installed setuptools builds from a copy of the project's config."""
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "tfprune_mia").mkdir()
    shutil.copy(REPO / "tfprune_mia" / "__init__.py", tmp_path / "tfprune_mia" / "__init__.py")
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                    "build_meta.prepare_metadata_for_build_wheel(sys.argv[1])", str(out)],
                   cwd=tmp_path, check=True, capture_output=True)
    (metadata,) = out.glob("*/METADATA")
    return {line.split(":", 1)[1].strip() for line in metadata.read_text().splitlines()
            if line.startswith("Provides-Extra:")}


def test_extra_names_survive_every_normalisation():
    for name in declared_extras():
        assert normalisations(name) == {name}, f"extra {name!r} changes under normalisation; rename it"


def test_built_metadata_provides_exactly_the_declared_names(tmp_path):
    assert built_provides_extra(tmp_path) == declared_extras()


def test_readme_and_skip_message_name_declared_extras():
    readme_extras = set(EXTRA_IN_COMMAND.findall((REPO / "README.md").read_text()))
    hint_extras = set(EXTRA_IN_COMMAND.findall(INSTALL_HINT))
    assert hint_extras and readme_extras >= hint_extras
    assert readme_extras <= declared_extras(), readme_extras - declared_extras()
