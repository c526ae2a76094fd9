"""Let the completion UPDATE be a HOT update on PostgreSQL (issue 13).

The completion changes ``state``; while an index holds that column,
PostgreSQL writes a new entry into every index of the table for each
completion. The ``(state, locked_until)`` index served only the purge's
search for abandoned claims, which now go with the expired records, found
through ``expires_at``.

No fill factor is set: leaving room in each page made the remaining 6 % of
completions HOT too, but the table grew to 1.8x (fillfactor 90) to 2.3x (70)
its size in benchmarks/physical.py for 4 % less WAL (docs/performance.md).
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("django_idempotency", "0002_purge_admin_indexes"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="idempotencyrecord",
            name="idempotency_state_locked_idx",
        ),
    ]
