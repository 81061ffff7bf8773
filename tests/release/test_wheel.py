"""The release artefacts, as a user gets them.

``python -m build`` makes the sdist and then the wheel *from that sdist* (so the sdist holds
what building needs); ``twine check --strict`` passes; the wheel holds the whole package,
``py.typed`` and the emulator, and nothing of tests/ or dags/. Then the wheel alone (plus its
``emulator`` extra, Airflow from the registry as its dependency) goes into a fresh venv, and
from a temporary working directory (never the source tree) that venv migrates a throwaway
Airflow home, starts the emulator the wheel ships and runs the example DAG with
``airflow dags test``.

With ``uv`` (next to this interpreter or on PATH) installs come from uv's cache (hard links):
a few seconds when warm. Without it, pip installs Airflow from scratch (minutes).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster import free_port
from tests.fixtures import EmulatorControl
from tests.release.helpers import DISTRIBUTION, REPO, pyproject_version

pytestmark = pytest.mark.slow

PACKAGE = "airflow_provider_oxen"
DAG_FILE = REPO / "dags" / "oxen_generate_images.py"
DAG_ID = "oxen_generate_images"
EMULATOR_KEY = "release-emulator-key"
# What a copy of the checkout leaves out: local state, never part of a source tree.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "*.egg-info", "build", "dist", "__pycache__", "*.pyc", ".*_cache", ".demo"
)


def _uv() -> str | None:
    """The uv next to this interpreter (what scripts/bootstrap.sh installs), else one on PATH."""
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("uv")


def _kill_group(popen: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    """Signal the process group this test started (``start_new_session``) — nothing else."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, sig)


def _run(
    command: Sequence[str], *, env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run to completion in its own session; on timeout or any error, kill the whole group."""
    popen = subprocess.Popen(
        list(command),
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = popen.communicate(timeout=timeout)
    except BaseException:
        _kill_group(popen)
        popen.communicate()
        raise
    # Anything it left running in its group (the group id cannot be reused while it has members).
    _kill_group(popen)
    return subprocess.CompletedProcess(list(command), popen.returncode, stdout, stderr)


def _ok(result: subprocess.CompletedProcess[str], what: str) -> str:
    output = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, f"{what} failed ({result.returncode}):\n{output[-6000:]}"
    return output


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything Airflow- or Python-path-related."""
    dropped = ("AIRFLOW", "_AIRFLOW", "PYTHON", "VIRTUAL_ENV", "CONDA_PREFIX", "PIP_REQUIRE_VIRTUALENV")
    env = {key: value for key, value in os.environ.items() if not key.startswith(dropped)}
    env.update(extra)
    return env


# ---------------------------------------------------------------------------- the artefacts


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel, sdist) built by ``python -m build`` from a copy of the working tree."""
    root = tmp_path_factory.mktemp("release-build")
    source = root / "source"
    # A copy, so that building writes nothing (egg-info, build/) into the checkout.
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE, symlinks=True)
    command = [sys.executable, "-m", "build", "--outdir", str(root / "dist")]
    if _uv():
        command += ["--installer", "uv"]
    _ok(_run([*command, str(source)], env=_clean_env(), cwd=root, timeout=900), "python -m build")
    version = pyproject_version()
    wheel = root / "dist" / f"{PACKAGE}-{version}-py3-none-any.whl"
    sdist = root / "dist" / f"{PACKAGE}-{version}.tar.gz"
    assert sorted(path.name for path in (root / "dist").iterdir()) == sorted([sdist.name, wheel.name])
    return wheel, sdist


def test_twine_check_passes(dist: tuple[Path, Path], tmp_path: Path) -> None:
    result = _run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dist)],
        env=_clean_env(),
        cwd=tmp_path,
        timeout=120,
    )
    output = _ok(result, "twine check --strict")
    assert output.count("PASSED") == 2, output


def _source_files() -> set[str]:
    package = REPO / PACKAGE
    return {
        path.relative_to(REPO).as_posix()
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def test_wheel_holds_the_package_and_nothing_else(dist: tuple[Path, Path]) -> None:
    wheel, _ = dist
    version = pyproject_version()
    dist_info = f"{PACKAGE}-{version}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()

    assert {name.split("/", 1)[0] for name in names} == {PACKAGE, dist_info}, sorted(names)
    package_files = {name for name in names if name.startswith(f"{PACKAGE}/")}
    # Every file of the package directory (a subpackage without __init__.py would be missing).
    assert package_files == _source_files()
    assert {f"{PACKAGE}/py.typed", f"{PACKAGE}/emulator/__main__.py"} <= package_files
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)

    headers = metadata.split("\n\n", 1)[0].splitlines()
    assert f"Version: {version}" in headers
    assert "Description-Content-Type: text/markdown" in headers
    assert {"Provides-Extra: emulator", "Provides-Extra: amazon"} <= set(headers)
    assert "## Install" in metadata  # README is the long description
    assert "[apache_airflow_provider]" in entry_points
    assert f"provider_info = {PACKAGE}.get_provider_info:get_provider_info" in entry_points


def test_sdist_holds_what_building_needs(dist: tuple[Path, Path]) -> None:
    _, sdist = dist
    top = f"{PACKAGE}-{pyproject_version()}"
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "CHANGELOG.md", "PKG-INFO"} <= names
    assert _source_files() <= names
    assert {"dags/oxen_generate_images.py", "docs/quickstart.md"} <= names
    assert not any(name.startswith(("tests/", "scripts/", "benchmarks/", ".ci/")) for name in names)
    assert not any("__pycache__" in name for name in names), top


# ------------------------------------------------------------------- the wheel, installed alone


class Venv:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.python = self.bin / "python"

    def env(self, **extra: str) -> dict[str, str]:
        return _clean_env(
            VIRTUAL_ENV=str(self.root), PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}", **extra
        )


@pytest.fixture(scope="module")
def venv(dist: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh venv with only the wheel and its ``emulator`` extra (and their dependencies)."""
    wheel, _ = dist
    root = tmp_path_factory.mktemp("release-venv")
    fresh = Venv(root / "venv")
    uv = _uv()
    create = [sys.executable, "-m", "venv", str(fresh.root)] + (["--without-pip"] if uv else [])
    _ok(_run(create, env=_clean_env(), cwd=root, timeout=300), "python -m venv")
    requirement = f"{DISTRIBUTION}[emulator] @ {wheel.as_uri()}"
    if uv:  # uv's cache (~/.cache/uv or UV_CACHE_DIR) makes repeated runs take seconds
        install = [uv, "pip", "install", "--python", str(fresh.python), requirement]
    else:
        install = [str(fresh.python), "-m", "pip", "install", "--disable-pip-version-check", requirement]
    _ok(_run(install, env=fresh.env(), cwd=root, timeout=1800), "installing the wheel")
    return fresh


@pytest.fixture(scope="module")
def airflow_home(venv: Venv, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A throwaway AIRFLOW_HOME (SQLite, no examples) migrated by the venv's Airflow."""
    home = tmp_path_factory.mktemp("release-airflow-home")
    (home / "dags").mkdir()
    shutil.copy(DAG_FILE, home / "dags" / DAG_FILE.name)
    env = venv.env(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
    )
    _ok(_run([str(venv.bin / "airflow"), "db", "migrate"], env=env, cwd=home, timeout=600), "db migrate")
    return env


_PROBE = """
import importlib.metadata, json, airflow_provider_oxen
from airflow_provider_oxen.get_provider_info import get_provider_info
print(json.dumps({
    "file": airflow_provider_oxen.__file__,
    "version": airflow_provider_oxen.__version__,
    "metadata": importlib.metadata.version("airflow-provider-oxen"),
    "provider_info": get_provider_info()["versions"],
}))
"""


def test_installed_package_is_the_wheel_at_its_version(
    venv: Venv, airflow_home: dict[str, str], tmp_path: Path
) -> None:
    version = pyproject_version()
    probe = json.loads(
        _ok(_run([str(venv.python), "-c", _PROBE], env=venv.env(), cwd=tmp_path, timeout=120), "probe")
        .strip()
        .splitlines()[0]
    )
    assert Path(probe["file"]).is_relative_to(venv.root), probe  # not the source tree
    assert (probe["version"], probe["metadata"], probe["provider_info"]) == (version, version, [version])

    listed = _run(
        [str(venv.bin / "airflow"), "providers", "list", "--output", "json"],
        env=airflow_home,
        cwd=tmp_path,
        timeout=300,
    )
    _ok(listed, "airflow providers list")
    providers = {entry["package_name"]: entry for entry in json.loads(listed.stdout)}
    assert providers[DISTRIBUTION]["version"] == version, providers.get(DISTRIBUTION)


@pytest.fixture
def emulator(venv: Venv, tmp_path: Path) -> Iterator[EmulatorControl]:
    """The emulator the wheel ships (``python -m airflow_provider_oxen.emulator`` of the venv) on
    a free loopback port, in its own process group, stopped (SIGTERM, then SIGKILL) afterwards."""
    port = free_port()
    command = [str(venv.python), "-m", f"{PACKAGE}.emulator", "--port", str(port), "--quiet"]
    log_path = tmp_path / "emulator.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [*command, "--api-key", EMULATOR_KEY],
            env=venv.env(),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    control = EmulatorControl(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while not _answers(control):
            assert popen.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        yield control
    finally:
        control.close()
        _kill_group(popen, signal.SIGTERM)
        try:
            popen.wait(15)
        except subprocess.TimeoutExpired:
            _kill_group(popen)
            popen.wait(15)


def _answers(control: EmulatorControl) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return bool(control.stats())
    return False


def test_wheel_runs_the_example_dag_against_its_emulator(
    venv: Venv, airflow_home: dict[str, str], emulator: EmulatorControl, tmp_path: Path
) -> None:
    env = dict(airflow_home)
    env["AIRFLOW_CONN_OXEN_DEFAULT"] = json.dumps(
        {"conn_type": "oxen", "host": emulator.url, "password": EMULATOR_KEY}
    )
    run = _run([str(venv.bin / "airflow"), "dags", "test", DAG_ID], env=env, cwd=tmp_path, timeout=900)
    output = _ok(run, "airflow dags test")
    assert f"dag_id={DAG_ID}" in output and "state=success" in output, output[-4000:]
    assert "state=failed" not in output, output[-4000:]
    assert EMULATOR_KEY not in output

    with sqlite3.connect(Path(airflow_home["AIRFLOW_HOME"]) / "airflow.db") as db:
        states = dict(
            db.execute(
                "SELECT task_id || ':' || map_index, state FROM task_instance WHERE dag_id = ?", (DAG_ID,)
            )
        )
        [xcom] = db.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND task_id = 'poster' AND key = 'return_value'",
            (DAG_ID,),
        ).fetchall()
    # poster, two mapped product shots, enqueue_only, wait_for_banners
    assert len(states) == 5 and set(states.values()) == {"success"}, states
    [poster] = json.loads(xcom[0])
    assert poster["status"] == "succeeded" and poster["media_type"] == "image", poster
    assert poster["result_url"].startswith(emulator.url)
    assert (poster["width"], poster["height"], poster["output_format"]) == (768, 1024, "png"), poster
    assert isinstance(poster["cost"], str) and poster["enqueued_at"], poster  # the 0.2.0 shape
    # poster 1 + 2 shots + enqueue_only 2: every image enqueued exactly once.
    assert emulator.stats()["generations_created"] == 5
