"""What a benchmark returns: one metric, measured for unicloud and for a baseline in the same run.

A metric whose unicloud side does not exist yet is reported as "not built" with the reason, and
one whose measurement broke as "failed" with the error: the report never shows an estimate.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

OK = "ok"
NOT_BUILT = "not built"
FAILED = "failed"
STATUSES = (OK, NOT_BUILT, FAILED)


@dataclass
class Result:
    metric: str
    unit: str
    unicloud: list[float] = field(default_factory=list)
    baseline_name: str = ""
    baseline: list[float] = field(default_factory=list)
    notes: str = ""
    status: str = OK
    reason: str = ""  # why it is "not built" or "failed"
    higher_is_better: bool = False
    chart: str = ""  # "size" | "boot" | "" : which chart panel shows it

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.status != OK and not self.reason:
            raise ValueError(f"{self.metric}: a {self.status!r} result needs a reason")
        if self.status == OK and not self.unicloud:
            raise ValueError(f"{self.metric}: an 'ok' result needs unicloud samples")
        self.unicloud = [float(x) for x in self.unicloud]
        self.baseline = [float(x) for x in self.baseline]

    @property
    def ratio(self) -> float | None:
        """median(unicloud) / median(baseline); None when either side has no samples."""
        if not self.unicloud or not self.baseline:
            return None
        base = statistics.median(self.baseline)
        if base == 0:
            return None
        return statistics.median(self.unicloud) / base


def not_built(metric: str, unit: str, reason: str, *, baseline_name: str = "",
              baseline: list[float] | None = None, notes: str = "", chart: str = "") -> Result:
    """The unicloud side does not exist yet; the baseline may still have been measured."""
    return Result(metric, unit, [], baseline_name, list(baseline or []), notes, NOT_BUILT, reason,
                  chart=chart)


def failed(metric: str, unit: str, error: BaseException | str, *, baseline_name: str = "",
           baseline: list[float] | None = None, unicloud: list[float] | None = None) -> Result:
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return Result(metric, unit, list(unicloud or []), baseline_name, list(baseline or []), "",
                  FAILED, reason.strip().splitlines()[-1][:300] if reason.strip() else "failed")


def summary(samples: list[float]) -> tuple[float, float, float] | None:
    """(min, median, max), or None without samples."""
    if not samples:
        return None
    return min(samples), statistics.median(samples), max(samples)


def from_dict(d: dict) -> Result:
    """Accept a plain dict from a benchmark module that does not import this file.

    Known keys are Result's field names; `name` is accepted for `metric`, and `unicloud_samples`/
    `baseline_samples` for the sample lists."""
    aliases = {"name": "metric", "unicloud_samples": "unicloud", "baseline_samples": "baseline",
               "baseline_label": "baseline_name", "error": "reason"}
    known = set(Result.__dataclass_fields__)
    kwargs, extra = {}, []
    for key, value in d.items():
        key = aliases.get(key, key)
        if key in known:
            kwargs[key] = value
        else:
            extra.append(f"{key}={value}")
    if "metric" not in kwargs or "unit" not in kwargs:
        raise ValueError(f"benchmark result dict needs 'metric' and 'unit': {d!r}")
    if extra:
        kwargs["notes"] = "; ".join(filter(None, [kwargs.get("notes", ""), *extra]))
    return Result(**kwargs)
