"""Router throughput and tail latency: requests through unicloud's nginx router (config rendered
by `unicloud.router.config.render`, run by `unicloud.router.nginx.Nginx`) to one python-hello VM,
beside the same load sent straight to the VM's forwarded port.

Load comes from `wrk` (fixed duration, fixed connections, loopback only); both sides hit the same
VM in the same run, alternating, so the difference is the router's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench import unicloud_image
from bench.core import Result, failed, not_built
from bench.measure import free_port, wait_for_200

APP = "python-hello"
ROUTE = "hello"
BASE = "direct to the VM's port (no router)"
CONNECTIONS = 8


def log(msg: str) -> None:
    print(f"   [router] {msg}", flush=True)


def run(quick: bool) -> list[Result]:
    metrics = (("router throughput", "req/s", True), ("router latency p50", "ms", False),
               ("router latency p99", "ms", False))
    if not shutil.which("wrk"):
        return [failed(m, u, "wrk is not installed (apt-get install wrk)") for m, u, _ in metrics]
    try:
        from unicloud.router.config import RenderOptions, render
        from unicloud.router.nginx import Nginx
        from unicloud.router.table import Backend, RoutingTable
    except ImportError as e:
        return [not_built(m, u, f"router not available: {e}") for m, u, _ in metrics]
    try:
        image = unicloud_image.build_once(APP)
    except Exception as e:
        return [not_built(m, u, f"no unicloud image: {type(e).__name__}: {e}") for m, u, _ in metrics]

    rounds, seconds = (1, 5) if quick else (3, 10)
    via = {"rps": [], "p50": [], "p99": [], "errors": 0}
    direct = {"rps": [], "p50": [], "p99": [], "errors": 0}
    work = Path(tempfile.mkdtemp(prefix="bench-router-", dir="/tmp"))
    nginx = None
    try:
        vm_port = free_port()
        with unicloud_image.boot(image, vm_port, work) as vm:
            wait_for_200(vm_port, vm.started, timeout=300, proc=vm.popen)
            from unicloud.config import Settings

            settings = Settings(data_dir=work / "data", router_port=free_port())
            settings.router_dir.mkdir(parents=True)
            nginx = Nginx(settings.router_dir)
            nginx.prepare()
            table = RoutingTable({ROUTE: [Backend(f"127.0.0.1:{vm_port}", "web.1")]})
            opts = RenderOptions(workers="1", user=nginx.worker_user(), temp_dir=nginx.temp_dir())
            nginx.install(render(settings, table, opts))
            nginx.start()
            host = f"{ROUTE}.{settings.domain}"
            wait_for_200(settings.router_port, time.monotonic(), timeout=30,
                         headers={"Host": host})
            _wrk(vm_port, [], 2)  # warm-up: TCG translates the serving path once, discarded
            for i in range(rounds):
                order = ((direct, vm_port, []), (via, settings.router_port, ["-H", f"Host: {host}"]))
                for side, port, headers in (order if i % 2 == 0 else order[::-1]):
                    got = _wrk(port, headers, seconds)
                    for key in ("rps", "p50", "p99"):
                        side[key].append(got[key])
                    side["errors"] += got["errors"]
                log(f"round {i + 1}: direct {direct['rps'][-1]:.0f} req/s p99 {direct['p99'][-1]:.1f} ms;"
                    f" router {via['rps'][-1]:.0f} req/s p99 {via['p99'][-1]:.1f} ms")
    except Exception as e:
        return [failed(m, u, e, baseline_name=BASE) for m, u, _ in metrics]
    finally:
        if nginx is not None:
            try:
                nginx.stop()
            except Exception as e:
                log(f"nginx stop: {e}")
        shutil.rmtree(work, ignore_errors=True)
    note = (f"wrk -t1 -c{CONNECTIONS} -d{seconds}s, GET / of python-hello in one TCG VM; "
            f"non-2xx/socket errors: router {via['errors']}, direct {direct['errors']}; wrk's latency "
            "excludes its own connect time, so direct latency leaves out the new TCP connection to "
            "the VM per request (the app closes each one) while through the router nginx's upstream "
            "connect is inside it")
    return [
        Result("router throughput", "req/s", via["rps"], BASE, direct["rps"], note,
               higher_is_better=True),
        Result("router latency p50", "ms", via["p50"], BASE, direct["p50"], note),
        Result("router latency p99", "ms", via["p99"], BASE, direct["p99"], note),
    ]


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk(port: int, headers: list[str], seconds: int) -> dict:
    """Requests/s, p50/p99 latency in ms and errors of one bounded wrk run against loopback."""
    argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", *headers,
            f"http://127.0.0.1:{port}/"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> dict:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if not rps or not p50 or not p99:
        raise RuntimeError(f"cannot parse wrk output: {out[-300:]!r}")
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        errors += int(m[1])
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    return {"rps": float(rps[1]), "p50": float(p50[1]) * _UNITS[p50[2]],
            "p99": float(p99[1]) * _UNITS[p99[2]], "errors": errors}
