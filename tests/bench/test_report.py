"""The report writer and the runner, from given Result objects (no VMs, no builds)."""

from __future__ import annotations

import textwrap

import pytest

from bench import runner
from bench.core import NOT_BUILT, Result, failed, from_dict, not_built
from bench.machine import Machine
from bench.report import render_markdown, table_row, write_chart

MACHINE = Machine(cores=2, memory_gib=23.5, cpu_model="Test CPU", accelerator="TCG (test)",
                  kernel="6.1", date="2026-01-01 00:00 UTC", commit="abc123", load="0.10 0.20 0.30")


def _rows(md: str) -> dict[str, list[str]]:
    """Measured-table rows keyed by metric, split into cells."""
    section = md.split("## Measured in this run", 1)[1].split("## Figures from elsewhere", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| Metric"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows[cells[0]] = cells
    return rows


def test_ok_row_has_medians_ratio_runs_and_spread():
    r = Result("boot to first HTTP 200", "s", [4.0, 5.0, 6.0], "conventional VM", [10.0, 20.0, 30.0],
               "TCG", chart="boot")
    cells = _rows(render_markdown([r], MACHINE, quick=False, elapsed_s=12))["boot to first HTTP 200"]
    assert cells[1:] == ["s", "5", "conventional VM", "20", "0.25×", "3 / 3",
                         "4 / 5 / 6", "10 / 20 / 30", "TCG"]


def test_not_built_row_shows_reason_and_measured_baseline():
    r = not_built("push to live, cold", "s", "needs the whole platform: unicloud up failed",
                  baseline_name="native", baseline=[1.5])
    cells = _rows(render_markdown([r], MACHINE, quick=True, elapsed_s=1))["push to live, cold"]
    assert cells[2] == "**not built**"
    assert cells[4] == "1.50"
    assert cells[5] == "—"  # no ratio without a unicloud side
    assert cells[6] == "0 / 1"
    assert "needs the whole platform: unicloud up failed" in cells[9]


def test_failed_row_and_higher_is_better_marker():
    bad = failed("router throughput", "req/s", RuntimeError("nginx exited"), baseline_name="direct")
    good = Result("push throughput", "MB/s", [50.0], "file://", [100.0], higher_is_better=True)
    md = render_markdown([bad, good], MACHINE, quick=False, elapsed_s=1)
    rows = _rows(md)
    assert rows["router throughput"][2] == "**failed**"
    assert "RuntimeError: nginx exited" in rows["router throughput"][9]
    assert rows["push throughput ↑"][5] == "0.50×"


def test_header_machine_and_reference_table_are_separate():
    md = render_markdown([], MACHINE, quick=True, elapsed_s=3, chart_name="benchmarks.png")
    assert "Test CPU, 2 cores" in md and "TCG (test)" in md and "`abc123`" in md
    measured, elsewhere = md.split("## Figures from elsewhere (not measured here)")
    assert "Firecracker" not in measured
    assert "Firecracker" in elsewhere and "python:3.12-slim" in elsewhere
    assert "![" in measured and "benchmarks.png" in measured


def test_pipes_in_text_are_escaped():
    r = Result("a|b", "s", [1.0], "x|y", [1.0], "n|o")
    assert table_row(r).count(" | ") == 9


def test_result_validation():
    with pytest.raises(ValueError, match="needs a reason"):
        Result("m", "s", status=NOT_BUILT)
    with pytest.raises(ValueError, match="needs unicloud samples"):
        Result("m", "s")
    with pytest.raises(ValueError, match="status must be"):
        Result("m", "s", [1.0], status="estimated")


def test_from_dict_maps_known_keys_and_keeps_extras_as_notes():
    r = from_dict({"metric": "push", "unit": "s", "unicloud": [1, 2], "baseline_name": "file://",
                   "baseline": [1], "notes": "n", "pack_mb": 52.4})
    assert r.unicloud == [1.0, 2.0] and r.ratio == 1.5
    assert r.notes == "n; pack_mb=52.4"
    with pytest.raises(ValueError, match="needs 'metric' and 'unit'"):
        from_dict({"unicloud": [1]})


def test_chart_is_written_for_size_and_boot_rows(tmp_path):
    rows = [Result("image size", "MB", [8.6], "conventional", [366.0], chart="size"),
            not_built("boot", "s", "no image", baseline_name="native", baseline=[0.2], chart="boot")]
    path = tmp_path / "chart.png"
    assert write_chart(rows, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not write_chart([Result("x", "s", [1.0])], tmp_path / "none.png")


def test_discovers_real_benchmark_modules():
    names = runner.discover()
    assert {"bench.bench_vm", "bench.bench_build", "bench.bench_router"} <= set(names)
    assert all(n.rsplit(".", 1)[1].startswith("bench_") for n in names)


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    pkg = tmp_path / "fakebench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helper.py").write_text("def run(quick): raise AssertionError('not a benchmark')\n")
    (pkg / "bench_dicts.py").write_text(textwrap.dedent("""\
        def run(quick):
            return [{"metric": "m", "unit": "s", "unicloud": [1.0 if quick else 2.0],
                     "baseline_name": "b", "baseline": [4.0]}]
        """))
    (pkg / "bench_broken.py").write_text("def run(quick):\n    raise OSError('disk full')\n")
    (pkg / "bench_noimport.py").write_text("import does_not_exist_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    return importlib.import_module("fakebench")


def test_runner_converts_dicts_and_turns_errors_into_failed_rows(fake_package):
    names = runner.discover(fake_package)
    assert names == ["fakebench.bench_broken", "fakebench.bench_dicts", "fakebench.bench_noimport"]
    [ok] = runner.run_module("fakebench.bench_dicts", quick=True)
    assert ok.unicloud == [1.0] and ok.ratio == 0.25
    [broken] = runner.run_module("fakebench.bench_broken", quick=False)
    assert broken.status == "failed" and "OSError: disk full" in broken.reason
    [noimport] = runner.run_module("fakebench.bench_noimport", quick=False)
    assert noimport.status == "failed" and "does_not_exist_anywhere" in noimport.reason


WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:8080/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   120.50ms   30.10ms 1.26s    90.00%
    Req/Sec    28.00      5.00    40.00     70.00%
  Latency Distribution
     50%  110.00ms
     75%  130.00ms
     90%  150.00ms
     99%    1.26s
  140 requests in 5.01s, 20.00KB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:     27.92
Transfer/sec:      3.99KB
"""


def test_parse_wrk_reads_rate_p99_in_ms_and_errors():
    from bench.bench_router import parse_wrk

    assert parse_wrk(WRK_OUTPUT) == {"rps": 27.92, "p50": 110.0, "p99": 1260.0, "errors": 7}
    with pytest.raises(RuntimeError, match="cannot parse wrk output"):
        parse_wrk("connection refused")
