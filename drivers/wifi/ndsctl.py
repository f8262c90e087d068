"""Authenticating a guest back to openNDS with its control tool, `ndsctl`.

    ndsctl auth CLIENT SESSIONTIMEOUT UPLOAD_RATE DOWNLOAD_RATE UPLOAD_QUOTA DOWNLOAD_QUOTA CUSTOM
    ndsctl deauth CLIENT

CLIENT is the client's MAC, IP or token; the session timeout is in minutes, rates in kbit/s and quotas in
kB (0 = openNDS's configured default); CUSTOM is a free string (base64 here) logged by openNDS.
The command runs with an argument list (no shell), a timeout, and its failure is an exception with
what ndsctl said.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass

__all__ = ["NdsCtl", "NdsCtlError"]

_TIMEOUT_S = 10.0


class NdsCtlError(RuntimeError):
    """ndsctl failed, is missing, or timed out."""


@dataclass(frozen=True, slots=True)
class NdsCtl:
    path: str

    async def _run(self, *args: str) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(self.path, *args, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.STDOUT)
        except OSError as exc:
            raise NdsCtlError(f"cannot run {self.path}: {exc.strerror}") from exc
        try:
            async with asyncio.timeout(_TIMEOUT_S):
                out, _ = await proc.communicate()
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise NdsCtlError(f"{self.path} {args[0]} did not answer within {_TIMEOUT_S:g}s") from exc
        text = out.decode("utf-8", "replace").strip()
        if proc.returncode != 0:
            raise NdsCtlError(f"{self.path} {args[0]} exited {proc.returncode}: {text[:200]}")
        return text

    async def auth(self, client: str, *, minutes: int, upload_kbps: int = 0, download_kbps: int = 0,
                   upload_quota_kb: int = 0, download_quota_kb: int = 0, custom: str = "") -> str:
        tag = base64.b64encode(custom.encode()).decode() if custom else "0"
        return await self._run("auth", client, str(minutes), str(upload_kbps), str(download_kbps),
                               str(upload_quota_kb), str(download_quota_kb), tag)

    async def deauth(self, client: str) -> str:
        return await self._run("deauth", client)
