"""Schema migrations: idempotent, recorded, serialised between concurrent upgraders."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest
from store_fixtures import make_suite

from kubexp import settings
from kubexp.store import attempts, db, migrations, suites


def test_upgrade_applies_everything_once_and_records_it(database_url: str) -> None:
    assert migrations.applied(database_url) == []
    first = migrations.upgrade(database_url)
    assert first[0] == "0001_experiment_store" and "views/summaries" in first
    assert migrations.upgrade(database_url) == []
    assert migrations.applied(database_url) == first
    with db.connect(database_url) as conn:
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        views = {row[0] for row in conn.execute("SELECT viewname FROM pg_views WHERE schemaname = 'public'")}
    assert {"scenario", "experiment", "attempt", "provenance", "load_second", "metric_series",
            "platform_event", "artifact", "cluster_lock", "selection", "schema_migration"} <= tables
    assert {"experiment_summary", "scenario_summary", "metric_point"} <= views


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


@pytest.mark.parametrize("url", [
    "postgresql://kubexp@127.0.0.1:1/kubexp?password=hunter2",
    "postgresql://kubexp@127.0.0.1:1/kubexp?sslmode=disable&password=hunter2",
    "host=127.0.0.1 port=1 user=kubexp password=hunter2 dbname=kubexp",
    "host=127.0.0.1 port=1 user=kubexp password='hun ter2' dbname=kubexp",
    "host=127.0.0.1 port=1 password = hunter2",
    "host=127.0.0.1 port=1 password='hunter2",  # malformed: psycopg refuses to parse it
])
def test_every_form_of_the_password_is_masked_in_errors(url: str) -> None:
    with pytest.raises(db.StoreError) as raised:
        db.connect(url)
    assert "hunter2" not in str(raised.value) and "ter2" not in str(raised.value)
    assert "***" in str(raised.value) and "KUBEXP_DATABASE_URL" in str(raised.value)


def test_points_stored_as_rows_move_into_arrays_unchanged(database_url: str, tmp_path: Path) -> None:
    sql_dir = tmp_path / "sql"
    shutil.copytree(settings.SQL_DIR, sql_dir)
    (sql_dir / "0002_metric_points_as_arrays.sql").unlink()
    migrations.upgrade(database_url, sql_dir)
    with db.connect(database_url) as conn:
        suites.sync_suite(conn, make_suite(tmp_path))
        experiment = conn.execute("SELECT id FROM experiment LIMIT 1").fetchone()[0]
        attempt = attempts.open_attempt(conn, str(experiment), "run", 1, "host")
        ids = [conn.execute("INSERT INTO metric_series (experiment_id, attempt_id, source, name, points) "
                            "VALUES (%s, %s, 'p', %s, %s) RETURNING id", (experiment, attempt, name, n)).fetchone()[0]
               for name, n in (("cpu", 3), ("idle", 0))]
        for t, value in ((2, 0.5), (0, 1.5), (1, -2.0)):  # stored out of order
            conn.execute("INSERT INTO metric_point (series_id, t, value) VALUES (%s, %s, %s)", (ids[0], t, value))
    assert migrations.upgrade(database_url) == ["0002_metric_points_as_arrays", "views/summaries"]
    with db.connect(database_url) as conn:
        rows = conn.execute("SELECT name, points, t, value FROM metric_series ORDER BY name").fetchall()
        assert rows == [("cpu", 3, [0, 1, 2], [1.5, -2.0, 0.5]), ("idle", 0, [], [])]
        assert conn.execute("SELECT t, value FROM metric_point WHERE series_id = %s ORDER BY t",
                            (ids[0],)).fetchall() == [(0, 1.5), (1, -2.0), (2, 0.5)]
        for t, value in (([0, 0], [1.0, 2.0]), ([1, 0], [1.0, 2.0]), ([0, 1], [1.0]), ([0, 1], [1.0, None])):
            with pytest.raises(psycopg.errors.CheckViolation), conn.transaction():
                conn.execute("UPDATE metric_series SET t = %s, value = %s, points = 2 WHERE id = %s",
                             (t, value, ids[0]))
