#!/usr/bin/env python3
"""Runs one short federated-learning run on a running gatewatch platform: waits until the
agents' local training sets hold benign windows (read from their metrics endpoints), starts a
run, follows its status and prints each round (F1 on the clients' validation windows before
and after, the new model version, whether it was activated). Standard library only; used by
scripts/run.sh."""

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
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return 0, str(e).encode()


def benign_windows(metrics_port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith('gatewatch_agent_fl_local_windows{family="benign"}'):
                    return float(line.split()[-1])
    except OSError:
        pass
    return 0.0


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=8000, help="the hub's HTTP port")
    p.add_argument("--password", required=True, help="the admin's password")
    p.add_argument("--metrics-ports", required=True, help="the agents' metrics ports, comma-separated")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--wait", type=int, default=600, help="seconds to wait for the agents' local sets")
    a = p.parse_args()
    base = f"http://127.0.0.1:{a.port}/api/v1"

    def token():
        s, raw = call(base, "POST", "/auth/login", body={"username": "admin", "password": a.password})
        if s != 200:
            sys.exit(f"demo FL: login failed ({s}): {raw[:200]!r}")
        return json.loads(raw)["access_token"]

    ports = [int(x) for x in a.metrics_ports.split(",") if x]
    deadline = time.time() + a.wait
    while time.time() < deadline:
        counts = [benign_windows(port) for port in ports]
        if all(c >= 30 for c in counts):
            break
        time.sleep(5)
    else:
        sys.exit(f"demo FL: the agents' local sets did not fill within {a.wait} s")
    print(f"demo FL: local training sets hold {', '.join(str(int(c)) for c in counts)} benign windows; starting a run")
    t = token()
    s, raw = call(base, "POST", "/fl/start", t, {
        "num_rounds": a.rounds, "min_clients": 2, "local_epochs": 1, "deadline_secs": 300,
        "committee_size": min(3, len(ports)), "threshold": 2, "activate": "if_better",
    })
    if s != 202:
        sys.exit(f"demo FL: the run did not start ({s}): {raw[:300]!r}")
    run_id = json.loads(raw)["run_id"]
    last = None
    while True:
        time.sleep(3)
        t = token()
        s, raw = call(base, "GET", "/fl/status", t)
        if s != 200:
            continue
        st = json.loads(raw)
        now = (st.get("state"), st.get("round"), st.get("clients_uploaded"))
        if now != last:
            last = now
            print(f"demo FL: {st.get('state')} round {st.get('round')} "
                  f"uploads {st.get('clients_uploaded')}/{st.get('clients_selected')} "
                  f"{st.get('message') or ''}")
        if st.get("state") == "idle" and st.get("run_id") is None:
            break
    s, raw = call(base, "GET", f"/fl/rounds?run_id={run_id}", t)
    for r in json.loads(raw).get("items", []) if s == 200 else []:
        if r["status"] == "completed":
            print(f"demo FL: round {r['run_round']}: {r['clients_uploaded']} updates, F1 on the clients' "
                  f"validation windows {r['f1_before']:.3f} -> {r['global_f1']:.3f}, model {r['model_version']}, "
                  f"activated {r['activated']}")
        else:
            print(f"demo FL: round {r['run_round']} failed: {r['reason']}")
    s, raw = call(base, "GET", "/fl/model/current", t)
    if s == 200:
        print(f"demo FL: active model now {json.loads(raw)['active_version']}")


if __name__ == "__main__":
    main()
