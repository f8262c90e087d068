"""No secret reaches a log line or the diagnostics bundle: a daemon (as a process, at debug level) is driven
with every secret it knows, right and wrong, in headers, bodies and query strings; then its stderr and the
bundle are searched for each one."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from agent.redact import RedactSecrets, redact
from agent.web.auth import hash_password
from tests.conftest import Mosquitto, free_port, write_config

EXE = str(Path(sys.executable).with_name("o2o-edge"))
SECRETS = {
    "api_token": "api-9f1c2e7b5d",
    "password": "pass-4be81d0c3a",
    "station": "kiosk-7d3e9a61f0",
    "screen": "screen-2c8b40d7e5",
    "mqtt": "mqtt-5e0a7c93b1",
    "faskey": "faskey-83d1f6b20c",
    # Wrong guesses are someone's mistyped secret: not logged either.
    "wrong_station": "kiosk-WRONG-51b9",
    "wrong_api": "api-WRONG-6a2f",
    "wrong_password": "pass-WRONG-0d7e",
}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a form login's 303 carries the cookie: keep that answer


_OPENER = urllib.request.build_opener(_NoRedirect)


def call(base: str, path: str, *, method: str = "GET", headers: dict[str, str] | None = None,
         body: bytes | None = None, timeout: float = 5) -> tuple[int, bytes, Any]:
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.read(1_000_000), resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers
    except TimeoutError:
        return 0, b"", {}


def test_no_secret_in_logs_or_the_diagnostics_bundle(tmp_path: Path) -> None:
    s = SECRETS
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "gw", s["mqtt"]], check=True, capture_output=True)
    broker = Mosquitto(tmp_path)
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true", "allow_anonymous false")
                           + f"password_file {passwd}\n")
    broker.start()
    port = free_port()
    config = write_config(
        tmp_path, store={"id": "s", "gateway": "g", "name": "Secret store"},
        http={"listen": f"127.0.0.1:{port}", "api_token": s["api_token"],
              "users": [{"name": "boss", "role": "admin", "password_hash": hash_password(s["password"])}]},
        mqtt={"host": "127.0.0.1", "port": broker.port, "username": "gw", "password": s["mqtt"],
              "reconnect_min_s": 0.05, "reconnect_max_s": 0.3},
        rfid={"readers": [{"id": "r1", "port": "loop://", "protocol": "em4100", "baudrate": 9600,
                           "silence_timeout_s": 3600, "zones": {1: "till"}}]},
        checkout={"stations": [{"id": "sco-1", "zones": ["till"], "token": s["station"]}]},
        offers={"signage": [{"id": "screen-1", "token": s["screen"], "zones": ["till"]}]},
        wifi={"portal": {"fas_secure_level": 1, "faskey": s["faskey"], "ndsctl": "/bin/true"}})
    log_file = tmp_path / "stderr.log"
    with open(log_file, "wb") as err:
        proc = subprocess.Popen([EXE, "run", "--config", str(config), "--log-level", "debug"], stderr=err)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if call(base, "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, log_file.read_text()[-3000:]
            time.sleep(0.05)
        api = {"Authorization": f"Bearer {s['api_token']}"}
        deadline = time.monotonic() + 15
        while not json.loads(call(base, "/api/status", headers=api)[1])["mqtt"]["connected"]:
            assert time.monotonic() < deadline, "never connected to the broker"
            time.sleep(0.1)

        # Kiosk and screen tokens in query strings and headers, right and wrong, on 2xx and non-2xx answers.
        for token in (s["station"], s["wrong_station"]):
            q = urllib.parse.urlencode({"token": token})
            for path in (f"/kiosk/sco-1?{q}", f"/kiosk/nope?{q}", f"/api/checkout/sco-1/basket?{q}",
                         f"/api/checkout/nope/basket?{q}", f"/api/checkout/sco-1/stream?{q}", f"/nowhere?{q}",
                         f"/api/status?{q}", f"/static/..%2fconfig.toml?{q}"):
                call(base, path, timeout=1)
            call(base, "/api/checkout/sco-1/pay", method="POST", headers={"Authorization": f"Bearer {token}"},
                 body=b'{"payment_id": "p1", "basket_id": "x", "total": "1.00"}')
        for token in (s["screen"], s["wrong_station"]):
            call(base, f"/signage/screen-1?token={token}", timeout=1)
            call(base, f"/signage/nope?token={token}&password={s['password']}", timeout=1)
        call(base, "/api/status", headers={"Authorization": f"Bearer {s['wrong_api']}"})
        call(base, f"/portal/?tok={s['wrong_station']}&faskey={s['faskey']}", timeout=1)
        # A request aiohttp itself refuses (bad header), with the secret in its request line.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(f"GET /kiosk/sco-1?token={s['station']} HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n"
                        .encode())
            raw.recv(4096)
        # Staff logins: wrong and right, JSON and form.
        for password in (s["wrong_password"], s["password"]):
            call(base, "/login", method="POST", headers={"Content-Type": "application/json"},
                 body=json.dumps({"username": "boss", "password": password}).encode())
        code, _, headers = call(base, "/login", method="POST",
                                headers={"Content-Type": "application/x-www-form-urlencoded"},
                                body=urllib.parse.urlencode({"username": "boss", "password": s["password"]}).encode())
        cookie = headers.get("Set-Cookie", "").split(";")[0]
        assert code == 303 and cookie.startswith("o2o_session="), (code, headers)
        session = {"Cookie": cookie}
        me = json.loads(call(base, "/api/me", headers=session)[1])
        call(base, "/api/actions/sync", method="POST", headers=session)  # no CSRF token: refused, logged
        call(base, "/api/actions/sync", method="POST", headers={**session, "X-CSRF-Token": me["csrf"]})
        code, bundle, _ = call(base, "/api/diagnostics", headers=session)
        assert code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        broker.stop()

    logs = log_file.read_text()
    assert "kiosk: GET /api/checkout/sco-1/basket refused from 127.0.0.1: wrong token" in logs  # path, no query
    assert "staff: boss downloaded a diagnostics bundle" in logs  # the user, not the session (its id is the cookie)
    text = bundle.decode()
    assert json.loads(text)["recent_logs"], "the bundle has the recent logs"
    found = {name: where for name, value in {**SECRETS, "session": cookie.split("=", 1)[1], "csrf": me["csrf"]}.items()
             for where, body in (("logs", logs), ("bundle", text)) if value in body}
    assert not found, f"secrets found: {found}\n" + "\n".join(
        line for line in logs.splitlines() if any(v in line for v in SECRETS.values()))


def test_the_filter_redacts_messages_and_tracebacks() -> None:
    assert redact('GET /kiosk/sco-1?token=abc&lang=fr HTTP/1.1" 401') == 'GET /kiosk/sco-1?token=***&lang=fr HTTP/1.1" 401'
    assert redact("Authorization: Bearer abc.def") == "Authorization: Bearer ***"
    assert redact("/portal/?clientip=1&tok=xyz") == "/portal/?clientip=1&tok=***"
    assert redact("a mistoken=1 stays") == "a mistoken=1 stays"
    record = logging.LogRecord("aiohttp.access", logging.INFO, __file__, 1, '%s "%s"', ("1.2.3.4", "GET /x?token=s3"), None)
    try:
        raise ValueError("bad /y?password=hunter2")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert RedactSecrets().filter(record)
    assert record.getMessage() == '1.2.3.4 "GET /x?token=***"'
    assert record.exc_text is not None and "hunter2" not in record.exc_text and "password=***" in record.exc_text
