"""App names are DNS labels because they become `NAME.<domain>` in the router."""

from __future__ import annotations

import re
import secrets

from unicloud.services import ServiceError

APP_NAME_RULE = r"^[a-z][a-z0-9-]{1,29}$"
_APP_NAME = re.compile(APP_NAME_RULE)

_ADJECTIVES = ["calm", "brisk", "quiet", "bold", "lucid", "nimble", "sunny", "amber", "crisp", "gentle",
               "rapid", "silver", "hidden", "polar", "misty", "vivid", "frosty", "golden", "steady", "wild"]
_NOUNS = ["river", "meadow", "falcon", "harbor", "summit", "cedar", "comet", "canyon", "glacier", "lagoon",
          "otter", "prairie", "sparrow", "tundra", "willow", "reef", "delta", "ember", "forest", "island"]


def validate_app_name(name: str) -> str:
    if not isinstance(name, str) or not _APP_NAME.match(name) or name.endswith("-"):
        raise ServiceError(
            f"invalid app name {name!r}: names must match {APP_NAME_RULE} "
            "(start with a lowercase letter; 2-30 lowercase letters, digits or dashes; no trailing dash)",
            status=422,
        )
    return name


def generate_app_name() -> str:
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{secrets.randbelow(9000) + 1000}"
