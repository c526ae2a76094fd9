"""What PyPI gets: the sdist and the wheel, built once from a copy of the checkout.

The wheel must carry the package's data files (templates, migrations, the type
marker) without setuptools warning about undeclared packages; the sdist must
carry the changelog and a test suite that runs once unpacked; the metadata
must point to the docs; and the README, which PyPI shows as the project page,
must link only to absolute URLs (a relative link resolves against pypi.org).
"""

from __future__ import annotations

import email.parser
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("build") is None,
        reason="needs the build package (the dev extra)",
    ),
    # The archives do not depend on the database: build them once, in the SQLite pass.
    pytest.mark.skipif(
        os.environ.get("IDEMPOTENCY_TEST_DB", "sqlite") != "sqlite",
        reason="packaging is tested in the SQLite run",
    ),
]

# Left in the copy that is built, as they are in a developer's checkout: none may ship.
JUNK = [
    "sample_project/db.sqlite3",
    "tests/__pycache__/conftest.cpython-311-pytest-8.0.0.pyc",
    "django_idempotency/__pycache__/engine.cpython-311.pyc",
    "benchmarks/.venv-bench/pyvenv.cfg",
    ".venv/pyvenv.cfg",
]
# Not copied at all: large, and outside everything MANIFEST.in names.
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".tox", ".venv", ".venv-*", "*.egg-info", "build", "dist", ".*_cache", "node_modules"
)


@dataclass
class Dists:
    source: Path
    log: str
    sdist: Path
    wheel: Path

    def sdist_names(self) -> set[str]:
        with tarfile.open(self.sdist) as archive:
            top = archive.getnames()[0].split("/")[0]
            return {
                name.removeprefix(top + "/")
                for name in archive.getnames()
                if archive.getmember(name).isfile()
            }

    def wheel_names(self) -> set[str]:
        with zipfile.ZipFile(self.wheel) as archive:
            return set(archive.namelist())

    def metadata(self) -> Message:
        with zipfile.ZipFile(self.wheel) as archive:
            (name,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            return email.parser.Parser().parsestr(archive.read(name).decode())


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=NOT_COPIED, symlinks=True)
    for junk in JUNK:
        (source / junk).parent.mkdir(parents=True, exist_ok=True)
        (source / junk).write_bytes(b"junk")
    out = tmp / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Dists(source=source, log=log, sdist=sdist, wheel=wheel)


def files_under(root: Path, folder: str) -> set[str]:
    """The files of ``root/folder`` a clean checkout has, relative to ``root``."""
    return {
        path.relative_to(root).as_posix()
        for path in (root / folder).rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.relative_to(root).as_posix() not in JUNK
    }


def test_the_build_declares_every_package_it_ships(dists: Dists) -> None:
    assert "absent from the `packages` configuration" not in dists.log
    assert "Package would be ignored" not in dists.log
    # A MANIFEST.in line that matches nothing is a typo or a file that moved.
    assert "no files found matching" not in dists.log
    assert "no directories found matching" not in dists.log


def test_the_wheel_carries_the_package_and_its_data_files(dists: Dists) -> None:
    names = dists.wheel_names()

    for required in [
        "django_idempotency/py.typed",
        "django_idempotency/templates/admin/django_idempotency/idempotencyrecord/change_list.html",
        "django_idempotency/templatetags/idempotency_admin.py",
        "django_idempotency/migrations/0001_initial.py",
        "django_idempotency/management/commands/purge_idempotency_records.py",
    ]:
        assert required in names
    missing = files_under(dists.source, "django_idempotency") - names
    assert not missing, f"files of the package the wheel lost: {sorted(missing)}"
    outside = {n for n in names if not n.startswith("django_idempotency")}
    assert not outside, f"the wheel installs more than the package: {sorted(outside)}"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_the_sdist_carries_the_changelog_and_a_complete_test_suite(dists: Dists) -> None:
    names = dists.sdist_names()

    for required in [
        "CHANGELOG.md",
        "README.md",
        "LICENSE",
        "pyproject.toml",
        "setup.cfg",
        "tests/settings.py",
        "tests/conftest.py",
        "tests/urls.py",
        "tests/factories.py",
        "tests/run_backends.py",
        "tests/testapp/models.py",
        "tests/testapp/migrations/0001_initial.py",
        "tests/concurrency/conftest.py",
        "sample_project/settings.py",
        "docs/errors.md",
        "docs/hooks.py",
    ]:
        assert required in names
    # Everything the tests import or read: tests/, the sample project, the docs.
    for folder in ["django_idempotency", "tests", "sample_project", "docs"]:
        missing = files_under(dists.source, folder) - names
        assert not missing, f"files of {folder}/ the sdist lost: {sorted(missing)}"
    shipped_junk = sorted(names & set(JUNK)) + [
        n for n in names if n.endswith(".pyc") or n.startswith(("benchmarks/", ".venv", ".ci/"))
    ]
    assert not shipped_junk


def test_the_unpacked_sdist_runs_its_tests(dists: Dists, tmp_path: Path) -> None:
    with tarfile.open(dists.sdist) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(tmp_path, filter="data")
        else:  # Python 3.11 before 3.11.4
            archive.extractall(tmp_path)
    (unpacked,) = tmp_path.iterdir()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("IDEMPOTENCY_", "PYTEST_", "DJANGO_"))
        and name not in ("PYTHONPATH", "COV_CORE_SOURCE")
    }
    env |= {"IDEMPOTENCY_TEST_DB": "sqlite", "IDEMPOTENCY_TEST_SQLITE_DIR": str(tmp_path)}

    def pytest_in_sdist(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
            cwd=unpacked,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    # Every test module imports (settings, conftest, testapp, helpers are there) ...
    assert re.search(r"\d+ tests? collected", pytest_in_sdist("--collect-only"))
    # ... and tests that need the test app, the sample project and the docs pass,
    # against the unpacked package (pytest puts the tree first on sys.path).
    ran = pytest_in_sdist("tests/test_contract.py", "tests/test_sample_project.py::TestDocs")
    assert re.search(r"\d+ passed", ran), ran
    assert "skipped" not in ran


def test_the_metadata_points_to_the_docs_and_the_changelog(dists: Dists) -> None:
    urls = dict(url.split(", ", 1) for url in dists.metadata().get_all("Project-URL", failobj=[]))

    site = re.search(r"^site_url:\s*(\S+)", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert site is not None
    assert urls.get("Documentation") == site.group(1)
    assert urls.get("Changelog") == site.group(1) + "changelog/"
    assert (ROOT / "docs" / "changelog.md").exists()


FENCED = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE_SPAN = re.compile(r"(`+).+?\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(].*?[\"')])?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HTML = re.compile(r"<(?:a|img|source)\b[^>]*?\b(?:href|src)=[\"']([^\"']*)", re.I)


def markdown_targets(text: str) -> list[str]:
    """The targets of the links and images of a Markdown text, outside code."""
    text = CODE_SPAN.sub("", FENCED.sub("", text))
    return [m.group(1) for pattern in (LINK, REFERENCE, HTML) for m in pattern.finditer(text)]


def test_markdown_targets_finds_links_images_and_references() -> None:
    text = (
        "[a](docs/a.md) ![b](img/b.png \"title\") [c][c] <img src='d.png'>\n"
        "`[not](a-link)`\n```\n[not](either)\n```\n[c]: https://example.org/c\n"
    )

    assert sorted(markdown_targets(text)) == [
        "d.png",
        "docs/a.md",
        "https://example.org/c",
        "img/b.png",
    ]


def test_the_readme_links_only_to_absolute_urls(dists: Dists) -> None:
    readme = dists.metadata().get_payload()
    assert isinstance(readme, str) and "make demo" in readme
    site = "https://django-idempotency.readthedocs.io/en/latest/"

    targets = markdown_targets(readme)

    assert targets
    relative = [t for t in targets if not t.startswith(("https://", "mailto:"))]
    assert not relative, f"relative links break on PyPI: {relative}"
    for target in targets:
        if target.startswith(site):
            page = target.removeprefix(site).split("#")[0].rstrip("/")
            candidates = [f"{page}.md", f"{page}/index.md", page] if page else ["index.md"]
            assert any((ROOT / "docs" / c).is_file() for c in candidates), target
