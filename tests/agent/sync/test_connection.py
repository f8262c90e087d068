"""The MQTT connection: TLS with server verification and client certificates, passwords, MQTT 3.1.1, the will."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.events import Event
from tests.conftest import Mosquitto, Subscriber, free_port, wait_for, write_config


def _cert(subject: str, issuer_key: Any, issuer: x509.Name | None, *, ca: bool, san: str | None = None,
          key: Any = None) -> tuple[Any, x509.Certificate]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        import ipaddress

        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san))]),
                                        critical=False)
    return key, builder.sign(issuer_key or key, hashes.SHA256())


def _write(path: Path, key: Any, cert: x509.Certificate) -> tuple[Path, Path]:
    cert_path, key_path = path.with_suffix(".crt"), path.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca_key, ca = _cert("o2o test CA", None, None, ca=True)
    ca_crt, _ = _write(tmp_path / "ca", ca_key, ca)
    srv_key, srv = _cert("broker", ca_key, ca.subject, ca=False, san="127.0.0.1")
    srv_crt, srv_keyf = _write(tmp_path / "server", srv_key, srv)
    cli_key, cli = _cert("gw-test", ca_key, ca.subject, ca=False)
    cli_crt, cli_keyf = _write(tmp_path / "client", cli_key, cli)
    other_key, other = _cert("someone else's CA", None, None, ca=True)
    other_crt, _ = _write(tmp_path / "other-ca", other_key, other)
    return {"ca": ca_crt, "server_crt": srv_crt, "server_key": srv_keyf, "client_crt": cli_crt,
            "client_key": cli_keyf, "other_ca": other_crt}


def tls_broker(tmp_path: Path, pki: dict[str, Path], *, require_cert: bool) -> Mosquitto:
    broker = Mosquitto(tmp_path)
    broker.conf.write_text(broker.conf.read_text() + (
        f"cafile {pki['ca']}\ncertfile {pki['server_crt']}\nkeyfile {pki['server_key']}\n"
        f"require_certificate {'true' if require_cert else 'false'}\n"))
    return broker


async def test_tls_with_server_verification_and_client_certificate(tmp_path: Path, pki: dict[str, Path],
                                                                   config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    broker = tls_broker(tmp_path, pki, require_cert=True)
    broker.start()
    try:
        mqtt = {"host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.2,
                "tls": {"ca_file": str(pki["ca"]), "cert_file": str(pki["client_crt"]),
                        "key_file": str(pki["client_key"])}}
        ra = await start_agent(config_factory(mqtt=mqtt))
        await wait_for(lambda: ra.agent["mqtt"].uplink.ready, 10)
        ra.agent.hub.publish(Event("gate.alarm", "exit-1", {}))
        await wait_for(lambda: ra.agent.outbox.depth == 0, 10)
    finally:
        broker.stop()


@pytest.mark.parametrize(("tls", "error"), [
    ({"ca_file": "other_ca"}, "certificate verify failed"),  # a broker we cannot verify: refused
])
async def test_tls_refuses_an_unverified_broker(tmp_path: Path, pki: dict[str, Path], tls: dict[str, str],
                                                error: str, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    broker = tls_broker(tmp_path, pki, require_cert=False)
    broker.start()
    try:
        mqtt = {"host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.2,
                "tls": {k: str(pki[v]) for k, v in tls.items()}}
        ra = await start_agent(config_factory(mqtt=mqtt))
        await wait_for(lambda: ra.agent["mqtt"].uplink.last_error, 10)
        assert not ra.agent["mqtt"].uplink.connected
        assert error in ra.agent["mqtt"].uplink.last_error
    finally:
        broker.stop()


async def test_username_and_password(tmp_path: Path, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "gw-test", "s3cret"], check=True,
                   capture_output=True, timeout=30)
    broker = Mosquitto(tmp_path)
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true", "allow_anonymous false")
                           + f"password_file {passwd}\n")
    broker.start()
    try:
        base = {"host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.2,
                "username": "gw-test"}
        bad = await start_agent(config_factory(mqtt={**base, "password": "wrong"}))
        await wait_for(lambda: bad.agent["mqtt"].uplink.last_error, 10)
        assert "refused" in bad.agent["mqtt"].uplink.last_error and "authoriz" in bad.agent["mqtt"].uplink.last_error.lower()
        await bad.stop()
        good = await start_agent(config_factory(mqtt={**base, "password": "s3cret"}))
        await wait_for(lambda: good.agent["mqtt"].uplink.ready, 10)
    finally:
        broker.stop()


async def test_mqtt_311(mosquitto: Mosquitto, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    sub = Subscriber(mosquitto.port, "o2o/v1/test-store/gw-test/events")
    try:
        ra = await start_agent(config_factory(mqtt={"host": "127.0.0.1", "port": mosquitto.port, "protocol": "3.1.1"}))
        await wait_for(lambda: ra.agent["mqtt"].uplink.ready, 10)
        e = Event("tag.seen", "r1", {"epc": "30"})
        ra.agent.hub.publish(e)
        await wait_for(lambda: any(x["id"] == e.id for p in sub.payloads() for x in json.loads(p)["events"]), 10)
    finally:
        sub.close()


def test_will_says_offline_when_the_gateway_vanishes(mosquitto: Mosquitto, tmp_path: Path) -> None:
    config = write_config(tmp_path, http={"listen": f"127.0.0.1:{free_port()}"},
                          mqtt={"host": "127.0.0.1", "port": mosquitto.port})
    sub = Subscriber(mosquitto.port, "o2o/v1/test-store/gw-test/state")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("o2o-edge")), "run", "--config", str(config)],
                            stderr=subprocess.DEVNULL)
    try:
        import time

        deadline = time.monotonic() + 15
        while not any(json.loads(p).get("online") for p in sub.payloads()) and time.monotonic() < deadline:
            time.sleep(0.05)
        birth = json.loads(sub.payloads()[-1])
        assert birth["online"] is True and birth["gateway"] == "gw-test" and "version" in birth
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 15
        while json.loads(sub.payloads()[-1]).get("online") is not False and time.monotonic() < deadline:
            time.sleep(0.05)
        assert json.loads(sub.payloads()[-1]) == {"online": False, "gateway": "gw-test"}
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()
