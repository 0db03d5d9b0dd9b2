"""The deployment package built from the repo honouring .funcignore holds exactly the runtime files."""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from infra.package import build_package, package_files

REPO = Path(__file__).resolve().parents[2]
RUNTIME_TOP_LEVEL = {"function_app.py", "host.json", "requirements.txt"}


def _runtime_files(root: Path) -> set[str]:
    """What Azure must receive: the entry point, host config, dependency list and the app package."""
    shared = {
        p.relative_to(root).as_posix()
        for p in (root / "shared").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    return RUNTIME_TOP_LEVEL | shared


def test_repo_package_is_exactly_the_runtime_files():
    files = set(package_files(REPO))
    expected = _runtime_files(REPO)
    assert files == expected, (
        f"unexpected in package: {sorted(files - expected)}; missing: {sorted(expected - files)} "
        "(list new non-runtime paths in .funcignore)")
    assert "shared/__init__.py" in files


def _write(root: Path, rel: str, text: str = "x") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(REPO / ".funcignore", tmp_path / ".funcignore")
    for rel in [
        # runtime
        "function_app.py", "host.json", "requirements.txt", "shared/__init__.py", "shared/sub/deep.py",
        "shared/data/formula.txt",
        # never deployed
        "shared/__pycache__/x.cpython-311.pyc", "shared/stale.pyc", "__pycache__/function_app.cpython-311.pyc",
        ".venv/lib/python3.11/site-packages/pkg.py", ".azure/dev/.env", ".git/config", ".gitignore",
        ".ci/run", ".devstack/azurite.pid", ".pytest_cache/v/cache", ".hypothesis/examples/x",
        "local.settings.json", "local.settings.sample.json", "tests/test_x.py", "tests/infra/test_y.py",
        "devstack/node/node_modules/azurite/index.js", "devstack/cli.py", "infra/main.bicep",
        "infra/scripts/post-deploy.sh", "docs/deploy.md", "bench/run.py", "azure.yaml", "README.md",
        "dev", "pytest.ini", "requirements-dev.txt", "dist/app.zip",
    ]:
        _write(tmp_path, rel)
    return tmp_path


def test_funcignore_keeps_only_runtime_files(project: Path):
    assert set(package_files(project)) == {
        "function_app.py", "host.json", "requirements.txt",
        "shared/__init__.py", "shared/sub/deep.py", "shared/data/formula.txt",
    }


def test_funcignore_is_a_deny_list_so_new_top_level_files_need_a_decision(project: Path):
    # Core Tools does not honour '!' re-includes (azure-functions-core-tools#4240), so the
    # file lists what to leave out; the repo test above catches a new path nobody listed.
    _write(project, "notes.txt")
    assert "notes.txt" in package_files(project)


def test_local_settings_json_is_never_packaged_even_without_funcignore(project: Path):
    (project / ".funcignore").unlink()
    files = package_files(project)
    assert "local.settings.json" not in files
    assert "local.settings.sample.json" in files  # only the exact name is implicit


def test_zip_holds_the_listed_files_with_deterministic_bytes(project: Path, tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    first = build_package(project, out / "a.zip")
    second = build_package(project, out / "b.zip")
    assert (out / "a.zip").read_bytes() == (out / "b.zip").read_bytes()
    with zipfile.ZipFile(out / "a.zip") as archive:
        assert archive.namelist() == first == second
        assert archive.read("shared/sub/deep.py") == b"x"
