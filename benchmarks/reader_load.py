"""Many readers answering at once against a real server: latency, and not one answer lost.

Starts a SynTumor server (uvicorn, embedded worker) on SQLite or PostgreSQL, creates a ready
study of ``--answers`` cases, invites ``--readers`` readers and lets every reader, each in an
own thread and all at once, open the study, then for every case fetch the case and submit an
answer. A share of the answers (``--resend``) is sent twice at the same moment from two threads
(a double click, a retry after a lost response). Afterwards the database must hold exactly one
answer per (reader, case, reading), each equal to what the reader sent.

    .venv/bin/python benchmarks/reader_load.py                      # SQLite
    .venv/bin/python benchmarks/reader_load.py --postgres           # a throw-away PostgreSQL 15
    .venv/bin/python benchmarks/reader_load.py --database-url postgresql+psycopg://u@host/db

``--postgres`` runs ``initdb`` and ``pg_ctl`` from /usr/lib/postgresql/15/bin in a temporary
folder (as the ``postgres`` user when run as root) on a free port, and removes it afterwards.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.app.studies_support import owner, readings_of, ready_study_without_images  # noqa: E402
from tests.live_server import LiveServer, free_port  # noqa: E402

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@contextmanager
def throwaway_postgres():
    """A PostgreSQL cluster in a temporary folder; yields its SQLAlchemy URL (None if impossible)."""
    if not (PG_BIN / "initdb").exists():
        print(f"PostgreSQL skipped: no initdb under {PG_BIN}", file=sys.stderr)
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="syntumor-pg-"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", free_port()
    try:
        subprocess.run([*as_user, str(PG_BIN / "initdb"), "-D", str(data), "-U", "bench",
                        "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)  # fmt: skip
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on"
        subprocess.run([*as_user, str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                        str(folder / "log"), "-w", "start"], check=True, capture_output=True)  # fmt: skip
    except (subprocess.CalledProcessError, OSError) as error:
        print(f"PostgreSQL skipped: could not start a cluster ({error})", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)
        yield None
        return
    try:
        yield f"postgresql+psycopg://bench@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


class Recorder:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, list[int]] = defaultdict(list)
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def call(self, kind: str, client, method: str, url: str, **kwargs):
        started = time.perf_counter()
        try:
            answer = client.request(method, url, **kwargs)
        except Exception as error:  # a lost response: counted, and the reader retries once
            with self.lock:
                self.errors.append(f"{kind}: {error!r}")
            return None
        elapsed = time.perf_counter() - started
        with self.lock:
            self.latency[kind].append(elapsed)
            self.status[kind].append(answer.status_code)
        return answer


def _reader_session(server, token, readings, rng_seed, resend, record, start, sent):
    rng = np.random.default_rng(rng_seed)
    client = server.client(headers={"Authorization": f"Bearer {token}"}, timeout=120)
    start.wait()
    record.call("GET study", client, "GET", "/api/v1/reader")
    for reading in readings:
        record.call("GET case", client, "GET", f"/api/v1/reader/cases/{reading['token']}")
        answer = str(rng.choice(["real", "synthetic", "unsure"]))
        body = {"answer": answer, "confidence": None if answer == "unsure" else int(rng.integers(1, 6)),
                "time_ms": int(rng.integers(1000, 30000))}  # fmt: skip
        sent[(reading["token"])] = body
        url = f"/api/v1/reader/cases/{reading['token']}/answer"
        if rng.random() < resend:  # the same answer twice at the same moment
            twin = threading.Thread(target=record.call, args=("PUT answer", client, "PUT", url),
                                    kwargs={"json": body})  # fmt: skip
            twin.start()
            result = record.call("PUT answer", client, "PUT", url, json=body)
            twin.join()
        else:
            result = record.call("PUT answer", client, "PUT", url, json=body)
        if result is None:  # retry a lost response: harmless, the server answers 200
            record.call("PUT answer", client, "PUT", url, json=body)
    client.close()


def _check_stored(server, sent: dict, readings_by_token: dict) -> tuple[int, int, int]:
    """(lost, duplicated, different) answers, read back from the database."""
    from sqlalchemy import func, select

    from app.db.study_tables import StudyAnswer, StudyReading

    with server.session() as session:
        duplicated = session.scalar(
            select(func.count()).select_from(
                select(StudyAnswer.reader_id)
                .group_by(StudyAnswer.reader_id, StudyAnswer.case_id, StudyAnswer.reading)
                .having(func.count() > 1)
                .subquery()
            )
        )
        rows = session.execute(
            select(StudyReading.token, StudyAnswer.answer, StudyAnswer.confidence).join(
                StudyAnswer,
                (StudyAnswer.reader_id == StudyReading.reader_id)
                & (StudyAnswer.case_id == StudyReading.case_id)
                & (StudyAnswer.reading == StudyReading.reading),
            )
        ).all()
    stored = {token: (answer, confidence) for token, answer, confidence in rows}
    lost = sum(token not in stored for token in sent)
    different = sum(
        token in stored and stored[token] != (body["answer"], body["confidence"])
        for token, body in sent.items()
    )
    return lost, duplicated, different


def run(
    database_url: str | None, label: str, n_readers: int, n_answers: int, resend: float
) -> dict:
    if database_url:
        os.environ["SYNTUMOR_TEST_DATABASE_URL"] = database_url
    else:
        os.environ.pop("SYNTUMOR_TEST_DATABASE_URL", None)
    with tempfile.TemporaryDirectory(prefix="syntumor-load-") as folder:
        server = LiveServer(Path(folder)).start()
        try:
            study_owner = owner(server, "admin")
            study_id = ready_study_without_images(server, study_owner.username, n_answers // 2,
                                                  n_answers - n_answers // 2)  # fmt: skip
            readers = []
            for index in range(n_readers):
                made = study_owner.client.post(f"/api/v1/studies/{study_id}/readers",
                                               json={"label": f"reader {index + 1}"}).json()  # fmt: skip
                readers.append((made["token"], readings_of(server, made["reader"]["id"])))
            record, sent, start = Recorder(), {}, threading.Barrier(n_readers + 1)
            threads = [threading.Thread(target=_reader_session,
                                        args=(server, token, readings, index, resend, record, start, sent))
                       for index, (token, readings) in enumerate(readers)]  # fmt: skip
            for thread in threads:
                thread.start()
            start.wait()
            began = time.perf_counter()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - began
            lost, duplicated, different = _check_stored(server, sent, {})
        finally:
            server.close()
    puts = record.status["PUT answer"]
    return {
        "database": label, "readers": n_readers, "answers": len(sent),
        "requests": sum(len(v) for v in record.latency.values()), "wall_s": wall,
        "latency": {kind: values for kind, values in record.latency.items()},
        "created": puts.count(201), "repeated": puts.count(200),
        "refused": sum(code >= 400 for code in puts), "errors": len(record.errors),
        "lost": lost, "duplicated": duplicated, "different": different,
    }  # fmt: skip


def _ms(values: list[float], q: float) -> str:
    return f"{1000 * float(np.quantile(values, q)):.0f}" if values else "–"


def print_table(results: list[dict]) -> None:
    print(
        "| database | readers × answers | requests | wall s | req/s | GET case p50 / p95 ms "
        "| PUT answer p50 / p95 / max ms | 201 / 200 / 4xx-5xx | transport errors | lost | duplicated | changed |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        get, put = r["latency"].get("GET case", []), r["latency"].get("PUT answer", [])
        print(f"| {r['database']} | {r['readers']} × {r['answers'] // max(r['readers'], 1)} | {r['requests']} "
              f"| {r['wall_s']:.1f} | {r['requests'] / r['wall_s']:.0f} | {_ms(get, .5)} / {_ms(get, .95)} "
              f"| {_ms(put, .5)} / {_ms(put, .95)} / {_ms(put, 1.0)} | {r['created']} / {r['repeated']} / {r['refused']} "
              f"| {r['errors']} | {r['lost']} | {r['duplicated']} | {r['different']} |")  # fmt: skip
    for r in results:
        all_latency = [v for values in r["latency"].values() for v in values]
        print(f"\n{r['database']}: all requests p50 {_ms(all_latency, .5)} ms, p95 {_ms(all_latency, .95)} ms, "
              f"mean {1000 * statistics.fmean(all_latency):.0f} ms")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readers", type=int, default=50, help="readers answering at once")
    parser.add_argument("--answers", type=int, default=50, help="cases (answers) per reader")
    parser.add_argument(
        "--resend", type=float, default=0.1, help="share of answers sent twice at once"
    )
    parser.add_argument(
        "--database-url", help="a PostgreSQL server URL (a fresh database is made in it)"
    )
    parser.add_argument(
        "--postgres", action="store_true", help="also run on a throw-away PostgreSQL 15"
    )
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite run")
    args = parser.parse_args()
    if args.readers < 1 or args.answers < 2 or not 0 <= args.resend <= 1:
        parser.error("--readers >= 1, --answers >= 2 and --resend in [0, 1]")
    results = []
    if not args.no_sqlite:
        results.append(run(None, "SQLite (WAL)", args.readers, args.answers, args.resend))
    if args.database_url:
        results.append(
            run(args.database_url, "PostgreSQL", args.readers, args.answers, args.resend)
        )
    if args.postgres:
        with throwaway_postgres() as url:
            if url:
                results.append(run(url, "PostgreSQL 15", args.readers, args.answers, args.resend))
    print_table(results)
    failed = [r for r in results if r["lost"] or r["duplicated"] or r["different"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
