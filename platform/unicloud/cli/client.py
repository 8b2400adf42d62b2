"""A thin httpx client for the REST API that turns every failure into one readable CliError."""

from __future__ import annotations

import json
from typing import Any, Iterator
from urllib.parse import quote

import httpx

from unicloud.cli.credentials import CliError, Credentials, resolve

TIMEOUT = httpx.Timeout(60.0, connect=5.0)


def q(segment: str) -> str:
    """Quote one path segment (fingerprints contain '/' and '+')."""
    return quote(str(segment), safe="")


class ApiError(CliError):
    """An error answer from the API; `status` lets callers retry server-side failures."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def error_message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])
    if isinstance(body, dict) and body.get("detail"):
        return str(body["detail"])
    text = resp.text.strip().splitlines()
    return f"HTTP {resp.status_code} from the API" + (f": {text[0][:200]}" if text else "")


class Api:
    def __init__(self, creds: Credentials | None = None):
        self.creds = creds or resolve()
        self.http = httpx.Client(base_url=self.creds.api_url, timeout=TIMEOUT,
                                 headers={"Authorization": f"Bearer {self.creds.token}",
                                          "User-Agent": "unicloud-cli"})

    def _unreachable(self, exc: Exception) -> CliError:
        return CliError(f"cannot reach the unicloud API at {self.creds.api_url} ({exc}); is `unicloud up` running?")

    def request(self, method: str, path: str, *, json_body: Any = None, params: dict | None = None) -> Any:
        kwargs: dict = {"params": {k: v for k, v in (params or {}).items() if v is not None}}
        if json_body is not None:
            kwargs["json"] = json_body
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if resp.status_code >= 400:
            raise ApiError(error_message(resp), resp.status_code)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise CliError(f"the API answered {method} {path} with something that is not JSON") from None

    def get(self, path: str, **params) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json_body=body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json_body=body)

    def delete(self, path: str, **params) -> Any:
        return self.request("DELETE", path, params=params)

    def download(self, path: str, dest) -> tuple[int, str | None]:
        """Stream a file to `dest`; returns (bytes, sha256 the server announced)."""
        try:
            with self.http.stream("GET", path) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise ApiError(error_message(resp), resp.status_code)
                size = 0
                with open(dest, "wb") as fh:
                    for chunk in resp.iter_bytes(1 << 20):
                        fh.write(chunk)
                        size += len(chunk)
                return size, resp.headers.get("x-content-sha256")
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def events(self, path: str, params: dict, last_event_id: str | None = None) -> Iterator[tuple[str | None, str, str]]:
        """Yield (id, event, data) from a server-sent-event stream until the server closes it."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(30.0, connect=5.0)  # the server sends a keep-alive every few seconds
        with self.http.stream("GET", path, params={k: v for k, v in params.items() if v is not None},
                              headers=headers, timeout=timeout) as resp:
            if resp.status_code >= 400:
                resp.read()
                raise ApiError(error_message(resp), resp.status_code)
            event_id, event, data = None, "message", []
            for line in resp.iter_lines():
                if line == "":
                    if data:
                        yield event_id, event, "\n".join(data)
                    event, data = "message", []
                    continue
                if line.startswith(":"):
                    continue
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "id":
                    event_id = value
                elif field == "event":
                    event = value
                elif field == "data":
                    data.append(value)


def parse_event_data(data: str) -> dict:
    try:
        out = json.loads(data)
    except ValueError:
        return {"text": data}
    return out if isinstance(out, dict) else {"text": str(out)}
