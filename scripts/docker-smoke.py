#!/usr/bin/env python3
"""Use a running SynTumor server as a person's program would (standard library only).

`scripts/docker-check.sh` runs it against the Docker container: `/healthz`, `/` and `/docs`
answer; the admin logs in and makes an API token; a CT is uploaded; a segmentation job with the
demo model runs to the end and its label map downloads. Exit status 0 when all of it works.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path


class Client:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers: dict[str, str] = {}
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def request(self, method: str, path: str, *, body=None, content_type=None, params=None):
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None
        headers = dict(self.headers)
        if body is not None and not isinstance(body, bytes):
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        elif body is not None:
            data, headers["Content-Type"] = body, content_type or "application/octet-stream"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self.opener.open(request, timeout=60) as answer:
                return answer.status, answer.read(), answer.headers.get("content-type", "")
        except urllib.error.HTTPError as error:
            return error.code, error.read(), error.headers.get("content-type", "")

    def json(self, method: str, path: str, expected: int = 200, **kwargs) -> dict:
        status, raw, _ = self.request(method, path, **kwargs)
        if status != expected:
            raise SystemExit(f"{method} {path}: {status} (expected {expected}): {raw[:500]!r}")
        return json.loads(raw)


def check(ok: bool, what: str) -> None:
    print(("ok   " if ok else "FAIL ") + what, flush=True)  # noqa: T201
    if not ok:
        raise SystemExit(1)


def wait_until_up(client: Client, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if client.request("GET", "/healthz")[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"no answer from {client.base_url}/healthz in {timeout_s:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--image", type=Path, required=True, help="A CT (.nii.gz) to segment.")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--timeout", type=float, default=900, help="For the segmentation job.")
    args = parser.parse_args()

    client = Client(args.url)
    check(True, f"/healthz answers (after {wait_until_up(client, 180):.1f} s)")
    status, raw, kind = client.request("GET", "/")
    check(status == 200 and "html" in kind and b"<html" in raw.lower(), f"GET / -> {status}")
    status, raw, kind = client.request("GET", "/docs")
    check(status == 200 and b"swagger" in raw.lower(), f"GET /docs -> {status} (Swagger UI)")
    status, raw, _ = client.request("GET", "/openapi.json")
    check(status == 200 and b"/api/v1/segmentations" in raw, f"GET /openapi.json -> {status}")

    login = client.json(
        "POST", "/api/v1/auth/login", body={"username": args.username, "password": args.password}
    )
    client.headers["X-CSRF-Token"] = login["csrf_token"]
    token = client.json("POST", "/api/v1/auth/tokens", 201, body={"name": "docker-check"})
    api = Client(args.url)
    api.headers["Authorization"] = f"Bearer {token['token']}"
    check(api.json("GET", "/api/v1/auth/me")["user"]["role"] == "admin", "admin API token")

    volume = api.json(
        "POST",
        "/api/v1/volumes",
        201,
        params={"name": args.image.name},
        body=args.image.read_bytes(),
    )
    check(volume["kind"] == "image", f"uploaded {args.image.name}: volume {volume['id']}")

    started = time.monotonic()
    segmentation = api.json(
        "POST", "/api/v1/segmentations", 202, body={"image_id": volume["id"], "model": args.model}
    )
    job_id = segmentation["job"]["id"]
    job = segmentation["job"]
    while time.monotonic() - started < args.timeout:
        job = api.json("GET", f"/api/v1/jobs/{job_id}")
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(1)
    seconds = time.monotonic() - started
    check(
        job["status"] == "succeeded",
        f"segmentation job {job_id} ({args.model}) {job['status']} in {seconds:.1f} s"
        + ("" if job["status"] == "succeeded" else f": {json.dumps(job)[:800]}"),
    )
    result = api.json("GET", f"/api/v1/segmentations/{segmentation['id']}")
    status, raw, _ = api.request("GET", result["downloads"]["label"])
    check(status == 200 and raw[:2] == b"\x1f\x8b", f"label map downloads ({len(raw)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
