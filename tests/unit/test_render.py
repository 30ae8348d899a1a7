"""render_init and plan rendering: readable SQL, no secrets, identifiers quoted."""

from __future__ import annotations

from tsaccess.demo import company_policy
from tsaccess.plan.compose import render_init


def test_render_init_files_have_no_literal_passwords(tmp_path):
    files = render_init(company_policy(), tmp_path)
    text = "".join(f.read_text() for f in files)
    assert "SCRAM-SHA-256$" not in text
    assert "\\getenv tsaccess_pw_" in text
    assert 'REVOKE CONNECT, TEMPORARY ON DATABASE "company_db" FROM PUBLIC' in text
    assert 'GRANT SELECT ON TABLE "public"."activity_audit" TO "auditors"' in text
    assert "SECURITY DEFINER SET search_path = pg_catalog, pg_temp" in text
    assert "hostnossl all all all reject" in text
    audit = (tmp_path / "03-audit.sql").read_text()
    assert "$tsaccess$" in audit  # dollar-quoted bodies: readable
    assert 'REVOKE EXECUTE ON FUNCTION "public"."tsaccess_audit_stmt"() FROM PUBLIC' in audit


def test_render_without_timescaledb_makes_plain_tables(tmp_path):
    text = "".join(
        f.read_text() for f in render_init(company_policy(), tmp_path, timescaledb=False)
    )
    assert "create_hypertable" not in text
    assert "CREATE EXTENSION" not in text


def test_compose_starts_the_image_with_the_one_entrypoint_script(tmp_path):
    """init/docker-compose.yml and the Docker backend share _docker.entrypoint_script."""
    from tsaccess.plan.initdir import entrypoint_script

    compose = next(
        f for f in render_init(company_policy(), tmp_path) if f.name == "docker-compose.yml"
    ).read_text()
    for line in entrypoint_script().splitlines():
        assert f"        {line}\n" in compose
    assert "hostnossl all all all reject" in compose
    assert "ssl_min_protocol_version=TLSv1.2" in compose
