"""Small JSON-over-HTTP calls to the servers cvops talks to directly (MLflow's auth API, the ZenML server,
Label Studio)."""

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


def http_json(
    method: str,
    url: str,
    body: Any = None,
    auth: tuple[str, str] | None = None,
    token: str | None = None,
    form: dict[str, str] | None = None,
    authorization: str | None = None,
) -> tuple[int, Any]:
    """One JSON request; (status, decoded body). `token` is a bearer token; `authorization` a whole
    Authorization header. Network failures raise OSError."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    if form is not None:
        data, headers["Content-Type"] = urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded"
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if authorization is not None:
        headers["Authorization"] = authorization
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw or b"{}")
    except ValueError:
        return status, {"message": raw.decode(errors="replace")[:300]}
