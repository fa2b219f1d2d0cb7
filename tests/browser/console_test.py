#!/usr/bin/env python3
"""The web console in a real browser: Debian's chromium driven by Playwright, against a real hub
(its own database, embedded MQTT broker and QUIC) and two real agent processes simulating IoT
networks under attack. Every page is loaded, checked against the API, checked by axe-core and
screenshotted; then the operator's main tasks are done through the UI and their effect is read
back from the API.

Usage: console_test.py --bin <dir with gatewatch-hub and gatewatch-agent> [--shots DIR]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

REPO = Path(__file__).resolve().parents[2]
AXE = REPO / "hub/ui/node_modules/axe-core/axe.min.js"
ADMIN_PASSWORD = "console-test-admin"
ADMIN_NEW_PASSWORD = "console-test-admin-chosen"
VIEWER_PASSWORD = "console-test-viewer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def step(msg: str):
    print(f"-- {msg}", flush=True)


class Api:
    def __init__(self, base: str):
        self.base = base
        self.token = None

    def call(self, method: str, path: str, body=None, token=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + "/api/v1" + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        tok = token or self.token
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def get(self, path: str):
        status, body = self.call("GET", path)
        assert status == 200, f"GET {path}: {status} {body}"
        return body

    def login(self, user: str, password: str) -> str:
        status, body = self.call("POST", "/auth/login", {"username": user, "password": password})
        assert status == 200, f"login {user}: {status} {body}"
        return body["access_token"]


def wait_for(what: str, timeout: float, check, every: float = 1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Platform:
    """A hub and agents (two by default) in a temporary directory; stopped (and the database
    dropped) on exit."""

    def __init__(self, bin_dir: Path, work: Path, agents: int = 2):
        self.agents = agents
        self.bin = bin_dir
        self.work = work
        self.port = free_port()
        self.db = f"gw_console_{uuid.uuid4().hex[:10]}"
        self.procs: list[subprocess.Popen] = []
        self.base = f"http://127.0.0.1:{self.port}"
        self.api = Api(self.base)

    def start(self):
        env = dict(
            os.environ,
            GATEWATCH_DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{self.db}",
            GATEWATCH_DATA_DIR=str(self.work / "hub"),
            GATEWATCH_HTTP_ADDRESS="127.0.0.1",
            GATEWATCH_HTTP_PORT=str(self.port),
            GATEWATCH_ADMIN_PASSWORD=ADMIN_PASSWORD,
            GATEWATCH_MODEL_DIR=str(REPO / "models/default"),
            GATEWATCH_BROKER_MODE="embedded",
            GATEWATCH_MQTT_TLS_PORT=str(free_port()),
            GATEWATCH_QUIC_PORT=str(free_port()),
            # The test reads the API beside the console's own polling, as the same admin.
            GATEWATCH_RATE_LIMIT_PER_MINUTE="2000",
            GATEWATCH_LOG="info",
        )
        log = open(self.work / "hub.log", "w")
        self.procs.append(subprocess.Popen([str(self.bin / "gatewatch-hub"), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT))
        wait_for("the hub", 60, lambda: self._up(), 0.3)
        self.api.token = self.api.login("admin", ADMIN_PASSWORD)
        for i in range(1, self.agents + 1):
            self._agent(i)

    def _up(self) -> bool:
        if self.procs[0].poll() is not None:
            raise AssertionError("the hub exited:\n" + (self.work / "hub.log").read_text()[-3000:])
        try:
            with urllib.request.urlopen(self.base + "/api/v1/openapi.json", timeout=2):
                return True
        except OSError:
            return False

    def _agent(self, i: int):
        name = f"console-gw-{i}"
        state = self.work / name
        state.mkdir(parents=True)
        cfg = state / "agent.toml"
        cfg.write_text(
            f'name = "{name}"\nstate_dir = "{state}"\nmetrics_listen = "127.0.0.1:{free_port()}"\n'
            f'[source]\nkind = "simulator"\nsimulator_seed = {i + 40}\nsimulator_target = "192.168.{60 + i}.20"\n'
            f"attack_every_secs = 20\n"
            f'[detect]\ndevices = ["192.168.{60 + i}.0/24"]\nmodel_dir = "{REPO / "models/default"}"\n'
            f"[fl]\nbenign_max_score = 0.3\nquiet_secs = 1\nsynth_windows = 60\nmax_windows = 1500\n"
        )
        status, tok = self.api.call("POST", "/agents/enrollment-tokens", {"ttl_minutes": 10})
        assert status in (200, 201), f"enrollment token: {status} {tok}"
        subprocess.run(
            [str(self.bin / "gatewatch-agent"), "enroll", "--hub", self.base, "--token", tok["token"], "--ca-sha256", tok["ca_sha256"], "--config", str(cfg)],
            check=True,
            capture_output=True,
        )
        log = open(state / "agent.log", "w")
        self.procs.append(subprocess.Popen([str(self.bin / "gatewatch-agent"), "run", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT))

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)'], capture_output=True)


class Watch:
    """Console errors and failed requests of a page, checked after each page load."""

    def __init__(self, page: Page):
        self.problems: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console error: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self._failed(r))
        page.on("response", lambda r: r.status >= 400 and self.problems.append(f"{r.status} {r.request.method} {r.url}"))

    def _failed(self, r):
        # A WebSocket or fetch cut short by leaving the page is not a failure of the page.
        if "net::ERR_ABORTED" in (r.failure or ""):
            return
        self.problems.append(f"request failed: {r.method} {r.url} {r.failure}")

    def check(self, where: str):
        found, self.problems = self.problems, []
        assert not found, f"{where}: " + "; ".join(found)


def axe(page: Page, where: str):
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => (await axe.run(document, { resultTypes: ['violations'] })).violations")
    bad = [v for v in result if v.get("impact") in ("serious", "critical")]
    assert not bad, f"{where}: axe-core found " + "; ".join(f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}" for v in bad)
    return len(result)


def visit(page: Page, watch: Watch, shots: Path, base: str, route: str, heading: str, name: str):
    page.goto(f"{base}/#/{route}")
    expect(page.get_by_role("heading", name=heading, exact=True).first).to_be_visible(timeout=10_000)
    # Let the page's first API calls and the WebSocket settle.
    page.wait_for_timeout(2500)
    watch.check(f"page {name}")
    minor = axe(page, f"page {name}")
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    step(f"page {name}: no console error, no failed request, axe: no serious or critical violation ({minor} minor)")


def agrees(what: str, shown, expected, timeout: float = 45):
    """The page shows what the API holds, at some moment: both move while agents report."""
    last = {}

    def check():
        last["shown"], last["api"] = shown(), expected()
        return last["shown"] == last["api"]

    try:
        wait_for(what, timeout, check, 1)
    except AssertionError:
        raise AssertionError(f"{what}: the page shows {last.get('shown')!r}, the API {last.get('api')!r}") from None


def rules(api: Api) -> list:
    got = api.get("/prevention/rules")
    return got["items"] if isinstance(got, dict) else got


def login_ui(page: Page, base: str, user: str, password: str):
    page.goto(base + "/")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    # The header's sign-out button shows at every width (the menu folds away on a tablet).
    expect(page.get_by_role("button", name="Sign out")).to_be_visible(timeout=10_000)


def fl_from_console(page: Page, watch: Watch, shots: Path, api: Api, base: str):
    """Starts a one-round run from the FL page and waits for the round to show as completed."""
    step("federated learning from the console")
    wait_for("benign windows in both agents' local sets", 300, lambda: all(
        ((a.get("fl_local_windows") or {}).get("benign", 0) >= 10) for a in api.get("/agents")) or None, 3)
    page.goto(f"{base}/#/fl")
    for label, value in [("Rounds", "1"), ("Minimum clients", "2"), ("Local epochs", "1"), ("Committee size", "2"),
                         ("Decryption threshold", "2"), ("Round deadline", "180")]:
        page.get_by_label(label).first.fill(value)
    page.get_by_role("button", name="Start run").click()
    run_id = wait_for("the run in the API", 15, lambda: api.get("/fl/status").get("run_id"), 0.5)
    finished = wait_for("the run's round", 420, lambda: [r for r in api.get(f"/fl/rounds?run_id={run_id}&size=10")["items"] if r["status"] in ("completed", "failed")] or None, 3)
    assert finished[0]["status"] == "completed", finished[0]
    rounds = page.get_by_role("region", name="Rounds")
    expect(rounds.get_by_text("completed").first).to_be_visible(timeout=20_000)
    # The round's model is among the models the hub holds, ready to activate.
    models = page.get_by_role("region", name="Model versions")
    expect(models.get_by_text(finished[0]["model_version"], exact=True)).to_be_visible(timeout=20_000)
    expect(models.get_by_role("button", name=f"Activate {finished[0]['model_version']}")).to_be_visible()
    page.screenshot(path=str(shots / "fl-round.png"), full_page=True)
    watch.check("federated learning")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, type=Path, help="directory holding gatewatch-hub and gatewatch-agent")
    ap.add_argument("--shots", type=Path, default=Path(tempfile.gettempdir()) / "gatewatch-console-shots", help="where screenshots go")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--skip-fl", action="store_true", help="leave out the federated-learning run (the longest step, a few minutes)")
    args = ap.parse_args()
    args.shots.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gw-console-"))
    platform = Platform(args.bin, work)
    ok = False
    try:
        platform.start()
        run(platform, args)
        ok = True
    finally:
        platform.stop()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs kept in {work}", file=sys.stderr)


def run(platform: Platform, args):
    api, base, shots = platform.api, platform.base, args.shots
    step("waiting for the agents' first predictions")

    def busiest():
        for d in api.get("/devices?size=200&sort=last_seen&desc=true")["items"]:
            st = api.get(f"/devices/{d['id']}/stats")
            if st["flows_total"] >= 10 and st["predictions_total"] > 0:
                return d
        return None

    device = wait_for("a device with 10 flows and a prediction", 120, busiest, 3)
    status, _ = api.call("POST", "/auth/register", {"username": "watcher", "email": "watcher@example.invalid", "password": VIEWER_PASSWORD, "role": "viewer"})
    assert status == 201, f"register viewer: {status}"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        # bypass_csp: axe-core is injected as an inline script, which the console's CSP rightly refuses.
        ctx = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
        page = ctx.new_page()
        watch = Watch(page)

        # The first admin's password was set at first start: the console asks for a new one.
        step("sign in as admin, change the initial password")
        page.goto(base + "/")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(ADMIN_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible(timeout=10_000)
        expect(page.get_by_role("navigation", name="Main")).to_have_count(0)
        axe(page, "change password")
        page.screenshot(path=str(shots / "change-password.png"), full_page=True)
        page.get_by_label("Current password").fill(ADMIN_PASSWORD)
        page.get_by_label("New password", exact=True).fill(ADMIN_NEW_PASSWORD)
        page.get_by_label("New password again").fill(ADMIN_NEW_PASSWORD)
        page.get_by_role("button", name="Change password").click()
        expect(page.get_by_role("navigation", name="Main")).to_be_visible(timeout=10_000)
        assert api.call("POST", "/auth/login", {"username": "admin", "password": ADMIN_PASSWORD})[0] == 401
        api.token = api.login("admin", ADMIN_NEW_PASSWORD)
        watch.check("login")

        # Every page loads clean and shows what the API holds.
        visit(page, watch, shots, base, "", "Dashboard", "dashboard")
        agrees("active devices", lambda: page.get_by_test_id("active-devices").inner_text(),
               lambda: (lambda st: f"{st['active_devices']} / {st['total_devices']}")(api.get("/dashboard/stats")))
        agrees("device tiles", lambda: page.get_by_test_id("health-map").locator("a").count(), lambda: len(api.get("/dashboard/device-health")))

        visit(page, watch, shots, base, "devices", "Devices", "devices")
        agrees("device count", lambda: page.get_by_role("status").filter(has_text="devices").first.inner_text(),
               lambda: f"{api.get('/devices?size=1')['total']} devices")
        expect(page.get_by_role("link", name=device["name"], exact=True)).to_be_visible()

        visit(page, watch, shots, base, f"devices/{device['id']}", device["name"], "device")
        # Agents' windows carry no explanation; one scored and explained by the hub's /predict
        # does. It goes to a device of its own: under a simulated flood the agent's device gets
        # newer predictions faster than the page lists them.
        flows = api.get(f"/traffic/{device['id']}?size=10")["items"]
        status, manual = api.call("POST", "/devices", {"name": "console-explained", "device_type": "sensor", "ip_address": "10.99.0.5", "protocol": "mqtt", "port": 1883})
        assert status == 201, f"create device: {status} {manual}"
        status, explained = api.call("POST", "/predict", {"device_id": manual["id"], "window": [f["features"] for f in reversed(flows)]})
        assert status == 200 and explained["feature_importance"], f"predict: {status} {explained}"
        page.goto(f"{base}/#/devices/{manual['id']}")
        page.locator(f'tr[data-id="{explained["prediction_id"]}"]').get_by_role("button", name="Explain").click()
        expect(page.get_by_text("The features that moved this window")).to_be_visible(timeout=10_000)
        page.screenshot(path=str(shots / "device-explained.png"), full_page=True)
        watch.check("device explanation")

        visit(page, watch, shots, base, "live", "Live monitor", "live")
        expect(page.get_by_test_id("live-rows").locator("tr").first).to_be_visible(timeout=15_000)

        visit(page, watch, shots, base, "alerts", "Alerts", "alerts")
        agrees("open alerts", lambda: page.get_by_test_id("alert-count").inner_text(),
               lambda: f"{api.get('/alerts?acknowledged=false&size=1')['total']} alerts")

        visit(page, watch, shots, base, "attacks", "Attack simulation", "attacks")
        visit(page, watch, shots, base, "prevention", "Prevention", "prevention")
        visit(page, watch, shots, base, "fl", "Federated learning", "fl")
        expect(page.get_by_text(api.get("/fl/status")["state"]).first).to_be_visible()
        visit(page, watch, shots, base, "settings", "Settings & fleet", "settings")
        for a in api.get("/agents"):
            expect(page.get_by_text(a["name"], exact=True).first).to_be_visible()

        # /docs: Swagger UI over the same OpenAPI document, from the hub's binary.
        page.goto(f"{base}/docs")
        expect(page.locator(".opblock").first).to_be_visible(timeout=15_000)
        operations = page.locator(".opblock").count()
        documented = sum(1 for v in api.get("/openapi.json")["paths"].values() for m in v if m in ("get", "post", "put", "patch", "delete"))
        assert operations == documented, f"/docs shows {operations} operations, the document has {documented}"
        page.screenshot(path=str(shots / "docs.png"))
        watch.check("/docs")
        step(f"/docs: Swagger UI lists all {operations} operations")

        # The live monitor shows a prediction within 5 s of the hub receiving it.
        # During a simulated flood the stream runs at thousands of events per second and the
        # bounded list turns over in milliseconds: follow a device outside the attacks.
        step("live monitor latency")
        quiet = wait_for("a device outside the attacks with predictions", 120, lambda: next(
            (d for d in api.get("/devices?size=200")["items"]
             if d["agent_id"] and not d["ip_address"].split("/")[0].endswith(".20")
             and api.get(f"/predictions/{d['id']}?size=1")["total"] > 0), None), 3)
        page.goto(f"{base}/#/live")
        page.get_by_label("Device (name or id)").fill(quiet["id"])
        expect(page.get_by_text("Connected")).to_be_visible(timeout=10_000)
        before = api.get(f"/predictions/{quiet['id']}?size=1")["items"][0]["id"]
        newest = wait_for("a new prediction", 180, lambda: (lambda x: x if x != before else None)(api.get(f"/predictions/{quiet['id']}?size=1")["items"][0]["id"]), 0.25)
        seen = time.time()
        expect(page.locator(f'tr[data-id="{newest}"]')).to_have_count(1, timeout=5_000)
        step(f"live monitor: prediction {newest[:8]} shown {time.time() - seen:.1f} s after the API had it")

        # An alert resolved as a false positive changes state in the API.
        step("resolve an alert as a false positive")
        alert = wait_for("an open alert", 120, lambda: (api.get("/alerts?acknowledged=false&size=1")["items"] or [None])[0], 2)
        page.goto(f"{base}/#/alerts")
        row = page.locator(f'tr[data-alert="{alert["id"]}"]')
        expect(row).to_be_visible(timeout=10_000)
        row.get_by_role("button", name="False positive").click()
        expect(page.get_by_role("status").filter(has_text="resolved as false positives")).to_be_visible(timeout=10_000)
        got = api.get(f"/alerts/{alert['id']}")
        assert got["action_taken"] == "resolved_false_positive" and got["is_acknowledged"], got
        watch.check("alert resolved")

        # A rule made in the console reaches the agents; its dry-run actions appear in the log page.
        step("prevention rule from the console")
        page.goto(f"{base}/#/prevention")
        page.get_by_label("Name").fill("console: block attackers")
        page.get_by_label("Score threshold").fill("0.5")
        page.get_by_label("Action").select_option("block_ip")
        page.get_by_role("button", name="Create rule").click()
        rule = wait_for("the rule in the API", 10, lambda: next((r for r in rules(api) if r["rule_name"] == "console: block attackers"), None), 0.5)
        logged = wait_for("an agent acting on the rule", 150, lambda: api.get(f"/prevention/logs?rule_id={rule['id']}&size=1")["items"], 2)
        assert logged[0]["action_executed"].startswith("dry_run:"), logged[0]
        page.reload()
        entry = page.get_by_role("region", name="Prevention log").locator("tr", has_text="console: block attackers").first
        expect(entry).to_be_visible(timeout=10_000)
        expect(entry.get_by_text("dry run", exact=True)).to_be_visible()
        page.screenshot(path=str(shots / "prevention-dry-run.png"), full_page=True)
        watch.check("prevention rule")

        # An attack session built and started in the console completes and its report opens.
        step("attack session from the console")
        page.goto(f"{base}/#/attacks")
        page.get_by_label("Device", exact=False).first.select_option(device["id"])
        page.get_by_label("Attack type").select_option("port_scan")
        page.get_by_label("Duration (s)").fill("10")
        page.get_by_role("button", name="Add step").click()
        page.get_by_role("button", name="Create session").click()
        page.get_by_role("button", name="Start session").click()
        session = wait_for("the session in the API", 10, lambda: (api.get(f"/attacks/sessions?device_id={device['id']}&size=1")["items"] or [None])[0], 0.5)
        done = wait_for("the session to finish", 180, lambda: (lambda s: s if s["status"] in ("completed", "failed") else None)(api.get(f"/attacks/sessions/{session['id']}")), 2)
        assert done["status"] == "completed", done
        expect(page.get_by_text("completed").first).to_be_visible(timeout=15_000)
        with ctx.expect_page() as report:
            page.get_by_role("button", name="HTML report").click()
        report.value.wait_for_load_state()
        expect(report.value.locator("h1")).to_have_text("Attack simulation report", timeout=10_000)
        report.value.screenshot(path=str(shots / "attack-report.png"), full_page=True)
        report.value.close()
        page.screenshot(path=str(shots / "attack-session.png"), full_page=True)
        watch.check("attack session")

        # A federated-learning run started in the console shows its round completing.
        if not args.skip_fl:
            fl_from_console(page, watch, shots, api, base)

        step("sign out")
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=10_000)

        step("a viewer sees no control they may not use")
        login_ui(page, base, "watcher", VIEWER_PASSWORD)
        for route, heading, hidden in [
            ("settings", "Settings & fleet", ["Create enrollment token", "Revoke", "Register user"]),
            ("fl", "Federated learning", ["Start run", "Stop run"]),
            ("prevention", "Prevention", ["Create rule"]),
            ("attacks", "Attack simulation", ["Create session", "Start session"]),
            ("alerts", "Alerts", ["Acknowledge selected", "False positive"]),
            (f"devices/{device['id']}", device["name"], ["Start monitoring", "Upload and replay"]),
        ]:
            visit(page, watch, shots, base, route, heading, f"viewer-{route.split('/')[0]}")
            for name in hidden:
                expect(page.get_by_role("button", name=name)).to_have_count(0)

        step("an expired session goes back to sign-in")
        ctx.clear_cookies()
        page.evaluate("sessionStorage.setItem('gatewatch.token', JSON.stringify('expired'))")
        page.reload()
        expect(page.get_by_text("Your session expired")).to_be_visible(timeout=10_000)
        watch.problems.clear()

        # Dark mode and a tablet's width.
        dark = browser.new_context(viewport={"width": 768, "height": 1024}, color_scheme="dark", bypass_csp=True)
        tablet = dark.new_page()
        login_ui(tablet, base, "admin", ADMIN_NEW_PASSWORD)
        tablet.wait_for_timeout(2500)
        tablet.screenshot(path=str(shots / "dashboard-dark-tablet.png"), full_page=True)
        axe(tablet, "dashboard, dark, tablet")
        browser.close()
    step(f"screenshots in {shots}")


if __name__ == "__main__":
    main()
