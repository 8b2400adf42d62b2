"""One place that turns settings into a Redis connection (the private server or REDIS_URL)."""

from __future__ import annotations

from functools import lru_cache

import redis

from unicloud.config import Settings


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, health_check_interval=30,
                                socket_connect_timeout=5, retry_on_timeout=True)


def get_redis(settings: Settings | None = None) -> redis.Redis:
    settings = settings or Settings.from_env()
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set: start the platform with `unicloud up` or point REDIS_URL at a Redis server")
    return _client(settings.redis_url)
