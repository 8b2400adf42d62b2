"""The same schema and services on PostgreSQL (`UNICLOUD_DATABASE_URL`), against a real private
server started for the test (initdb in a temp dir, loopback, a free port)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.support import free_port
from unicloud.config import Settings
from unicloud.db.migrate import upgrade
from unicloud.db.models import Image
from unicloud.db.session import session_scope
from unicloud.services import Conflict
from unicloud.services.apps import create_app, get_app
from unicloud.services.releases import create_release, rollback
from unicloud.services.users import ensure_admin


def _pg_bin() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL server binaries are missing: `make test` installs Debian's postgresql package")
    return os.path.dirname(found[-1])


@pytest.fixture(scope="module")
def pg_url():
    bindir = _pg_bin()
    # PostgreSQL refuses to run as root: as root, run it as Debian's `postgres` user in a
    # directory that user owns (pytest's tmp dirs are private to root).
    base = Path(tempfile.mkdtemp(prefix="unicloud-pg-"))
    data = base / "data"
    run_as = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")  # created by Debian's postgresql package
        os.chown(base, pw.pw_uid, pw.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run_as, f"{bindir}/initdb", "-D", str(data), "-A", "trust", "-U", "unicloud"],
                   check=True, capture_output=True)
    port = free_port()
    sock_dir = base
    proc = subprocess.Popen([*run_as, f"{bindir}/postgres", "-D", str(data), "-p", str(port),
                             "-k", str(sock_dir), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"postgresql+psycopg://unicloud@127.0.0.1:{port}/postgres"
    from sqlalchemy import create_engine

    deadline = time.monotonic() + 30
    while True:
        try:
            with create_engine(url).connect() as conn:
                conn.execute(text("select 1"))
            break
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(30)
    shutil.rmtree(base, ignore_errors=True)


def test_migrations_and_release_flow_on_postgres(pg_url, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_url)
    upgrade(settings)
    upgrade(settings)  # idempotent
    with session_scope(settings) as s:
        tables = {r[0] for r in s.execute(text("select tablename from pg_tables where schemaname='public'"))}
        assert {"apps", "releases", "builds", "images", "instances", "hosts", "ssh_keys", "api_tokens"} <= tables
        fks = {r[0] for r in s.execute(text("select conname from pg_constraint where contype='f'"))}
        assert {"fk_apps_current_release", "fk_builds_release"} <= fks
    with session_scope(settings) as s:
        admin = ensure_admin(s, tmp_path / "admin.token")
        app = create_app(s, admin, "pg-app")
        img = Image(app_id=app.id, digest="sha256:" + "a" * 64)
        s.add(img)
        s.flush()
        v1 = create_release(s, app, image=img, config={"A": "1"}, process_types={"web": "x"},
                            description="Deploy", user=admin)
        v1.status = "succeeded"
        app.current_release_id = v1.id
        v2 = create_release(s, app, image=img, config={"A": "2"}, process_types={"web": "x"},
                            description="Set A", user=admin)
        v2.status = "succeeded"
        app.current_release_id = v2.id
        s.flush()
        s.refresh(app)
        v3 = rollback(s, app, admin)
        assert (v3.version, v3.config, v3.description) == (3, {"A": "1"}, "Rollback to v1")
    with session_scope(settings) as s:
        admin = ensure_admin(s, tmp_path / "admin.token")
        with pytest.raises(Conflict):
            create_app(s, admin, "pg-app")
    with session_scope(settings) as s:
        assert get_app(s, "pg-app").config == {"A": "1"}
