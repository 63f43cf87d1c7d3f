"""The batch ingest path's per-event Python, in one process, without I/O: CPU time (or instructions) per event.

Each request body holds 500 events of ``bench/post_event.lua``'s call traffic (four events per call, a new
caller and a new interaction per call, so identity and ids are not cached away). Per body it runs what the
gateway runs for a ``POST /v1/events`` batch, minus the network and the stores: decode and check the
events, prepare them (identity, ids), the group's event and interaction rows and their JSON parameters,
the committed results and published messages, the publisher's script arguments packed by redis-py, and the
JSON response. PostgreSQL's answers are taken as "no customer matched".

    python bench/ingest_path.py                      # µs of CPU per event, median of --repeat
    python bench/ingest_path.py --instructions       # instructions per event under callgrind (repeatable)

``--instructions`` runs this script twice under ``valgrind --tool=callgrind`` (installed from Debian),
once with no body processed, and prints the difference per event: on a shared, noisy machine CPU time
varies by half from minute to minute, instruction counts repeat to 0.2 %. It takes about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from gateway.clock import SystemClock  # noqa: E402
from gateway.events import store  # noqa: E402
from gateway.events.ingest import Ingestor, Prepared, _link_from  # noqa: E402
from gateway.events.model import check_event, decode_event, decode_plain  # noqa: E402
from gateway.events.partitions import PartitionManager  # noqa: E402
from gateway.events.publish import Publisher  # noqa: E402
from gateway.identity import IdentityHasher  # noqa: E402
from gateway.metrics import create_metrics  # noqa: E402
from gateway.server import GC_YOUNG_THRESHOLD  # noqa: E402
from gateway.settings import load_settings  # noqa: E402

BATCH = 500
TYPES = ("call.offered", "call.ringing", "call.answered", "call.ended")


def event_json(run: str, n: int) -> bytes:
    """Event ``n`` of bench/post_event.lua's traffic (the same JSON, the same caller numbering)."""
    call = n // 4
    caller = (call * 7919) % 1_000_000
    return (
        '{"source":"cti.bench","source_event_id":"%s-0-%d","channel":"voice","type":"%s",'
        '"occurred_at":"2026-11-28T09:41:07.120+08:00","interaction_id":"%s-0-%d","queue":"vip",'
        '"direction":"inbound","agent_id":"8001","identifiers":[{"kind":"phone","value":"+86 139 %04d %04d"}],'
        '"attributes":{"ivr_path":["1","3"]}}'
        % (run, n, TYPES[n % 4], run, call, caller // 100, caller % 10000)
    ).encode()


class Path_:
    """The gateway's objects, wired without a pool or a Redis connection."""

    def __init__(self) -> None:
        settings = load_settings(env={})
        clock = SystemClock()
        self.ingestor = Ingestor(None, IdentityHasher(settings.identity_hmac_keys), clock,  # type: ignore[arg-type]
                                 create_metrics(), None, PartitionManager(None, clock))  # type: ignore[arg-type]
        redis = Redis()  # never connected: only its connection's command packing is used
        self.publisher = Publisher(redis, create_metrics())
        connection = redis.connection_pool.make_connection()
        self.packed: list[Any] = []

        async def pack_only(keys: list[Any], args: list[Any]) -> None:
            self.packed.append(connection.pack_command("EVALSHA", "0" * 40, len(keys), *keys, *args))

        self.publisher._script = pack_only  # type: ignore[assignment,method-assign]
        self.loop = asyncio.new_event_loop()

    def request(self, body: bytes) -> bytes:
        ing = self.ingestor
        parsed = decode_plain(body)
        assert isinstance(parsed, list)
        events = [decode_event(o, f"[{i}].") if isinstance(o, msgspec.Raw) else check_event(o, f"[{i}].")
                  for i, o in enumerate(parsed)]
        now = dt.datetime.now(dt.UTC)
        prepared = [ing.prepare(e, now, True) for e in events]
        unique: dict[tuple[str, str], Prepared] = {}
        for p in prepared:
            assert isinstance(p, Prepared)
            unique.setdefault(p.key, p)
        ordered = sorted(unique.values(), key=lambda p: p.key)
        _link_from({}, ordered)
        store.rows_json(ing._event_rows(ordered))
        store.rows_json(ing._interaction_rows(ordered))
        committed = ing._committed(unique, ordered, {}, {})
        messages = [ing._message(p, p.customer_id, p.identification) for p in ordered]
        self.loop.run_until_complete(self.publisher._publish(messages))
        self.packed.clear()
        results = [committed.results[p.key].as_dict() for p in ordered]
        return msgspec.json.encode({"results": results})


def as_the_server_collects() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def make_bodies(rep: int, count: int) -> list[bytes]:
    """Repetition ``rep``'s ``count`` request bodies: events no other repetition has (new callers, new calls)."""
    return [b"[" + b",".join(event_json(f"r{rep}", rep * 1_000_000 + i * BATCH + j) for j in range(BATCH)) + b"]"
            for i in range(count)]


def measure(bodies: int, repeat: int) -> list[float]:
    """µs of CPU per event for each repetition (new bodies, so new callers, each time)."""
    path = Path_()
    as_the_server_collects()
    out = []
    for rep in range(repeat):
        batch = make_bodies(rep, bodies)
        started = time.process_time()
        for body in batch:
            path.request(body)
        out.append((time.process_time() - started) / (bodies * BATCH) * 1e6)
    return out


def instructions(bodies: int) -> float:
    valgrind = shutil.which("valgrind")
    if not valgrind:
        raise SystemExit("--instructions needs valgrind: apt-get install -y valgrind")

    def run(n: int) -> int:
        out = subprocess.run(
            [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
             "--bodies", str(n), "--repeat", "2", "--generate", str(bodies)],
            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        for line in out.stderr.splitlines():
            if "Collected" in line:
                return int(line.split()[-1])
        raise RuntimeError("no instruction count in callgrind's output")

    return (run(bodies) - run(0)) / (bodies * BATCH * 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bodies", type=int, default=40, help="500-event bodies per repetition")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--instructions", action="store_true", help="count instructions under callgrind instead")
    p.add_argument("--generate", type=int, default=0, help=argparse.SUPPRESS)  # bodies made whatever --bodies
    args = p.parse_args()
    if args.instructions:
        print(f"batch path: {instructions(10):,.0f} instructions per event (callgrind)")
        return
    if args.generate:  # a callgrind run: make the same bodies with or without processing them
        path = Path_()
        as_the_server_collects()
        for rep in range(args.repeat):
            for body in make_bodies(rep, args.generate)[:args.bodies]:
                path.request(body)
        return
    times = measure(args.bodies, args.repeat)
    print(f"batch path: {statistics.median(times):.2f} µs of CPU per event, median of {len(times)} "
          f"(runs: {', '.join(f'{t:.2f}' for t in times)})")


if __name__ == "__main__":
    main()
