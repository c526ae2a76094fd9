"""Lay out the test suite without the package beside it, for tox's wheel run.

Creates DEST with symlinks to everything of the checkout except
``django_idempotency/``, so that ``import django_idempotency`` can only find
the installed wheel while the tests, the sample project and the docs they
read are the checkout's.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {"django_idempotency", ".tox", ".venv", ".git", "build", "dist"}


def main(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for entry in ROOT.iterdir():
        if entry.name in SKIP or entry.name.endswith(".egg-info"):
            continue
        link = dest / entry.name
        if not link.is_symlink():
            link.symlink_to(entry)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
