#!/usr/bin/env python
"""Run the sample project: ``python manage.py runserver`` (or ``make demo`` from the repo root)."""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    # The settings module is ``sample_project.settings``: the repository root
    # must be importable, wherever this script is started from.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sample_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
