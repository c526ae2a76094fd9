"""The claim function, version 2: it reads before it writes (issue 13).

Version 1 (migration 0004) tries the INSERT first and reads the existing row
only when the INSERT did nothing, so every duplicate (replay, 422, 409) paid
for a speculative insertion before its SELECT. Version 2 reads first: a
duplicate is one index look-up, and a first request adds a look-up that
misses (measured in ``benchmarks/claim_statement.py``: replays about 50 µs
faster, first requests within the noise). Races are handled as in version
1: a row another request inserts after our read makes our INSERT do nothing,
and the read after it (a new statement, so a new snapshot) returns that row.

Version 1 stays in the database: a process of the previous release calls it
during a rolling deploy, and migrating back to 0004 only drops version 2.
The text here is fixed for good; a later change goes into ``..._v3``.
"""

from django.db import migrations

SIGNATURE = (
    "django_idempotency_claim_v2(text, text, text, text, text, text, text, text, text, text, "
    "double precision, double precision, text[])"
)

_EXISTING = """
    RETURN QUERY
      SELECT r.id, FALSE, r.state::text, r.fingerprint = ANY (p_fingerprints),
          r.token::text, r.request_id::text, r.response_status::integer,
          r.response_headers,
          CASE WHEN r.fingerprint = ANY (p_fingerprints) THEN r.response_body END,
          r.expires_at <= statement_timestamp(), r.locked_until <= statement_timestamp(),
          r.expires_at, statement_timestamp()
      FROM django_idempotency_idempotencyrecord r
      WHERE r.lookup_hash = p_hash;
"""

CREATE = f"""
CREATE OR REPLACE FUNCTION django_idempotency_claim_v2(
  p_hash text, p_key text, p_scope text, p_endpoint text, p_method text, p_path text,
  p_fingerprint text, p_state text, p_token text, p_request_id text,
  p_lock_seconds double precision, p_ttl_seconds double precision, p_fingerprints text[])
RETURNS TABLE (o_id bigint, o_claimed boolean, o_state text, o_same boolean, o_token text,
  o_request_id text, o_status integer, o_headers text, o_body bytea, o_expired boolean,
  o_abandoned boolean, o_expires_at timestamptz, o_now timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  {_EXISTING}
  IF FOUND THEN
    RETURN;
  END IF;
  RETURN QUERY
    INSERT INTO django_idempotency_idempotencyrecord AS r (lookup_hash, key, scope, endpoint,
        method, path, fingerprint, state, token, request_id, response_headers, created_at,
        locked_until, expires_at)
    VALUES (p_hash, p_key, p_scope, p_endpoint, p_method, p_path, p_fingerprint, p_state,
        p_token, p_request_id, '', statement_timestamp(),
        statement_timestamp() + p_lock_seconds * interval '1 second',
        statement_timestamp() + p_ttl_seconds * interval '1 second')
    ON CONFLICT (lookup_hash) DO NOTHING
    RETURNING r.id, TRUE, NULL::text, FALSE, NULL::text, NULL::text, NULL::integer,
        NULL::text, NULL::bytea, FALSE, FALSE, r.expires_at, NULL::timestamptz;
  IF NOT FOUND THEN
    -- Inserted by another request since our first read: a new statement
    -- sees it with a new snapshot.
    {_EXISTING}
  END IF;
END
$$
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")


class Migration(migrations.Migration):
    dependencies = [
        ("django_idempotency", "0004_claim_function"),
    ]

    operations = [
        migrations.RunPython(create, drop, elidable=False),
    ]
