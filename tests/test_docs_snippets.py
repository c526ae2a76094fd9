"""The getting-started pages work when pasted into a new project.

The code blocks of the installation page, the quickstart and the ViewSets
recipe are read from the Markdown (see ``tests/docs_snippets`` for their
annotations) and run in order in an empty directory: ``startproject``,
settings, models, views, URLconf, ``migrate``, a user and a token, then the
``curl`` requests, whose answers must have the documented status, headers and
body. A snippet that no longer works fails this test at its line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .docs_snippets import Block, Project, annotation_problems, blocks_of

PAGES = ("installation.md", "quickstart.md", "recipes/viewsets.md")


def _all_blocks() -> list[Block]:
    return [block for page in PAGES for block in blocks_of(page)]


def test_every_block_says_how_the_test_uses_it() -> None:
    assert annotation_problems(_all_blocks()) == []


@pytest.mark.processes
def test_the_pages_build_a_project_that_answers_as_documented(tmp_path: Path) -> None:
    project = Project(tmp_path)
    for block in _all_blocks():
        project.apply(block)
    project.flush()

    # The walk-through really ran: its requests were sent and answered.
    assert project.served_from is not None
    assert project.answers_checked >= 10, project.log
    assert project.outputs_checked >= 2, project.log
