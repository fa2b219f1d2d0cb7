#!/usr/bin/env python3
"""Runs one short attack-simulation session on a device of a running gatewatch platform and
saves its reports: waits for the device to be seen, creates the session (a port scan under
FGSM, then an SSH brute force), starts it, follows it to its end and writes the HTML and PDF
reports into the output directory. Standard library only; used by scripts/run.sh."""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request


def call(base, method, path, token=None, body=None):
    req = urllib.request.Request(base + path, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, data, timeout=30) as r:
            raw = r.read()
            return r.status, raw
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=8000, help="the hub's HTTP port")
    p.add_argument("--password", required=True, help="the admin's password")
    p.add_argument("--device", required=True, help="the device's IPv4 address")
    p.add_argument("--out", required=True, help="where the reports go")
    p.add_argument("--wait", type=int, default=120, help="seconds to wait for the device")
    a = p.parse_args()
    base = f"http://127.0.0.1:{a.port}/api/v1"

    def token():
        s, raw = call(base, "POST", "/auth/login", body={"username": "admin", "password": a.password})
        if s != 200:
            sys.exit(f"demo session: login failed ({s}): {raw[:200]!r}")
        return json.loads(raw)["access_token"]

    t = token()
    device = None
    deadline = time.time() + a.wait
    while device is None and time.time() < deadline:
        s, raw = call(base, "GET", f"/devices?search={a.device}&size=50", t)
        if s == 200:
            for d in json.loads(raw).get("items", []):
                if d.get("ip_address") == a.device:
                    device = d["id"]
        if device is None:
            time.sleep(2)
    if device is None:
        sys.exit(f"demo session: device {a.device} not seen within {a.wait} s")

    session = {
        "device_id": device,
        "gap_seconds": 5,
        "steps": [
            {"attack_type": "port_scan", "duration_seconds": 15, "intensity": 0.1,
             "adversarial_enabled": True, "adversarial_epsilon": 0.01},
            {"attack_type": "brute_force_ssh", "duration_seconds": 15, "intensity": 0.3},
        ],
    }
    s, raw = call(base, "POST", "/attacks/sessions", t, session)
    if s != 201:
        sys.exit(f"demo session: not created ({s}): {raw[:300]!r}")
    sid = json.loads(raw)["id"]
    s, raw = call(base, "POST", f"/attacks/sessions/{sid}/start", t)
    if s != 202:
        sys.exit(f"demo session: not started ({s}): {raw[:300]!r}")
    print(f"== attack session {sid} running on {a.device} (live: ws://127.0.0.1:{a.port}/ws/attacks/{sid}?token=...)",
          flush=True)
    state = {}
    deadline = time.time() + 180
    while time.time() < deadline:
        time.sleep(3)
        s, raw = call(base, "GET", f"/attacks/sessions/{sid}", t)
        if s == 401:
            # The access token expired: log in again (logins are rate-limited, so only then).
            t = token()
            continue
        if s == 200:
            state = json.loads(raw)
            if state["status"] not in ("pending", "running"):
                break
    for fmt in ("html", "pdf"):
        s, raw = call(base, "GET", f"/attacks/sessions/{sid}/report?format={fmt}", t)
        if s == 200:
            path = f"{a.out}/attack-report.{fmt}"
            with open(path, "wb") as f:
                f.write(raw)
    rates = ", ".join(
        f"step {st['step_order']} {st['attack_type']}: {st['status']}, detection rate {st.get('detection_rate')}"
        for st in state.get("steps", [])
    )
    print(f"== attack session {sid} {state.get('status')}: {rates}")
    print(f"   report: {a.out}/attack-report.html and {a.out}/attack-report.pdf")
    print(f"   (or GET http://127.0.0.1:{a.port}/api/v1/attacks/sessions/{sid}/report?format=html|pdf with a token)",
          flush=True)


if __name__ == "__main__":
    main()
