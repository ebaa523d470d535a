#!/usr/bin/env python3
"""A minimal OTLP/HTTP trace sink for the benchmark: accepts `POST /v1/traces`, answers 200 with an
empty ExportTraceServiceResponse, and counts requests and bytes (it does not decode them: the trace
test does that). On SIGTERM it prints `requests bytes` and exits.

    python3 scripts/otlp-sink.py PORT
"""
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

received = {"requests": 0, "bytes": 0}


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.path == "/v1/traces":
            received["requests"] += 1
            received["bytes"] += len(body)
            status = 200
        else:
            status = 404
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def stop(*_):
    print(f"{received['requests']} {received['bytes']}", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
