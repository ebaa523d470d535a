#!/usr/bin/env python3
"""The soak's helper (scripts/soak.sh runs it; standard library only).

  soak.py load URL STREAMS REQUEST_MS STATUS_FILE
      The API's steady load until SIGTERM: STREAMS open GET /v1/stream-prices streams, each counting
      its events and resuming with Last-Event-ID if the stream ends, and one GET /v1/get-prices every
      REQUEST_MS ms (a cycle of four queries). Rewrites STATUS_FILE (JSON) every second and on exit.

  soak.py report SAMPLES EVENTS
      The table of the samples and a least-squares slope per series: the API's and PostgreSQL's over
      the whole run, the aggregators' per run (one run = one process, from its start to its SIGTERM).
"""
import http.client
import json
import os
import signal
import sys
import threading
import time
import urllib.parse

# --------------------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------------------
QUERIES = [
    "/v1/get-prices",
    "/v1/get-prices?ticker=AMZN",
    "/v1/get-prices?ticker=MSFT&interval=5m",
    "/v1/get-prices?limit=100",
]


class Load:
    def __init__(self, url, streams, request_ms):
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port
        self.streams, self.request_ms = streams, request_ms
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.events = [0] * streams  # price + watermark events per stream
        self.last_id = [None] * streams
        self.connects = [0] * streams  # successful stream opens (1 = never reconnected)
        self.stream_errors = 0  # stream opens that failed or streams that broke
        self.requests = {}  # status (or "error") -> count
        self.latencies = []  # seconds, of every request
        self.latency_max = 0.0

    def stream(self, slot):
        while not self.stop.is_set():
            try:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
                headers = {"Accept": "text/event-stream"}
                if self.last_id[slot] is not None:
                    headers["Last-Event-ID"] = self.last_id[slot]
                connection.request("GET", "/v1/stream-prices", headers=headers)
                response = connection.getresponse()
                if response.status != 200:
                    raise OSError(f"status {response.status}")
                with self.lock:
                    self.connects[slot] += 1
                event = None
                while not self.stop.is_set():
                    line = response.readline()
                    if not line:
                        raise OSError("stream ended")
                    line = line.decode().rstrip("\r\n")
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("id:"):
                        self.last_id[slot] = line[3:].strip()
                    elif line == "" and event is not None:
                        with self.lock:
                            self.events[slot] += 1
                        event = None
            except (OSError, http.client.HTTPException):
                if self.stop.is_set():
                    return
                with self.lock:
                    self.stream_errors += 1
                self.stop.wait(1.0)

    def requester(self):
        connection, index = None, 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            path = QUERIES[index % len(QUERIES)]
            index += 1
            started = time.monotonic()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                status = str(response.status)
            except (OSError, http.client.HTTPException):
                status, connection = "error", None
            took = time.monotonic() - started
            with self.lock:
                self.requests[status] = self.requests.get(status, 0) + 1
                self.latencies.append(took)
                self.latency_max = max(self.latency_max, took)
            next_at += self.request_ms / 1000
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def status(self):
        with self.lock:
            latencies = sorted(self.latencies)
            p50 = latencies[len(latencies) // 2] if latencies else 0.0
            p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0.0
            last_ids = {i for i in self.last_id if i is not None}
            return {
                "streams": self.streams,
                "streams_open": sum(1 for c in self.connects if c > 0),
                "events_total": sum(self.events),
                "events_min_per_stream": min(self.events),
                "events_max_per_stream": max(self.events),
                "reconnects": sum(max(0, c - 1) for c in self.connects),
                "stream_errors": self.stream_errors,
                "distinct_last_ids": len(last_ids),
                "requests": dict(self.requests),
                "request_p50_ms": round(p50 * 1000, 1),
                "request_p99_ms": round(p99 * 1000, 1),
                "request_max_ms": round(self.latency_max * 1000, 1),
            }


def load(url, streams, request_ms, status_file):
    state = Load(url, int(streams), float(request_ms))
    signal.signal(signal.SIGTERM, lambda *_: state.stop.set())
    threads = [threading.Thread(target=state.stream, args=(i,), daemon=True) for i in range(state.streams)]
    threads.append(threading.Thread(target=state.requester, daemon=True))
    for thread in threads:
        thread.start()

    def write():
        temporary = status_file + ".tmp"
        with open(temporary, "w") as out:
            json.dump(state.status(), out)
        os.replace(temporary, status_file)

    while not state.stop.wait(1.0):
        write()
    write()


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------
def slope(points):
    """Least-squares slope (per hour) of (seconds, value) points, and the mean."""
    if len(points) < 2:
        return None, None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None, mean_v
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 3600, mean_v


def describe_slope(points, unit, scale=1.0):
    per_hour, mean = slope([(t, v / scale) for t, v in points])
    if per_hour is None:
        return "n/a (fewer than 2 samples)"
    percent = f"{per_hour / mean * 100:+.1f} % of the mean" if mean else "mean 0"
    return f"{per_hour:+.2f} {unit}/h ({percent} {mean:.2f} {unit}), {len(points)} samples"


def report(samples_file, events_file):
    rows = []
    with open(samples_file) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            rows.append(dict(zip(header, line.rstrip("\n").split("\t"))))
    print("   samples (RSS in MiB; fds = entries of /proc/PID/fd; pg = connections to the soak's database;"
          " agg N = aggregator slot N, its pid in brackets)")
    print(f"   {'kind':<9}{'t s':>6} {'load1':>6} {'agg 0 [pid] rss fds':>26} {'agg 1 [pid] rss fds':>26}"
          f" {'api rss fds':>13} {'pg':>4} {'events':>9} {'requests':>9}")
    mib = lambda kib: f"{int(kib) / 1024:.1f}" if kib not in ("", "-") else "-"
    for r in rows:
        agg = lambda s: f"[{r[f'agg{s}_pid']}] {mib(r[f'agg{s}_rss_kib'])} {r[f'agg{s}_fds']}"
        print(f"   {r['kind']:<9}{r['t']:>6} {r['load1']:>6} {agg(0):>26} {agg(1):>26}"
              f" {mib(r['api_rss_kib']) + ' ' + r['api_fds']:>13} {r['pg_conns']:>4} {r['events']:>9} {r['requests']:>9}")

    regular = [r for r in rows if r["kind"] in ("minute", "end")]
    number = lambda v: v not in ("", "-")
    print("\n   slopes (least squares over the minute samples; per hour, and as % of the series' mean)")
    api_rss = [(int(r["t"]), int(r["api_rss_kib"])) for r in regular if number(r["api_rss_kib"])]
    api_fds = [(int(r["t"]), int(r["api_fds"])) for r in regular if number(r["api_fds"])]
    pg = [(int(r["t"]), int(r["pg_conns"])) for r in regular if number(r["pg_conns"])]
    print(f"   api RSS, whole run:            {describe_slope(api_rss, 'MiB', 1024)}")
    if len(api_rss) > 10:
        later = [p for p in api_rss if p[0] >= api_rss[0][0] + 600]
        print(f"   api RSS, after the first 10 min: {describe_slope(later, 'MiB', 1024)}")
    print(f"   api fds, whole run:            {describe_slope(api_fds, 'fds')}")
    print(f"   PostgreSQL connections:        {describe_slope(pg, 'conns')}")

    # The aggregators, per run: every sample of one pid in one slot (minute samples and the one taken
    # just before its SIGTERM).
    print("\n   aggregator runs (the sample 15 s after the start -> the last before the SIGTERM; slope within the run)")
    runs = {}
    for r in rows:
        for s in ("0", "1"):
            pid = r[f"agg{s}_pid"]
            if number(pid) and number(r[f"agg{s}_rss_kib"]):
                runs.setdefault((s, pid), []).append(
                    (int(r["t"]), int(r[f"agg{s}_rss_kib"]), int(r[f"agg{s}_fds"]), int(r[f"agg{s}_hwm_kib"] or 0),
                     r["kind"]))
    ends = {"0": [], "1": []}
    for (s, pid), points in sorted(runs.items(), key=lambda item: item[1][0][0]):
        # A run starts at its sample 15 s after the start (a sample taken sooner sees the process start up).
        points = points[next((i for i, p in enumerate(points) if p[4] == "start+15s"), 0):]
        first, last = points[0], points[-1]
        hwm = max(p[3] for p in points)
        print(f"   slot {s} pid {pid:>7}: t {first[0]:>5}-{last[0]:>5} s, RSS {first[1] / 1024:.1f} -> {last[1] / 1024:.1f} MiB"
              f" (peak VmHWM {hwm / 1024:.1f}), fds {first[2]} -> {last[2]};"
              f" RSS {describe_slope([(p[0], p[1]) for p in points], 'MiB', 1024)}")
        ends[s].append((last[0], last[1], last[2]))
    for s in ("0", "1"):
        if len(ends[s]) >= 2:
            print(f"   slot {s}, RSS at the end of each run, across runs: "
                  f"{describe_slope([(t, v) for t, v, _ in ends[s]], 'MiB', 1024)}")
            print(f"   slot {s}, fds at the end of each run, across runs: "
                  f"{describe_slope([(t, f) for t, _, f in ends[s]], 'fds')}")

    if os.path.exists(events_file):
        print("\n   events")
        with open(events_file) as f:
            for line in f:
                print(f"   {line.rstrip()}")


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "load":
        load(*sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "report":
        report(*sys.argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
