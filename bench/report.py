"""Render results as docs/benchmarks.md (one table of measurements, one of outside figures)
and docs/benchmarks.png (size and boot charts)."""

from __future__ import annotations

from pathlib import Path

from bench.core import FAILED, NOT_BUILT, OK, Result, summary
from bench.machine import Machine
from bench.reference import REFERENCE_FIGURES


def fmt(x: float | None) -> str:
    if x is None:
        return "—"
    ax = abs(x)
    if float(x).is_integer() and ax < 1000:
        return f"{x:.0f}"
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    if ax == 0:
        return "0"
    return f"{x:.3g}"


def _spread(samples: list[float]) -> str:
    s = summary(samples)
    return "—" if s is None else " / ".join(fmt(v) for v in s)


def _median(samples: list[float]) -> str:
    s = summary(samples)
    return "—" if s is None else fmt(s[1])


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def ratio_text(r: Result) -> str:
    ratio = r.ratio
    if ratio is None:
        return "—"
    return f"{ratio:.2f}×" if ratio >= 0.1 else f"{ratio:.3f}×"


def table_row(r: Result) -> str:
    if r.status == OK:
        uni = _median(r.unicloud)
    else:
        uni = f"**{r.status}**" + (f" ({_median(r.unicloud)})" if r.unicloud else "")
    notes = r.notes
    if r.status in (NOT_BUILT, FAILED):
        notes = "; ".join(filter(None, [r.reason, r.notes]))
    cells = [
        r.metric + (" ↑" if r.higher_is_better else ""),
        r.unit,
        uni,
        r.baseline_name or "—",
        _median(r.baseline),
        ratio_text(r),
        f"{len(r.unicloud)} / {len(r.baseline)}",
        _spread(r.unicloud),
        _spread(r.baseline),
        notes,
    ]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


BASELINES = [
    "- **Conventional Debian VM**: `debootstrap --variant=minbase` bookworm with systemd, udev, "
    "python3 and `linux-image-cloud-amd64`; the same `tests/apps/python-hello/app.py` as a systemd "
    "service; the root packed by `mke2fs -d` into ext4 and stored as qcow2; booted with Debian's own "
    "vmlinuz + initrd from that root in the same QEMU and accelerator as unicloud "
    "(`-M q35`, virtio-blk, virtio-net, user-mode net with hostfwd). Built once per machine "
    "and cached under `<cache_dir>/bench/conventional/`.",
    "- **Native process**: the same `app.py` run by the host's `/usr/bin/python3` (Debian's 3.11, "
    "the interpreter both images carry), timed from exec to first HTTP 200: the floor for boot time.",
    "- **Direct to the VM**: the same `wrk` load sent to the VM's forwarded port, bypassing the router.",
    "- **`git push file://`**: git's own receive-pack, no network, same repository, same run.",
    "- **Native restart**: `git push file://`, `git archive` into a directory and a plain stop/start of "
    "the native process; its failed requests come from the same load loop as unicloud's.",
    "- **Cold build**: the same app built by the same `run_build` with an empty per-app cache.",
]

HEADER = ("| Metric | Unit | unicloud (median) | Baseline | baseline (median) | Ratio | Runs (u / b) "
          "| unicloud min / median / max | baseline min / median / max | Notes |")


def render_markdown(results: list[Result], machine: Machine, *, quick: bool, elapsed_s: float,
                    chart_name: str | None = "benchmarks.png") -> str:
    lines = [
        "# Benchmarks",
        "",
        "Produced by `make bench` (`python -m bench" + (" --quick" if quick else "") + "`). Every "
        "number in the first table was measured in this run, on this machine, side by side with "
        "its baseline; a metric whose unicloud side does not exist yet says **not built** and why. "
        "Nothing is estimated.",
        "",
        "## Machine",
        "",
        f"- Date: {machine.date}",
        f"- Commit: `{machine.commit}`",
        f"- CPU: {machine.cpu_model}, {machine.cores} cores; memory {machine.memory_gib:.1f} GiB; "
        f"kernel {machine.kernel}",
        f"- VM accelerator: {machine.accelerator}",
        f"- Load average at start: {machine.load} (the machine is shared; timings are noisy)",
        f"- Mode: {'quick (one round per metric)' if quick else 'full'}; suite took {elapsed_s:.0f} s",
        "",
        "## Measured in this run",
        "",
        "Ratio = median(unicloud) ÷ median(baseline). Lower is better unless the metric is marked ↑.",
        "",
        HEADER,
        "|" + "---|" * 10,
        *(table_row(r) for r in results),
        "",
    ]
    if chart_name:
        lines += [f"![Image size and boot time, unicloud vs baselines]({chart_name})", ""]
    lines += ["## How the baselines are made", "", *BASELINES, ""]
    lines += [
        "## Figures from elsewhere (not measured here)",
        "",
        "Published numbers for context only; they come from other hardware and other setups.",
        "",
        "| System | Figure | Source |",
        "|---|---|---|",
        *(f"| {_cell(a)} | {_cell(b)} | {_cell(c)} |" for a, b, c in REFERENCE_FIGURES),
        "",
    ]
    return "\n".join(lines)


def write_chart(results: list[Result], path: Path) -> bool:
    """Grouped bars of the 'size' and 'boot' metrics; False when there is nothing to draw."""
    panels = [(kind, [r for r in results if r.chart == kind and (r.unicloud or r.baseline)])
              for kind in ("size", "boot")]
    panels = [(k, rs) for k, rs in panels if rs]
    if not panels:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.2 + 1.1 * sum(len(rs) for _, rs in panels)))
    if len(panels) == 1:
        axes = [axes]
    for ax, (kind, rs) in zip(axes, panels):
        labels = [f"{r.metric}\n(baseline: {r.baseline_name or 'none'})" for r in rs]
        uni = [summary(r.unicloud)[1] if r.unicloud else 0 for r in rs]
        base = [summary(r.baseline)[1] if r.baseline else 0 for r in rs]
        ys = range(len(rs))
        h = 0.38
        b1 = ax.barh([y - h / 2 for y in ys], uni, h, label="unicloud", color="#2b7bb9")
        b2 = ax.barh([y + h / 2 for y in ys], base, h, label="baseline", color="#b0b0b0")
        for bars, vals, rr in ((b1, uni, rs), (b2, base, rs)):
            for bar, v in zip(bars, vals):
                if v:
                    ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {fmt(v)}",
                            va="center", fontsize=8)
        for y, r in zip(ys, rs):
            if not r.unicloud:
                ax.text(0, y - h / 2, f" {r.status}", va="center", fontsize=8, color="#a00")
        ax.set_yticks(list(ys), labels, fontsize=8)
        ax.invert_yaxis()
        unit = rs[0].unit
        positive = [v for v in uni + base if v > 0]
        if positive and max(positive) / min(positive) > 50:
            ax.set_xscale("log")
        ax.set_xlabel(f"{'size' if kind == 'size' else 'time to first HTTP 200'} ({unit}), median")
        ax.set_title("Image size" if kind == "size" else "Boot to first HTTP 200", fontsize=10)
        ax.legend(fontsize=8, loc="best")
        if positive:
            ax.set_xlim(right=max(positive) * (3 if ax.get_xscale() == "log" else 1.15))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
