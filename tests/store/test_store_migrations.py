"""Schema migrations: idempotent, recorded, serialised between concurrent upgraders."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from kubexp import settings
from kubexp.store import db, migrations


def test_upgrade_applies_everything_once_and_records_it(database_url: str) -> None:
    assert migrations.applied(database_url) == []
    first = migrations.upgrade(database_url)
    assert first[0] == "0001_experiment_store" and "views/summaries" in first
    assert migrations.upgrade(database_url) == []
    assert migrations.applied(database_url) == first
    with db.connect(database_url) as conn:
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        views = {row[0] for row in conn.execute("SELECT viewname FROM pg_views WHERE schemaname = 'public'")}
    assert {"scenario", "experiment", "attempt", "provenance", "load_second", "metric_series", "metric_point",
            "platform_event", "artifact", "cluster_lock", "selection", "schema_migration"} <= tables
    assert {"experiment_summary", "scenario_summary"} <= views


def test_concurrent_upgraders_queue_instead_of_racing(database_url: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrations.upgrade(database_url))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(len(applied) for applied in results) == [0, 0, len(migrations.applied(database_url))]


def test_edited_migration_is_refused_and_changed_views_are_reapplied(database_url: str, tmp_path: Path) -> None:
    sql_dir = tmp_path / "sql"
    shutil.copytree(settings.SQL_DIR, sql_dir)
    migrations.upgrade(database_url, sql_dir)
    views = sql_dir / "views" / "summaries.sql"
    views.write_text(views.read_text() + "\n-- a comment changes the checksum\n")
    assert migrations.upgrade(database_url, sql_dir) == ["views/summaries"]
    first = sql_dir / "0001_experiment_store.sql"
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(migrations.MigrationError, match="0001_experiment_store.sql changed after it was applied"):
        migrations.upgrade(database_url, sql_dir)


def test_badly_named_or_duplicate_migrations_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("")
    (tmp_path / "0001_b.sql").write_text("")
    with pytest.raises(migrations.MigrationError, match="share the number 0001"):
        migrations.migration_files(tmp_path)
    (tmp_path / "0001_b.sql").rename(tmp_path / "two.sql")
    with pytest.raises(migrations.MigrationError, match="NNNN_lowercase_name.sql"):
        migrations.migration_files(tmp_path)


def test_sqlalchemy_urls_are_accepted() -> None:
    assert db.libpq_url("postgresql+psycopg2://u:p@h:1/d") == "postgresql://u:p@h:1/d"
    assert db.libpq_url("postgresql://u@h/d") == "postgresql://u@h/d"


def test_unreachable_database_names_the_fix_without_the_password() -> None:
    with pytest.raises(db.StoreError) as raised:
        db.connect("postgresql://kubexp:secret@127.0.0.1:1/kubexp")
    assert "KUBEXP_DATABASE_URL" in str(raised.value) and "secret" not in str(raised.value)
