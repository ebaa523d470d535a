#!/usr/bin/env python3
"""Runs every Grafana panel's PromQL against a real Prometheus: scripts/alert-drill.sh calls it
while its Prometheus scrapes the generator, the aggregator and the API of a running pipeline.

For every query of every panel of deploy/grafana/dashboards/*.json (rows included):
  - Grafana's variables are replaced as Grafana would: $__rate_interval (and ${__rate_interval})
    by --rate-interval, $__interval by --interval, $__range by --range; any other variable left
    is an error (the dashboards have only `datasource`, which selects the datasource, not a query);
  - the query's datasource must be the dashboard variable ${datasource}, so the dashboards work in
    any Grafana with any Prometheus;
  - every metric name in it must be exported by a service: found in one of the /metrics pages
    given (or be `up`, which Prometheus writes itself);
  - Prometheus (/api/v1/query) must parse it and answer at least one series (or a scalar) with a
    number that is not NaN.

  grafana-panels.py PROMETHEUS_URL METRICS_URL... [--rate-interval 20s] [--controls FILE]

With --controls FILE, the panels of FILE must each FAIL, with a problem containing the
`[expect: TEXT]` of the panel's description: the negative control (a metric no service exports,
a query that does not parse, a query that answers nothing). Prints one line per failure and
"grafana panels: N passed, M failed" (controls: "grafana panel controls: ..."); exit 1 on failure.
"""
import argparse
import json
import math
import pathlib
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Written by Prometheus itself, not by a service's /metrics.
PROMETHEUS_OWN = {"up"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "atan2", "inf", "nan"}


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def exported_names(metrics_urls):
    """The sample names of the services' /metrics pages (counters with _total, histograms' _bucket...)."""
    names = set(PROMETHEUS_OWN)
    for url in metrics_urls:
        for line in get(url).splitlines():
            if line and not line.startswith("#"):
                names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def metric_names(expr):
    """The metric names a PromQL expression selects (strings, matchers, ranges and grouping removed)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":  # the exponent of a number such as 1e3
            continue
        if text[match.end():].lstrip().startswith("(") or match.group().lower() in KEYWORDS:
            continue  # a function, an aggregation or an operator
        names.add(match.group())
    return names


def substitute(expr, args):
    values = {"__rate_interval": args.rate_interval, "__interval": args.interval, "__range": args.range}
    for name, value in values.items():
        expr = expr.replace("${%s}" % name, value).replace("$" + name, value)
    return expr


def panels(dashboard):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def problems(panel, exported, args):
    """Everything wrong with one panel's queries, as sentences."""
    found = []
    targets = panel.get("targets", [])
    if not targets:
        found.append("no queries")
    for target in targets:
        ref, expr = target.get("refId", "?"), target.get("expr", "")
        uid = (target.get("datasource") or {}).get("uid")
        if uid != "${datasource}":
            found.append(f"{ref}: datasource {uid!r}, not the dashboard variable ${{datasource}}")
        query = substitute(expr, args)
        if "$" in query:
            found.append(f"{ref}: a Grafana variable the test does not know is left in {query!r}")
            continue
        missing = sorted(metric_names(query) - exported)
        if missing:
            found.append(f"{ref}: not exported by any service: {', '.join(missing)} (in {query!r})")
        found.extend(f"{ref}: {p}" for p in run_query(args.prometheus, query))
    return found


def run_query(prometheus, query):
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        answer = json.loads(get(url))
    except urllib.error.HTTPError as error:  # 400 for a query that does not parse
        answer = json.loads(error.read().decode() or "{}")
    if answer.get("status") != "success":
        return [f"Prometheus refused it: {answer.get('errorType')}: {answer.get('error')} (in {query!r})"]
    data = answer["data"]
    if data["resultType"] == "scalar":
        values = [data["result"][1]]
    else:
        values = [series["value"][1] for series in data["result"]]
    if not any(not math.isnan(float(v)) for v in values):
        what = "NaN only" if values else "no series"
        return [f"no data: {what} (in {query!r})"]
    return []


def check(files, exported, args, controls):
    passed = failed = 0
    for file in files:
        dashboard = json.loads(pathlib.Path(file).read_text())
        for panel in panels(dashboard):
            if panel.get("type") == "row":
                continue
            title = f'{dashboard.get("title")} / {panel.get("title")}'
            found = problems(panel, exported, args)
            if controls:
                expect = re.search(r"\[expect: (.+?)\]", panel.get("description", ""))
                ok = bool(expect) and any(expect.group(1) in p for p in found)
                print(f"  {'rejected' if ok else 'FAILED  '}  {title}: {found[0] if found else 'accepted'}")
            else:
                ok = not found
                for problem in found:
                    print(f"  FAILED  {title}: {problem}")
            passed, failed = passed + ok, failed + (not ok)
    return passed, failed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prometheus")
    parser.add_argument("metrics", nargs="+", help="the services' /metrics URLs")
    parser.add_argument("--rate-interval", default="20s")
    parser.add_argument("--interval", default="5s")
    parser.add_argument("--range", default="2m")
    parser.add_argument("--controls", help="a dashboard whose panels must each fail")
    args = parser.parse_args()
    exported = exported_names(args.metrics)
    if args.controls:
        passed, failed = check([args.controls], exported, args, controls=True)
        print(f"grafana panel controls: {passed} passed, {failed} failed")
    else:
        files = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))
        passed, failed = check(files, exported, args, controls=False)
        print(f"grafana panels: {passed} passed, {failed} failed")
    sys.exit(1 if failed or not passed else 0)


if __name__ == "__main__":
    main()
