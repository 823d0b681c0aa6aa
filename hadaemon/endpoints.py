"""What each path answers, from one snapshot of the daemon: nothing here changes anything.

    GET /                    the status page for people (page.py), HTML
    GET /metrics             Prometheus exposition (metrics.py)
    GET /hosts/NAME          the host as `status --json` shows it, JSON; 404 for an unknown host
    GET /hosts/NAME/STATUS   200 while NAME's committed status is STATUS, else 503: for a load
                             balancer's health check (HAProxy option httpchk, keepalived
                             HTTP_GET, a Kubernetes probe); 404 for an unknown host or status

HEAD answers as GET without the body.
"""

import json
from dataclasses import dataclass

from .names import valid_host, valid_status

CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
HTML = "text/html; charset=utf-8"


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes


def text(status, line):
    return Response(status, TEXT, (line + "\n").encode())


def answer(request, snapshot, metrics, page):
    """The Response to request; snapshot: the daemon's latest (None: none yet); metrics and
    page: () -> the exposition bytes, the page's bytes, of that snapshot."""
    if request.method not in ("GET", "HEAD"):
        return text(405, "read-only: GET or HEAD")
    parts = request.path.split("/")[1:]
    if parts == [""]:
        if snapshot is None:
            return text(503, "no data from the daemon yet")
        return Response(200, HTML, page())
    if parts == ["metrics"]:
        if snapshot is None:
            return text(503, "no data from the daemon yet")
        return Response(200, CONTENT_TYPE_METRICS, metrics())
    if len(parts) in (2, 3) and parts[0] == "hosts":
        if snapshot is None:
            return text(503, "no data from the daemon yet")
        return _host(snapshot, *parts[1:])
    return text(404, "not found")


def _host(snapshot, host, status=None):
    entry = snapshot["status"]["hosts"].get(host) if valid_host(host) else None
    if entry is None:
        return text(404, f"no such host: {host!r}")
    if status is None:
        return Response(200, JSON, json.dumps(dict(entry, host=host), sort_keys=True).encode())
    if not valid_status(status) or status not in snapshot["statuses"]:
        return text(404, f"no such status: {status!r}")
    if entry["status"] == status:
        return text(200, f"{host} is {status}")
    return text(503, f"{host} is {entry['status']}, not {status}")
