"""``@idempotent(**options)`` and ``idempotency_options`` are typed: mypy (and
editors) reject a misspelled option or a wrong value where the view is written."""

import os
import subprocess
import sys
import typing
from pathlib import Path

import django_idempotency
from django_idempotency.option_types import IdempotencyOptions
from django_idempotency.options import SPECS

VIEWS = """\
from datetime import timedelta

from rest_framework.decorators import api_view
from rest_framework.generics import CreateAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency import IdempotencyMixin, idempotent


@api_view(["POST"])
@idempotent(required=True, ttl=timedelta(hours=1), header="X-Key", lock_timeout=30)
def good(request: Request) -> Response:
    return Response(status=201)


class GoodTransfers(IdempotencyMixin, CreateAPIView):  # type: ignore[type-arg]
    idempotency_options = {"required": True, "atomic": True}


@api_view(["POST"])
@idempotent(requierd=True)  # line 22
def misspelled(request: Request) -> Response:
    return Response(status=201)


@api_view(["POST"])
@idempotent(ttl="1 day")  # line 28
def wrong_type(request: Request) -> Response:
    return Response(status=201)


class Transfers(IdempotencyMixin, CreateAPIView):  # type: ignore[type-arg]
    idempotency_options = {"tll": 60}  # line 34
"""


def test_the_typed_options_are_the_options() -> None:
    assert set(typing.get_type_hints(IdempotencyOptions)) == {spec.name for spec in SPECS}
    assert IdempotencyOptions.__total__ is False  # every option may be left out


def test_mypy_rejects_a_misspelled_option_and_a_wrong_value(tmp_path: Path) -> None:
    (tmp_path / "views.py").write_text(VIEWS)
    env = dict(os.environ)
    package_root = Path(django_idempotency.__file__).resolve().parent.parent
    if "site-packages" not in package_root.parts:  # an editable install: show mypy the source
        env["MYPYPATH"] = str(package_root)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", os.devnull, "--strict",
         "--follow-imports=silent", "--no-incremental", "--hide-error-context", "views.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    by_line = {int(line.split(":")[1]) for line in errors}
    assert by_line <= {22, 28, 34}, result.stdout  # the good views type-check
    assert 'Unexpected keyword argument "requierd"' in result.stdout
    assert 'did you mean "required"' in result.stdout
    assert any(line.startswith("views.py:28:") for line in errors), result.stdout
    assert 'Extra key "tll" for TypedDict "IdempotencyOptions"' in result.stdout
