"""The runtime's pure parts against real tools where they have one (nginx -t), no VMs."""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest

from unicloud.config import Settings
from unicloud.db.models import Host, Instance
from unicloud.router.config import RenderOptions, render
from unicloud.router.table import Backend, RoutingTable, TableError
from unicloud.scheduler.health import (
    HealthSpecError,
    parse_app_json,
    parse_checks_file,
    probe,
    spec_from_manifest,
    Check,
)
from unicloud.scheduler.placement import NoCapacity, Placer


def test_table_round_trips_and_version_follows_content():
    t = RoutingTable({"a": [Backend("127.0.0.1:20001", "web.1", "i-1")], "b": []})
    again = RoutingTable.from_json(t.to_json())
    assert again.apps == t.apps and again.version == t.version
    t2 = RoutingTable({"a": [Backend("127.0.0.1:20002", "web.1", "i-2")], "b": []})
    assert t2.version != t.version


@pytest.mark.parametrize("apps", [
    {"bad name;": []},
    {"a": [Backend("127.0.0.1:1; include /etc/passwd", "web.1")]},
    {"a": [Backend("127.0.0.1:1", "web 1")]},
])
def test_table_rejects_what_could_inject_nginx_directives(apps):
    with pytest.raises(TableError):
        RoutingTable(apps).validate()


@pytest.mark.skipif(not shutil.which("/usr/sbin/nginx"), reason="nginx not installed")
def test_rendered_config_passes_nginx_t(tmp_path):
    settings = Settings(data_dir=tmp_path, router_port=18999)
    (tmp_path / "router" / "logs").mkdir(parents=True)
    (tmp_path / "router" / "temp").mkdir()
    table = RoutingTable({"shop": [Backend("127.0.0.1:20001", "web.1"), Backend("127.0.0.1:20002", "web.2")],
                          "idle": []})
    text = render(settings, table, RenderOptions(temp_dir=tmp_path / "router" / "temp"))
    assert "server_name shop.localhost;" in text and "server 127.0.0.1:20002" in text
    assert "proxy_next_upstream error timeout;" in text and "X-Request-Id $request_id" in text
    conf = tmp_path / "router" / "nginx.conf"
    conf.write_text(text)
    res = subprocess.run(["/usr/sbin/nginx", "-t", "-p", str(tmp_path / "router"), "-c", str(conf)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_checks_file_and_app_json_health_checks():
    spec = parse_checks_file("WAIT=2\nTIMEOUT=3\nATTEMPTS=10\n# comment\n/health ok\n/\n")
    assert spec.initial_delay == 2 and [c.path for c in spec.checks] == ["/health", "/"]
    assert spec.checks[0].content == "ok" and spec.checks[0].timeout == 3 and spec.attempts == 10
    with pytest.raises(HealthSpecError):
        parse_checks_file("health ok\n")
    spec = parse_app_json({"web": [{"type": "startup", "path": "/ready", "content": "yes", "initialDelay": 1}]})
    assert spec.checks[0].path == "/ready" and spec.initial_delay == 1 and spec.source == "app.json"
    with pytest.raises(HealthSpecError):
        parse_app_json({"web": [{"command": ["true"]}]})
    assert spec_from_manifest({}).checks[0].path == "/"
    assert spec_from_manifest({"checks": "/x\n"}).checks[0].path == "/x"
    files = {"app.json": b'{"healthchecks": {"web": [{"path": "/from-app-json", "attempts": 2}]}}'}
    spec = spec_from_manifest({}, files)
    assert spec.checks[0].path == "/from-app-json" and spec.attempts == 2
    assert spec_from_manifest({}, {"CHECKS": b"/from-checks\n"}).checks[0].path == "/from-checks"
    with pytest.raises(HealthSpecError):
        spec_from_manifest({}, {"app.json": b"{nope"})


def test_probe_reports_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ok, answered, detail = probe("127.0.0.1", port, Check(timeout=1))
    assert not ok and not answered and "GET /" in detail and "Refused" in detail


def test_placement_prefers_free_memory_and_never_reuses_a_port():
    hosts = [Host(id=1, name="a", capacity_mb=512), Host(id=2, name="b", capacity_mb=1024)]
    busy = [Instance(id="i-1", host_id=2, host_port=20001, memory_mb=768, state="up")]
    placer = Placer(hosts, busy, ports=range(20000, 20004))
    host, port = placer.place(128)
    assert host.name == "a" and port != 20001
    ports = {port}
    host2, port2 = placer.place(128)
    ports.add(port2)
    assert len(ports) == 2 and 20001 not in ports
    with pytest.raises(NoCapacity):
        placer.place(4096)


def test_access_log_entry_becomes_a_heroku_style_router_line():
    from unicloud.router.access_log import format_line

    entry = {"app": "shop", "method": "GET", "path": "/a?b=1", "host": "shop.localhost", "status": "200",
             "bytes": "12", "rt": "0.004", "uct": "0.001", "urt": "0.003", "up": "127.0.0.1:20001",
             "id": "abc", "fwd": "10.0.0.1", "proto": "HTTP/1.1"}
    line = format_line(entry, {"127.0.0.1:20001": ("shop", "web.1")})
    assert line.startswith("at=info method=GET path=\"/a?b=1\" host=shop.localhost request_id=abc")
    assert "dyno=web.1 connect=1ms service=4ms status=200 bytes=12" in line
    down = format_line(dict(entry, status="503", up="", uct="", urt=""), {})
    assert down.startswith("at=error code=H14")
