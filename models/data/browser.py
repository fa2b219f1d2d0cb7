"""The lab laptop's web browser: visits pages of the lab's web site the way a browser does.

For each visit: a DNS lookup, every other time 2-12 speculative connections that only shake
hands (browsers preconnect; of the TLS ones 3 in 10 are dropped right after their ClientHello,
as a connection another one beat; half of the rest are dropped once up, as duplicates, the
others idle first) or, for half of the HTTPS visits among those, a race of 4-16 connections
opened at once, of which 1-4 carry the page and the rest are dropped together; the page,
then its assets: over 2-6 parallel keep-alive connections, or, as HTTP/2 does, all over the
page's one connection; the connections then stay open, idle, for 0.5-15 s
before they close, while the next visit starts. Sometimes a video (segments read at the
player's pace) or a feed polled on one connection; often analytics beacons, rarely an upload.
Requests carry a browser's headers, cookies of none to a few kilobytes among them. Half of the
visits go over IPv6. Now and then, instead of a visit, the user works in a web app open in
4-12 tabs: each tab holds one HTTPS connection for 10-70 requests (scrolling loads images,
the app polls its API and reports to its analytics), and the tabs close one after another with
nothing else in between, as a capture of a social site shows. Runs until killed.

Usage: python3 browser.py WEB4 WEB6 DNS SITE_DIR SEED
"""

import glob
import http.client
import os
import random
import socket
import ssl
import subprocess
import sys
import threading
import time

NAMES = ["www.news.example", "cdn.news.example", "api.news.example", "video.news.example"]
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
ACCEPT = {
    "page": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "asset": "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
    "api": "application/json, text/plain, */*",
}


class Browser:
    def __init__(self, web4, web6, dns, site, seed):
        self.web4, self.web6, self.dns = web4, web6, dns
        self.rng = random.Random(seed)
        self.tls = ssl.create_default_context()
        self.tls.check_hostname = False
        self.tls.verify_mode = ssl.CERT_NONE
        self.pages = []
        for listing in sorted(glob.glob(os.path.join(site, "page*.txt"))):
            page = os.path.basename(listing)[: -len(".txt")] + ".html"
            with open(listing) as f:
                self.pages.append((page, [line.strip() for line in f if line.strip()]))
        self.page = self.pages[0][0]
        self.new_cookies()

    def connect(self, host, https):
        if https:
            return http.client.HTTPSConnection(host, 443, timeout=10, context=self.tls)
        return http.client.HTTPConnection(host, 80, timeout=10)

    def headers(self, kind):
        """A browser's request headers: their size, cookies above all, varies from site to site."""
        headers = {
            "User-Agent": USER_AGENT,
            "Accept": ACCEPT[kind],
            "Accept-Language": "en-US,en;q=0.9",
            "Accept-Encoding": "gzip, deflate, br",
        }
        if kind != "page":
            headers["Referer"] = "https://www.news.example/" + self.page
        if self.cookie:
            headers["Cookie"] = self.cookie
        return headers

    def new_cookies(self):
        """Cookies of a visitor who may have logged in: none to a few kilobytes."""
        size = self.rng.choice([0, 0, 200, 700, 1500, 3000])
        pairs = []
        while sum(len(p) + 2 for p in pairs) < size:
            value = "".join(self.rng.choice("abcdef0123456789") for _ in range(self.rng.randint(8, 200)))
            pairs.append(f"c{len(pairs)}={value}")
        self.cookie = "; ".join(pairs)

    def get(self, conn, path, rate=None, kind="asset"):
        if kind == "asset" and self.rng.random() < 0.5:
            path += f"?v={self.rng.getrandbits(self.rng.choice([16, 32, 64])):x}"  # cache busting
        conn.request("GET", "/" + path, headers=self.headers(kind))
        response = conn.getresponse()
        if rate is None:
            response.read()
            return
        while chunk := response.read(16384):  # a player reads at its own pace
            time.sleep(len(chunk) / rate)

    def post(self, conn, path, size):
        """An analytics beacon or an upload: a JSON-ish body of `size` bytes."""
        body = ('{"events":"' + "x" * max(0, size - 14) + '"}').encode()
        headers = self.headers("api")
        headers["Content-Type"] = "application/json"
        conn.request("POST", "/" + path, body=body, headers=headers)
        conn.getresponse().read()

    def linger(self, conn, low, high):
        """Keeps a connection open and idle, as a browser does, then closes it."""
        idle = self.rng.uniform(low, high)

        def close():
            time.sleep(idle)
            conn.close()

        threading.Thread(target=close, daemon=True).start()

    def preconnect(self, host, https, count):
        for _ in range(count):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(5)
            try:
                sock.connect((host, 443 if https else 80))
                if https and self.rng.random() < 0.3:
                    self.abandon(sock)
                    continue
                if https:
                    sock = self.tls.wrap_socket(sock)
            except OSError:
                sock.close()
                continue
            if self.rng.random() < 0.5:
                # A duplicate of a connection the browser already has: closed as soon as it is
                # up, before the server's session tickets arrive, which the closed socket resets.
                sock.close()
            else:
                self.linger(sock, 0.05, 3.0)

    def race(self, host, count):
        """Opens `count` HTTPS connections at once, as a browser does for a page whose hosts one
        server holds (it coalesces them) or whose socket pool races: 1-4 of them carry the page,
        and the browser closes the rest together the moment the first is up. Those whose
        handshake was done close at once (the server's session tickets then draw resets); the
        others close after their ClientHello, before the server's first flight, which draws a
        reset a segment. A capture of a social site opens with sixteen such, twelve dropped.
        Returns the connections kept, as TLS sockets."""
        rng = self.rng
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        kept = rng.randint(1, min(4, count - 1))
        finish = [i < kept or rng.random() < 0.35 for i in range(count)]
        first_up = threading.Event()
        winners = []

        def racer(i):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(5)
            try:
                sock.connect((host, 443))
                if not finish[i]:
                    self.abandon(sock, until=first_up)
                    return
                tls = self.tls.wrap_socket(sock)
                if i < kept:
                    winners.append(tls)
                    first_up.set()
                else:
                    tls.close()
            except OSError:
                sock.close()

        racers = []
        for i in range(count):
            racers.append(threading.Thread(target=racer, args=(i,), daemon=True))
            racers[-1].start()
            time.sleep(rng.uniform(0.0, 0.004))
        for r in racers:
            r.join(12)
        return winners

    def adopt(self, host, tls):
        """An HTTPS connection over a socket that is already up."""
        conn = self.connect(host, True)
        conn.sock = tls
        return conn

    def abandon(self, sock, until=None):
        """Sends the ClientHello and closes before the answer (once `until` is set, if given), as
        a browser drops a connection another one beat: what the server sends after the close
        meets a closed socket, one reset a segment. What came before is read first, so the close
        is a FIN, as a browser's is."""
        outgoing = ssl.MemoryBIO()
        hello = self.tls.wrap_bio(ssl.MemoryBIO(), outgoing)
        try:
            hello.do_handshake()
        except ssl.SSLWantReadError:
            pass  # the ClientHello is written; the answer is not awaited
        try:
            sock.sendall(outgoing.read())
            if until is not None:
                until.wait(5)
            sock.setblocking(False)
            try:
                while sock.recv(65536):
                    pass
            except (BlockingIOError, InterruptedError):
                pass
        finally:
            sock.close()

    def tab(self, host, rng):
        """One tab of a web app: a single long connection, bursts of requests as the user scrolls."""
        conn = self.connect(host, True)
        page, assets = rng.choice(self.pages)
        self.get(conn, page, kind="page")
        for _ in range(rng.randint(10, 70)):
            what = rng.random()
            if what < 0.55:
                self.get(conn, rng.choice(assets))
            elif what < 0.85:
                self.get(conn, f"api/feed.json?after={rng.getrandbits(40):x}", kind="api")
            else:
                self.post(conn, "api/collect", rng.randint(200, 2000))
            # Mostly bursts of requests, now and then a pause while the user reads.
            time.sleep(rng.expovariate(4.0) if rng.random() < 0.85 else rng.uniform(0.5, 2.5))
        conn.close()

    def app_session(self):
        """A web app in several tabs; names are cached, so no lookups come between the tabs' flows."""
        rng = self.rng
        host = self.web6 if rng.random() < 0.5 else self.web4
        while len(self.cookie) < 500:  # a logged-in user of the app
            self.new_cookies()
        tabs = []
        for _ in range(rng.randint(4, 12)):
            tab_rng = random.Random(rng.getrandbits(64))
            tabs.append(threading.Thread(target=self.tab_safely, args=(host, tab_rng), daemon=True))
            tabs[-1].start()
            time.sleep(rng.uniform(0.0, 1.5))
        for t in tabs:
            t.join(120)

    def tab_safely(self, host, rng):
        try:
            self.tab(host, rng)
        except (OSError, http.client.HTTPException):
            pass  # this tab's connection failed; the others go on

    def visit(self):
        rng = self.rng
        https = rng.random() < 0.7
        v6 = rng.random() < 0.5
        host = self.web6 if v6 else self.web4
        subprocess.run(
            ["dig", "@" + self.dns, "+time=1", "+tries=1", "+short", rng.choice(NAMES), "AAAA" if v6 else "A"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3, check=False,
        )
        raced = []
        if rng.random() < 0.5:
            if https and rng.random() < 0.5:
                raced = self.race(host, rng.randint(4, 16))
            else:
                self.preconnect(host, https, rng.randint(2, 12))
        if rng.random() < 0.1:
            self.new_cookies()
        page, assets = rng.choice(self.pages)
        self.page = page
        first = self.adopt(host, raced.pop()) if raced else self.connect(host, https)
        self.get(first, page, kind="page")
        # The assets, split over parallel keep-alive connections (the page's one among them),
        # or all on the page's connection, as HTTP/2 multiplexes one origin's requests.
        lanes = 1 if https and rng.random() < 0.4 else rng.randint(2, 6)
        conns = [first]
        for _ in range(lanes - 1):
            conns.append(self.adopt(host, raced.pop()) if raced else self.connect(host, https))
        for spare in raced:
            self.linger(spare, 0.5, 15.0)
        shares = [assets[i::lanes] for i in range(lanes)]
        workers = [
            threading.Thread(target=lambda c=c, s=s: [self.get(c, a) for a in s], daemon=True)
            for c, s in zip(conns, shares)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        extra = rng.randrange(5)
        if extra == 0:  # a video: segments at the player's pace, on the page's connection
            for _ in range(rng.randint(2, 5)):
                self.get(first, f"video/seg{rng.randrange(4)}.bin", rate=rng.uniform(300e3, 2e6))
                time.sleep(rng.uniform(0.2, 2.0))
        elif extra == 1:  # the page polls its feed for a while
            for _ in range(rng.randint(2, 6)):
                self.get(first, f"api/feed.json?since={rng.randrange(1 << 16)}", kind="api")
                time.sleep(rng.uniform(0.8, 3.0))
        # The page reports to its analytics, and now and then the user uploads a photo.
        for _ in range(rng.choice([0, 0, 1, 2, 4])):
            self.post(first, "api/collect", rng.randint(200, 4000))
        if rng.random() < 0.05:
            self.post(first, "api/upload", rng.randint(20_000, 300_000))
        for c in conns:
            self.linger(c, 0.5, 15.0)


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    web4, web6, dns, site, seed = sys.argv[1:]
    browser = Browser(web4, web6, dns, site, int(seed))
    while True:
        try:
            if browser.rng.random() < 0.2:
                browser.app_session()
            else:
                browser.visit()
        except (OSError, http.client.HTTPException, subprocess.TimeoutExpired):
            time.sleep(1)  # the site or the network hiccuped; a user retries later
        time.sleep(browser.rng.uniform(0.8, 6.0))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
