"""Benchmark of the web server: latency under 50 concurrent clients, and memory during a big upload.

1. Starts a real server (``tests.live_server.LiveServer``: uvicorn in a child process, SQLite,
   embedded worker idle) on a temporary data folder and uploads a few phantom CTs.
2. Runs ``--clients`` concurrent clients (asyncio + httpx, one connection each) for
   ``--seconds``: each picks at random a volume page (HTML), the volume list (JSON), one
   volume (JSON) or a NIfTI download, and the latencies are recorded per kind of request.
3. Uploads an uncompressed float32 NIfTI of ``--upload-mb`` MB (written to disk first, streamed
   from the file) while sampling the server process's resident memory (psutil, every 20 ms).

Prints Markdown tables: p50/p95/max latency and throughput per request kind, then the upload's
time and the server's RSS before, at the peak and after.

Usage::

    .venv/bin/python benchmarks/server.py [--clients 50] [--seconds 30] [--upload-mb 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.live_server import LiveServer  # noqa: E402

MiB = 1024 * 1024
SEED_SHAPE = (128, 128, 64)
SEED_SPACING = (2.5, 2.5, 2.5)


def seed_volumes(server: LiveServer, client: httpx.Client, count: int, folder: Path) -> list[int]:
    """Upload ``count`` phantom CTs; returns their volume ids."""
    from syntumor_core.phantom import make_phantom
    from syntumor_core.volume import save_nifti

    ids = []
    for seed in range(count):
        phantom = make_phantom(seed=200 + seed, shape=SEED_SHAPE, spacing=SEED_SPACING)
        path = save_nifti(phantom.image, folder / f"seed-{seed}.nii.gz")
        answer = client.post(
            "/api/v1/volumes", params={"name": path.name}, content=path.read_bytes()
        )
        answer.raise_for_status()
        ids.append(answer.json()["id"])
    return ids


def request_for(kind: str, volume_id: int) -> str:
    return {
        "page /volumes/{id}": f"/volumes/{volume_id}",
        "GET /api/v1/volumes": "/api/v1/volumes?limit=50",
        "GET /api/v1/volumes/{id}": f"/api/v1/volumes/{volume_id}",
        "download NIfTI": f"/api/v1/volumes/{volume_id}/file",
    }[kind]


KINDS = ("page /volumes/{id}", "GET /api/v1/volumes", "GET /api/v1/volumes/{id}", "download NIfTI")


async def one_client(url, cookies, headers, ids, stop_at, results, errors) -> None:
    async with httpx.AsyncClient(
        base_url=url, cookies=cookies, headers=headers, timeout=60
    ) as client:
        while time.monotonic() < stop_at:
            kind = random.choice(KINDS)
            started = time.perf_counter()
            try:
                answer = await client.get(request_for(kind, random.choice(ids)))
                ok = answer.status_code == 200
                size = len(answer.content)
            except httpx.HTTPError:
                ok, size = False, 0
            elapsed = time.perf_counter() - started
            if ok:
                results[kind].append((elapsed, size))
            else:
                errors[kind] += 1


async def run_load(server, session_client, ids, clients: int, seconds: float):
    results: dict[str, list[tuple[float, int]]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    stop_at = time.monotonic() + seconds
    cookies = dict(session_client.cookies)
    headers = {"X-CSRF-Token": session_client.headers["X-CSRF-Token"]}
    await asyncio.gather(
        *(
            one_client(server.url, cookies, headers, ids, stop_at, results, errors)
            for _ in range(clients)
        )
    )
    return results, errors


def percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q)) if values else float("nan")


def print_load_table(results, errors, seconds: float, clients: int) -> None:
    print(f"\n### {clients} concurrent clients for {seconds:.0f} s\n")
    print("| request | count | errors | p50 ms | p95 ms | max ms | req/s | MB/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    everything = []
    for kind in KINDS:
        rows = results.get(kind, [])
        times = [t for t, _ in rows]
        everything.extend(rows)
        megabytes = sum(size for _, size in rows) / MiB
        print(
            f"| {kind} | {len(rows)} | {errors.get(kind, 0)} | {percentile_ms(times, 50):.0f} | "
            f"{percentile_ms(times, 95):.0f} | {max(times, default=0) * 1000:.0f} | "
            f"{len(rows) / seconds:.1f} | {megabytes / seconds:.1f} |"
        )
    times = [t for t, _ in everything]
    megabytes = sum(size for _, size in everything) / MiB
    print(
        f"| **all** | {len(everything)} | {sum(errors.values())} | {percentile_ms(times, 50):.0f} | "
        f"{percentile_ms(times, 95):.0f} | {max(times, default=0) * 1000:.0f} | "
        f"{len(everything) / seconds:.1f} | {megabytes / seconds:.1f} |"
    )


def write_big_nifti(path: Path, megabytes: int) -> tuple[int, ...]:
    """An uncompressed float32 NIfTI of about ``megabytes`` MB, written slab by slab."""
    columns = rows = 512
    slices = max(8, int(megabytes * MiB / (columns * rows * 4)))
    header = nib.Nifti1Header()
    header.set_data_shape((columns, rows, slices))
    header.set_data_dtype(np.float32)
    header.set_zooms((0.7, 0.7, 1.0))
    affine = np.diag([0.7, 0.7, 1.0, 1.0])
    header.set_sform(affine, code=1)
    header.set_qform(affine, code=1)
    header["vox_offset"] = 352
    rng = np.random.default_rng(0)
    with path.open("wb") as out:
        out.write(header.binaryblock)
        out.write(b"\0" * (352 - len(header.binaryblock)))
        for _ in range(slices):
            out.write(
                (40.0 + 15.0 * rng.standard_normal((rows, columns))).astype(np.float32).tobytes()
            )
    return columns, rows, slices


class RssSampler(threading.Thread):
    """Samples a process's resident memory every ``interval_s`` until stopped."""

    def __init__(self, pid: int, interval_s: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.interval_s = interval_s
        self.samples: list[int] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append(self.process.memory_info().rss)
            self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def measure_upload(server: LiveServer, client: httpx.Client, path: Path) -> dict:
    rss = psutil.Process(server.process.pid).memory_info().rss
    sampler = RssSampler(server.process.pid)
    sampler.start()
    started = time.perf_counter()
    with path.open("rb") as stream:
        answer = client.post(
            "/api/v1/volumes",
            params={"name": "big.nii"},
            content=stream,
            headers={"Content-Length": str(path.stat().st_size)},
            timeout=600,
        )
    seconds = time.perf_counter() - started
    time.sleep(0.5)
    sampler.stop()
    answer.raise_for_status()
    return {
        "status": answer.status_code,
        "shape": answer.json()["shape"],
        "seconds": seconds,
        "size_mb": path.stat().st_size / MiB,
        "rss_before_mb": rss / MiB,
        "rss_peak_mb": max(sampler.samples) / MiB,
        "rss_after_mb": sampler.samples[-1] / MiB,
        "samples": len(sampler.samples),
    }


def print_upload_table(upload: dict) -> None:
    print(f"\n### Upload of a {upload['size_mb']:.0f} MiB uncompressed NIfTI (float32)\n")
    print("| shape | status | seconds | MiB/s | server RSS before | peak | after | peak increase |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    increase = upload["rss_peak_mb"] - upload["rss_before_mb"]
    print(
        f"| {'×'.join(str(n) for n in upload['shape'])} | {upload['status']} | "
        f"{upload['seconds']:.1f} | {upload['size_mb'] / upload['seconds']:.0f} | "
        f"{upload['rss_before_mb']:.0f} MiB | {upload['rss_peak_mb']:.0f} MiB | "
        f"{upload['rss_after_mb']:.0f} MiB | **{increase:+.0f} MiB** |"
    )
    print(f"\n({upload['samples']} RSS samples, every 20 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--volumes", type=int, default=4, help="phantom CTs to seed")
    parser.add_argument("--upload-mb", type=int, default=300)
    args = parser.parse_args()

    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{psutil.virtual_memory().total / 1024**3:.0f} GiB RAM, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    with tempfile.TemporaryDirectory(prefix="syntumor-bench-") as temp:
        folder = Path(temp)
        server = LiveServer(folder / "data").start()
        try:
            name, password = server.create_user("researcher")
            session_client = server.login(name, password)
            ids = seed_volumes(server, session_client, args.volumes, folder)
            sizes = [session_client.get(f"/api/v1/volumes/{i}").json()["size_bytes"] for i in ids]
            print(
                f"Seeded {len(ids)} phantom CTs {SEED_SHAPE} (.nii.gz, {np.mean(sizes) / MiB:.1f} MiB each)"
            )
            results, errors = asyncio.run(
                run_load(server, session_client, ids, args.clients, args.seconds)
            )
            print_load_table(results, errors, args.seconds, args.clients)

            big = folder / "big.nii"
            write_big_nifti(big, args.upload_mb)
            upload = measure_upload(server, session_client, big)
            print_upload_table(upload)
            big.unlink()
        finally:
            server.close()


if __name__ == "__main__":
    main()
