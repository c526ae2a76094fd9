"""The claim as a PL/pgSQL function, on PostgreSQL only (issue 13).

A statement sent by the client is parsed and planned on every call; the
statements inside a PL/pgSQL function are planned once per server
connection and then reused, which holds behind a transaction pooler too
(no prepared statement is left on a connection the pooler hands on). The
SELECT of an existing row also runs with its own snapshot, after the
INSERT's, so it sees a row committed while the INSERT waited on it.

The engine calls the function when it exists and otherwise sends the same
INSERT and SELECT as one statement (``store.py``): a process of the previous
release keeps working while this migration runs, and a database created
without migrations works too. Other backends get nothing from this migration.

The function's text is fixed here for good: a later change of the claim goes
into a new function (``..._v2``) created by a new migration.
"""

from django.db import migrations

SIGNATURE = (
    "django_idempotency_claim_v1(text, text, text, text, text, text, text, text, text, text, "
    "double precision, double precision, text[])"
)

CREATE = """
CREATE OR REPLACE FUNCTION django_idempotency_claim_v1(
  p_hash text, p_key text, p_scope text, p_endpoint text, p_method text, p_path text,
  p_fingerprint text, p_state text, p_token text, p_request_id text,
  p_lock_seconds double precision, p_ttl_seconds double precision, p_fingerprints text[])
RETURNS TABLE (o_id bigint, o_claimed boolean, o_state text, o_same boolean, o_token text,
  o_request_id text, o_status integer, o_headers text, o_body bytea, o_expired boolean,
  o_abandoned boolean, o_expires_at timestamptz, o_now timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
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
    RETURN QUERY
      SELECT r.id, FALSE, r.state::text, r.fingerprint = ANY (p_fingerprints),
          r.token::text, r.request_id::text, r.response_status::integer,
          r.response_headers,
          CASE WHEN r.fingerprint = ANY (p_fingerprints) THEN r.response_body END,
          r.expires_at <= statement_timestamp(), r.locked_until <= statement_timestamp(),
          r.expires_at, statement_timestamp()
      FROM django_idempotency_idempotencyrecord r
      WHERE r.lookup_hash = p_hash;
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
        ("django_idempotency", "0003_remove_state_locked_index"),
    ]

    operations = [
        migrations.RunPython(create, drop, elidable=False),
    ]
