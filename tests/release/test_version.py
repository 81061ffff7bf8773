"""One version, written once (pyproject.toml), and everything that shows it agrees.

``__version__``, the installed metadata and the provider info of the installed wheel:
tests/release/test_wheel.py::test_installed_package_is_the_wheel_at_its_version."""

from __future__ import annotations

from importlib.metadata import version

from tests.release.helpers import DISTRIBUTION, REPO, pyproject_version


def test_installed_metadata_is_pyprojects_version() -> None:
    assert version(DISTRIBUTION) == pyproject_version(), "stale install: run scripts/bootstrap.sh"


def test_changelog_has_an_entry_for_the_version() -> None:
    """The newest released entry is this version's (changes not released yet sit above it,
    under "## Unreleased")."""
    lines = (REPO / "CHANGELOG.md").read_text().splitlines()
    headings = [line for line in lines if line.startswith("## ") and line != "## Unreleased"]
    assert headings and headings[0].split()[1] == pyproject_version(), headings[:1]


def test_readme_install_names_this_versions_wheel() -> None:
    readme = (REPO / "README.md").read_text()
    install = readme[readme.index("## Install") : readme.index("\n## ", readme.index("## Install") + 1)]
    assert f"dist/airflow_provider_oxen-{pyproject_version()}-py3-none-any.whl" in install
