"""The README quick start's figures: batch sizes and latency at 50 concurrent callers against a 5 ms upstream,
for each batching knob the quick start names.

    .venv/bin/python bench/quickstart_knobs.py [--requests 3000] [--callers 50] [--delay-ms 5]

For each variant of `examples/quickstart.yaml` it starts `meshbatch example-upstream` and `meshbatch run` on
free ports and sends the requests with one `curl -Z --parallel-max CALLERS` (each of the CALLERS connections
sends its next request when its answer arrives: a closed loop, as services calling each other do), then with
separate `curl` processes (`xargs -P CALLERS`, each a new connection: how fast curl starts decides the load).
It prints a markdown table: requests/s, the mean batch size (items / upstream calls), the share of requests
sent alone, and the callers' p50/p99 latency from curl's own timing. Run it on a quiet machine; the README
gives one run's figures with the machine's core count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import testbed.proxy  # noqa: E402
from testbed.fleet import free_port  # noqa: E402
from testbed.proxy import MeshbatchProcess  # noqa: E402

testbed.proxy.START_TIMEOUT = 120.0  # a busy machine starts slowly; the figures are taken after the start

VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("quick start (max_in_flight 4, min_wait_ms 0)", {}),
    ("min_wait_ms: 2", {"min_wait_ms": 2}),
    ("max_in_flight: 1", {"max_in_flight": 1}),
    ("max_in_flight: 1, min_wait_ms: 2", {"max_in_flight": 1, "min_wait_ms": 2}),
    ("max_in_flight: 16", {"max_in_flight": 16}),
]


def _config(base: dict[str, Any], upstream: int, batch: dict[str, Any], folder: Path) -> Path:
    config = json.loads(json.dumps(base))
    config["admin"]["listen"] = "127.0.0.1:0"
    config["listeners"][0]["listen"] = "127.0.0.1:0"
    config["listeners"][0]["routes"][0]["batch"].update(batch)
    config["clusters"][0]["endpoints"] = [f"127.0.0.1:{upstream}"]
    path = folder / "mesh.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _stats(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as answer:
        result: dict[str, int] = json.load(answer)
    return result


def _parallel(url: str, requests: int, callers: int) -> list[str]:
    command = ["curl", "-s", "--no-progress-meter", "-Z", "--parallel-max", str(callers), "-D", "-", "-o",
               "/dev/null", "-w", "time=%{time_total}\\n", "-H", "content-type: application/json", "-d",
               '{"sku":"A1"}', f"{url}?n=[1-{requests}]"]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=300).stdout.splitlines()


def _processes(url: str, requests: int, callers: int) -> list[str]:
    script = (f"seq {requests} | xargs -P {callers} -I{{}} curl -s -o /dev/null -D - -w 'time=%{{time_total}}\\n' "
              f"-H 'content-type: application/json' -d '{{\"sku\":\"A{{}}\"}}' {url}")
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True,
                          timeout=300).stdout.splitlines()


def _figures(lines: list[str], seconds: float, calls: int) -> dict[str, float]:
    sizes = [int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("x-meshbatch-batch-size:")]
    times = sorted(float(line[5:]) * 1000 for line in lines if line.startswith("time="))
    items = len(sizes)
    return {"rps": items / seconds, "mean_batch": items / max(calls, 1),
            "alone": sum(1 for s in sizes if s == 1) / max(items, 1),
            "p50_ms": times[len(times) // 2], "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))]}


def measure(requests: int, callers: int, delay_ms: float) -> list[tuple[str, str, dict[str, float]]]:
    base = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    results = []
    for name, batch in VARIANTS:
        port = free_port()
        upstream = subprocess.Popen([sys.executable, "-m", "meshbatch", "example-upstream", "--listen",
                                     f"127.0.0.1:{port}", "--delay-ms", str(delay_ms)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with tempfile.TemporaryDirectory() as folder:
                proxy = MeshbatchProcess(_config(base, port, batch, Path(folder)))
                try:
                    url = proxy.url("ingress", "/orders")
                    _parallel(url, 200, callers)  # warm: connections, the upstream's first calls
                    for how, send in (("curl -Z (one process)", _parallel), ("xargs -P (a curl each)", _processes)):
                        before = _stats(port)["calls"]
                        started = time.monotonic()
                        lines = send(url, requests, callers)
                        seconds = time.monotonic() - started
                        results.append((name, how, _figures(lines, seconds, _stats(port)["calls"] - before)))
                finally:
                    proxy.terminate()
        finally:
            upstream.terminate()
            upstream.wait(10)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--delay-ms", type=float, default=5.0)
    args = parser.parse_args(argv)
    print(f"{args.callers} callers, {args.requests} requests each way, a {args.delay_ms:g} ms upstream, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    print("| batch settings | callers | requests/s | mean batch | sent alone | p50 ms | p99 ms |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, how, f in measure(args.requests, args.callers, args.delay_ms):
        print(f"| {name} | {how} | {f['rps']:,.0f} | {f['mean_batch']:.1f} | {f['alone']:.0%} | "
              f"{f['p50_ms']:.1f} | {f['p99_ms']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
