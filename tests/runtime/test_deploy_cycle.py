"""End to end through real processes: agent + QEMU (TCG), scheduler, router (nginx), Redis, SQLite.

The tests run in file order on one runtime (module fixture), each starting from the state the
previous one left, so the whole file boots only a handful of VMs.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from tests.runtime.conftest import Load, wait_for
from tests.runtime.runtime_image import WEB_CMD

pytestmark = pytest.mark.slow

TIMES: dict[str, float] = {}


def _deploy(rt, greeting: str) -> tuple[object, float]:
    rid = rt.release(config={"GREETING": greeting}, cmd=WEB_CMD, description=f"Deploy {greeting}")
    t0 = time.monotonic()
    rel = rt.wait_release(rid)
    return rel, time.monotonic() - t0


def test_unknown_app_404_and_app_without_instances_503(runtime):
    status, body, headers = runtime.get(app="nosuchapp")
    assert status == 404 and "No such app" in body, (status, body, runtime.dump())
    assert headers.get("X-Request-Id")
    status, body, _ = runtime.get(app="empty")
    assert status == 503 and "Application unavailable" in body, (status, body, runtime.dump())


def test_deploy_v1(runtime):
    rel, took = _deploy(runtime, "one")
    assert rel.status == "succeeded", (rel.failure_reason, runtime.dump())
    TIMES["deploy v1 (cold boot)"] = took
    status, body, headers = runtime.get()
    assert (status, body) == (200, "hello one"), runtime.dump()
    assert len(headers.get("X-Request-Id", "")) == 32
    assert runtime.body("/env/DYNO") == "web.1"
    assert runtime.body("/env/PORT") == "8080"
    lines = wait_for(lambda: [l for l in runtime.app_logs() if "router[router]" in l and "status=200" in l],
                     10, "router access log lines in the app's log stream")
    assert "dyno=web.1" in lines[-1] and "request_id=" in lines[-1]
    logs = runtime.app_logs()
    assert any("unicloud[scheduler]: Deploying v1" in l for l in logs)
    assert any("unicloud[scheduler]: v1 is live" in l for l in logs)
    # The agent ships console output every half second; the deploy itself may be quicker.
    wait_for(lambda: any("app[web.1]: httpd: listening" in l for l in runtime.app_logs()), 10,
             "the app's console line in its log stream")


def test_deploy_v2_under_load_has_no_failed_requests(runtime):
    with Load(runtime) as load:
        rel, took = _deploy(runtime, "two")
        wait_for(lambda: load.bodies.get("hello two", 0) > 20, 20, "load to reach v2")
        time.sleep(5)  # past the drain grace of v1's instance
    assert rel.status == "succeeded", (rel.failure_reason, runtime.dump())
    TIMES["deploy v2 under load"] = took
    assert load.failures == [], load.failures[:5]
    assert set(load.bodies) == {"hello one", "hello two"}
    assert runtime.body() == "hello two"
    TIMES["requests during deploy"] = load.ok


def test_warm_rollback_only_switches_the_router(runtime):
    warm = [i for i in runtime.instances(("draining",))]
    assert warm, "v1's instance should still be warm"
    with Load(runtime) as load:
        rid = runtime.rollback()
        t0 = time.monotonic()
        rel = runtime.wait_release(rid)
        took = time.monotonic() - t0
        wait_for(lambda: load.bodies.get("hello one", 0) > 20, 20, "load to reach the rolled-back release")
    assert rel.status == "succeeded", rel.failure_reason
    assert rel.description == "Rollback to v1"
    TIMES["warm rollback"] = took
    assert load.failures == [], load.failures[:5]
    assert runtime.body() == "hello one"
    up = runtime.instances(("up",))
    assert [i.id for i in up] == [warm[0].id], "the warm VM was reused, not a new one booted"
    assert any("Reusing warm web.1 of v1 for v3" in l for l in runtime.app_logs())


def test_failing_health_check_keeps_the_old_release_serving(runtime):
    with Load(runtime) as load:
        rid = runtime.release(config={"GREETING": "wrong"}, cmd=WEB_CMD, description="Deploy wrong", image="checks")
        rel = runtime.wait_release(rid)
    assert rel.status == "failed"
    assert "web.1 failed its health check" in rel.failure_reason, rel.failure_reason
    assert "this-content-never-appears" in rel.failure_reason and "hello wrong" in rel.failure_reason
    assert load.failures == [] and set(load.bodies) == {"hello one"}, "the failed release never got traffic"
    logs = runtime.app_logs()
    assert any(f"v{rel.version} failed" in l and "v3 keeps serving" in l for l in logs)
    wait_for(lambda: not [i for i in runtime.instances() if i.release_id == rid], 30, "the failed VM to stop")


def test_release_whose_process_exits_at_boot_fails(runtime):
    rid = runtime.release(config={"GREETING": "broken"}, cmd="/bin/no-such-binary", description="Deploy broken")
    rel = runtime.wait_release(rid)
    assert rel.status == "failed"
    assert "web.1 exited with status" in rel.failure_reason and "health check" in rel.failure_reason
    assert runtime.body() == "hello one"
    assert any("unicloud[web.1]: Process exited with status" in l for l in runtime.app_logs())


def test_cold_rollback_boots_the_kept_image(runtime):
    # v2's instance leaves the warm window (25 s in these tests) and is stopped.
    wait_for(lambda: not runtime.instances(("draining",)), 90, "the warm window to end")
    with Load(runtime) as load:
        rid = runtime.rollback(2)
        t0 = time.monotonic()
        rel = runtime.wait_release(rid)
        took = time.monotonic() - t0
        wait_for(lambda: load.bodies.get("hello two", 0) > 20, 20, "load to reach v2 again")
    assert rel.status == "succeeded", (rel.failure_reason, runtime.dump())
    TIMES["cold rollback"] = took
    assert load.failures == [], load.failures[:5]
    assert runtime.body() == "hello two"


def test_scale_to_two_instances_both_serve(runtime):
    runtime.set_formation(2)
    wait_for(lambda: len(runtime.instances(("up",))) == 2, 90, "two instances up")
    dynos = set()
    for _ in range(40):
        dynos.add(runtime.body("/env/DYNO"))
    assert dynos == {"web.1", "web.2"}
    for inst in runtime.instances(("up",)):
        status, body, _ = runtime.get("/env/DYNO", port=inst.host_port)
        assert (status, body) == (200, f"web.{inst.index}")


def test_kill_9_of_a_vm_is_healed(runtime):
    victim = next(i for i in runtime.instances(("up",)) if i.index == 1)
    os.kill(runtime.vm_pid(victim.id), signal.SIGKILL)
    wait_for(lambda: any(i.id == victim.id and i.restarts == 1 and i.state == "up" for i in runtime.instances()),
             90, "web.1 to be restarted and healthy")
    dynos = {runtime.body("/env/DYNO") for _ in range(40)}
    assert dynos == {"web.1", "web.2"}
    logs = runtime.app_logs()
    assert any("unicloud[web.1]: Process exited with status" in l for l in logs)
    assert any("Restarting web.1" in l for l in logs)


def test_agent_restart_adopts_running_vms(runtime):
    before = {i.id: runtime.vm_pid(i.id) for i in runtime.instances(("up",))}
    runtime.procs["agent"].stop(signal.SIGKILL)
    assert runtime.body() == "hello two"  # VMs serve without their agent
    runtime.start("agent", "unicloud.hypervisor")
    wait_for(lambda: "VM adopted" in "\n".join(runtime.app_logs()), 60, "the new agent to adopt the VMs")
    time.sleep(6)  # past one sweep of the new agent
    after = {i.id: runtime.vm_pid(i.id) for i in runtime.instances(("up",))}
    assert after == before
    assert runtime.body() == "hello two"
    # The adopted VMs are watched again: a crash is still noticed.
    runtime.set_formation(1)
    wait_for(lambda: len(runtime.instances(("up",))) == 1 and not runtime.instances(("draining",)), 60,
             "scale down to one instance")


def test_restarting_scheduler_and_router_keeps_apps_serving(runtime):
    runtime.procs["scheduler"].stop()
    runtime.procs["router"].stop()
    runtime.start("router", "unicloud.router")
    runtime.start("scheduler", "unicloud.scheduler")
    wait_for(lambda: runtime.body() == "hello two", 30, "the app to serve through the new router")
    assert runtime.get(app="nosuchapp")[0] == 404
    print("\nmeasured:", {k: round(v, 2) if isinstance(v, float) else v for k, v in TIMES.items()})


def test_a_second_host_takes_placements_and_its_loss_is_healed(runtime):
    runtime.start("agent-second", "unicloud.hypervisor",
                  {"UNICLOUD_HOST_NAME": "second", "UNICLOUD_HOST_CAPACITY_MB": "4096"})
    wait_for(lambda: runtime.redis().exists("host:second:heartbeat"), 60, "the second agent's heartbeat")
    runtime.set_formation(2)
    wait_for(lambda: len(runtime.instances(("up",))) == 2, 90, "two instances up")
    web2 = next(i for i in runtime.instances(("up",)) if i.index == 2)
    assert runtime.host_name(web2.host_id) == "second", "placed on the host with the most free memory"
    assert {runtime.body("/env/DYNO") for _ in range(40)} == {"web.1", "web.2"}
    # The host dies with its agent; its heartbeat expires and web.2 comes back on the live host.
    runtime.procs["agent-second"].stop(signal.SIGKILL)
    os.kill(runtime.vm_pid(web2.id, "second"), signal.SIGKILL)
    wait_for(lambda: any(i.index == 2 and i.state == "up" and runtime.host_name(i.host_id) == "local"
                         for i in runtime.instances(("up",))), 120, "web.2 to be restarted on host local")
    assert {runtime.body("/env/DYNO") for _ in range(40)} == {"web.1", "web.2"}
    assert any("web.2 lost: host second stopped sending heartbeats" in l for l in runtime.app_logs())
