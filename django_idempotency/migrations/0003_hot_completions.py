"""Completions become HOT updates on PostgreSQL (docs/performance.md):

- no index holds ``state`` any more, so the completion UPDATE changes no
  indexed column (the purge finds abandoned claims through ``expires_at``);
- pages keep 30 % free, so the stored response fits beside its claim and
  PostgreSQL need not move the row (new pages only; a table rewrite such as
  ``VACUUM FULL`` applies it to the old ones).
"""

from typing import Any

from django.db import migrations

FILLFACTOR = 70


def _table(apps: Any) -> str:
    return str(apps.get_model("django_idempotency", "IdempotencyRecord")._meta.db_table)


def leave_room(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        table = schema_editor.quote_name(_table(apps))
        # SHARE UPDATE EXCLUSIVE: reads and writes go on meanwhile.
        schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = {FILLFACTOR})")


def fill_pages(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        table = schema_editor.quote_name(_table(apps))
        schema_editor.execute(f"ALTER TABLE {table} RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [
        ("django_idempotency", "0002_purge_admin_indexes"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="idempotencyrecord",
            name="idempotency_state_locked_idx",
        ),
        migrations.RunPython(leave_room, fill_pages, elidable=False),
    ]
