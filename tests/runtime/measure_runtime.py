"""Measure the runtime on this machine (not a test: numbers vary; run it by hand).

    .venv/bin/python -m tests.runtime.measure_runtime [--rounds 3]

Reports, with a request loop running through the router the whole time:
deploy time (pending release → live), warm rollback, cold rollback, failed requests in each;
then router vs direct-to-VM throughput with `wrk` (or a Python loop if wrk is missing).
"""

from __future__ import annotations

import argparse
import signal
import sys
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.runtime.conftest import Load, running_runtime, wait_for
from tests.runtime.runtime_image import WEB_CMD, build_test_image


def timed_release(rt, make) -> tuple[float, str, Load]:
    with Load(rt) as load:
        rid = make()
        t0 = time.monotonic()
        rel = rt.wait_release(rid)
        took = time.monotonic() - t0
        time.sleep(1)
    if rel.status != "succeeded":
        raise SystemExit(f"release failed: {rel.failure_reason}")
    return took, rel.description, load


def throughput(url_host: str, port: int, seconds: int = 10, connections: int = 8) -> str:
    if shutil.which("wrk"):
        out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-H", f"Host: {url_host}",
                              f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
        lat = re.search(r"Latency\s+(\S+)", out)
        errs = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
        return f"{rps.group(1) if rps else '?'} req/s, mean latency {lat.group(1) if lat else '?'}" + \
               (f", errors: {errs.group(0)}" if errs else "")
    import http.client
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/", headers={"Host": url_host})
        c.getresponse().read()
        c.close()
        n += 1
    return f"{n / seconds:.0f} req/s (Python loop, 1 connection)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the cleanup of running_runtime
    with tempfile.TemporaryDirectory(prefix="uc-measure-") as tmp:
        tmp = Path(tmp)
        (tmp / "work").mkdir()
        digest, manifest = build_test_image(tmp / "work", tmp / "store")
        images = {"default": (tmp / "store" / digest, digest, manifest)}
        with running_runtime(tmp / "rt", images, UNICLOUD_WARM_WINDOW="120", UNICLOUD_DRAIN_GRACE="10",
                             UNICLOUD_STOP_GRACE="10") as rt:
            results: dict[str, list[tuple[float, int, int]]] = {"deploy": [], "warm rollback": [], "cold rollback": []}
            timed_release(rt, lambda: rt.release(config={"GREETING": "v0"}, cmd=WEB_CMD, description="first"))
            for r in range(args.rounds):
                took, _, load = timed_release(rt, lambda: rt.release(config={"GREETING": f"a{r}"}, cmd=WEB_CMD,
                                                                       description=f"deploy a{r}"))
                results["deploy"].append((took, len(load.failures), load.ok))
                took, _, load = timed_release(rt, lambda: rt.rollback())
                results["warm rollback"].append((took, len(load.failures), load.ok))
            # Cold: every instance outside the warm window is stopped; roll back to a release
            # whose instances are gone.
            for r in range(min(2, args.rounds)):
                wait_for(lambda: not rt.instances(("draining",)), 300, "warm instances to stop", every=1)
                took, _, load = timed_release(rt, lambda: rt.rollback(2 + 2 * r))
                results["cold rollback"].append((took, len(load.failures), load.ok))
            for name, rows in results.items():
                times = [t for t, _, _ in rows]
                print(f"{name:14s}: median {statistics.median(times):.2f}s  min {min(times):.2f}s  max {max(times):.2f}s"
                      f"  failed requests {sum(f for _, f, _ in rows)} of {sum(f + ok for _, f, ok in rows)}")
            up = rt.instances(("up",))[0]
            host = f"{rt.app_name}.{rt.settings.domain}"
            print("router :", throughput(host, rt.settings.router_port))
            print("direct :", throughput(host, up.host_port))


if __name__ == "__main__":
    main()
