"""`o2o-edge hash-password`: a login line the config accepts, or a refusal before anything is printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent.config import load_config
from agent.web.auth import verify_password

EXE = str(Path(sys.executable).with_name("o2o-edge"))


def hash_password(*args: str, password: str = "correct horse") -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, "hash-password", *args], input=password + "\n", capture_output=True, text=True,
                          timeout=60)


def test_the_line_printed_is_a_login_the_config_takes(tmp_path: Path) -> None:
    out = hash_password("jean.dupont", "admin")
    assert out.returncode == 0, out
    config = tmp_path / "c.toml"
    config.write_text(f'[store]\nid = "s1"\ngateway = "gw-1"\n[http]\nusers = [\n  {out.stdout.strip()},\n]\n')
    (user,) = load_config(config).http.users
    assert (user.name, user.role) == ("jean.dupont", "admin")
    assert verify_password("correct horse", user.password_hash) and not verify_password("wrong", user.password_hash)


def test_a_name_the_config_would_refuse_is_refused_here() -> None:
    out = hash_password("Jean Dupont", "staff")
    assert out.returncode == 2 and out.stdout == ""
    assert "'Jean Dupont' cannot be a login name" in out.stderr


def test_a_short_password_is_refused() -> None:
    out = hash_password("jean", "staff", password="short")
    assert out.returncode == 1 and out.stdout == "" and "at least 8 characters" in out.stderr
