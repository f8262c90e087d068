"""Dynamic QR codes as a component: `qr/set`, the `/q/{code}` redirect, printable SVGs, scan counts.

    /q/{code}               anyone (guest listener too): 302 to the code's current target, `qr.scanned`
                            {code, zone, campaign} (+ `member` only for a guest on the store Wi-Fi who
                            consented to personalisation); 404 with a small page for an unknown code;
                            429 beyond SCANS_PER_MIN from one client address (counted, nothing recorded)
    GET /api/qr             staff or api token: the codes, their targets and scan counts
    GET /api/qr/{code}.svg  staff or api token: the printable code for `{base_url}/q/{code}` (segno)

The document and its checks are in agent/o2o/qr_codes.py. Nothing about
the scanner is kept: the client address serves the rate limit (in memory,
bounded) and the Wi-Fi session lookup, and is neither logged nor recorded.
"""

from __future__ import annotations

import asyncio
import html
import io
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from pydantic import BaseModel

from agent.component import Component, Context, Document
from agent.components.wifi import GuestWifiComponent
from agent.documents import DocumentError, Report, applied, rejected, take_versioned
from agent.o2o.qr_codes import CODE_RE, QrDoc, QrStore, check_targets
from agent.web.ratelimit import RateLimiter
from agent.web.routes import Access, Route

__all__ = ["Qr", "QrStatus"]

log = logging.getLogger(__name__)

# The SQLite file of the O2O features (tables prefixed per feature), beside the outbox.
DB_NAME = "o2o-data.db"
# A person scans a handful of codes a minute; a phone scanning more is a script (or a stuck camera app).
SCANS_PER_MIN = 30
# Client addresses the rate limiter remembers (a busy store has a few thousand phones a day).
MAX_CLIENTS = 20_000
# Scan counts reach the disk this often (and at stop).
FLUSH_EVERY_S = 10.0
# 10,000 codes of ~200 bytes; a 5 MB document is a mistake.
MAX_QR_BYTES = 2 * 1024 * 1024
# Refusals are logged at most once per this many (all are counted).
LOG_EVERY = 1000

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font:1.1rem/1.5 system-ui,sans-serif;max-width:30rem;margin:3rem auto;padding:0 1rem;color:#222}}
h1{{font-size:1.4rem}}.fr{{color:#555}}</style></head>
<body><h1>{title}</h1><p>{text}</p><p class="fr" lang="fr">{text_fr}</p><p>{store}</p></body></html>
"""


def _page(status: int, title: str, text: str, text_fr: str, store: str, **headers: str) -> web.Response:
    body = _PAGE.format(title=html.escape(title), text=html.escape(text), text_fr=html.escape(text_fr),
                        store=html.escape(store))
    return web.Response(status=status, text=body, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store", **headers})


class QrStatus(BaseModel):
    version: int
    codes: int
    scans: int
    unknown: int  # scans of codes that do not exist (or are malformed)
    rate_limited: int


class QrLine(BaseModel):
    code: str
    target: str
    zone: str | None
    campaign: str | None
    url: str
    svg: str
    scans: int
    last_scan: float | None


class QrList(BaseModel):
    version: int
    base_url: str | None
    allowed_hosts: list[str]
    codes: list[QrLine]


class Qr(Component):
    key = "qr"
    status_model = QrStatus
    card = "qr"
    card_order = 85

    def __init__(self, ctx: Context, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(ctx)
        self.store = QrStore(ctx.storage_dir / DB_NAME)
        self.limiter = RateLimiter(SCANS_PER_MIN, 60.0, max_keys=MAX_CLIENTS, clock=clock)
        self.scanned = 0
        self.unknown = 0
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self.store.open()

    async def stop(self) -> None:
        await self.store.close()

    def tasks(self) -> Iterable[tuple[str, Callable[[], Awaitable[None]]]]:
        return [("qr scan counts", self._flush_loop)]

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            await self.store.flush()

    # -- qr/set ----------------------------------------------------------------------------------

    def documents(self) -> Iterable[Document]:
        yield Document("qr/set", self.on_qr_set, "qr/reported", max_bytes=MAX_QR_BYTES,
                       refused=lambda errors: rejected(None, errors, self.store.version))

    async def on_qr_set(self, payload: bytes, retained: bool = False) -> Report | None:
        async with self._lock:  # two pushes in a row: the second compares its version with the first's
            return await take_versioned("qr", QrDoc, payload, retained, running=self.store.version,
                                        apply=self._apply, max_bytes=MAX_QR_BYTES)

    async def _apply(self, doc: QrDoc) -> Report:
        errors = check_targets(doc)
        if errors:
            raise DocumentError(errors)
        await self.store.replace(doc)
        self.ctx.publish("qr.updated", {"version": doc.version, "codes": len(doc.codes)})
        log.info("qr: version %d, %d code(s), base %s", doc.version, len(doc.codes), doc.base_url)
        return applied(doc.version, codes=len(doc.codes))

    # -- routes ----------------------------------------------------------------------------------

    @classmethod
    def routes(cls) -> Iterable[Route]:
        yield Route("GET", "/q/{code}", cls._scan, Access.GUEST,
                    "A printed QR code: redirects (302) to the code's current target and records the scan",
                    content_type="text/html", errors=(404, 429), params={"code": "the code printed in the URL"},
                    tag="guest", success=302, staff_listener_too=True)
        yield Route("GET", "/api/qr", cls._list, Access.STAFF, "The QR codes, their targets and scan counts",
                    response=QrList)
        yield Route("GET", "/api/qr/{code}.svg", cls._svg, Access.STAFF,
                    "The printable QR code (SVG) for {base_url}/q/{code}", content_type="image/svg+xml",
                    errors=(404,), params={"code": "a code of the running qr/set document"})

    def _store_name(self) -> str:
        store = self.ctx.config.store
        return store.name or store.id

    async def _scan(self, request: web.Request) -> web.Response:
        client = request.remote or "?"
        if not self.limiter.allow(client):
            if self.limiter.refused % LOG_EVERY == 1:
                log.warning("qr: scan rate limit hit (%d scan(s) refused so far)", self.limiter.refused)
            return _page(429, "Too many scans", "Please wait a minute and scan again.",
                         "Veuillez patienter une minute avant de scanner à nouveau.", self._store_name(),
                         **{"Retry-After": "60"})
        code = request.match_info["code"]
        entry = self.store.codes.get(code) if CODE_RE.fullmatch(code) else None
        if entry is None:
            self.unknown += 1
            return _page(404, "This code is not in use", "Sorry, this code does not lead anywhere any more. "
                         "Ask a member of staff, they will be glad to help.",
                         "Ce code n'est plus utilisé. Demandez à un vendeur, il vous aidera volontiers.",
                         self._store_name())
        data: dict[str, str | None] = {"code": entry.code, "zone": entry.zone, "campaign": entry.campaign}
        member = self._consenting_member(client)
        if member is not None:
            data["member"] = member
        self.store.count(entry.code, time.time())
        self.scanned += 1
        self.ctx.publish("qr.scanned", data)
        return web.Response(status=302, headers={"Location": entry.target, "Cache-Control": "no-store"})

    def _consenting_member(self, client: str) -> str | None:
        """The loyalty id of a guest on the store Wi-Fi who consented to personalisation; None for anyone else."""
        guest = self.ctx.get(GuestWifiComponent)
        if guest is None:
            return None
        session = guest.wifi.session_of(client)
        return session.member if session is not None else None  # member is set only with that consent

    async def _list(self, request: web.Request) -> web.Response:
        doc = self.store.doc
        lines = []
        if doc is not None:
            for c in doc.codes:
                s = self.store.scans.get(c.code)
                lines.append(QrLine(code=c.code, target=c.target, zone=c.zone, campaign=c.campaign, url=doc.url(c.code),
                                    svg=f"/api/qr/{c.code}.svg", scans=s.count if s else 0,
                                    last_scan=s.last if s else None))
        answer = QrList(version=self.store.version, base_url=doc.base_url if doc else None,
                        allowed_hosts=doc.allowed_hosts if doc else [], codes=lines)
        return web.json_response(answer.model_dump(mode="json"))

    async def _svg(self, request: web.Request) -> web.Response:
        code = request.match_info["code"]
        doc = self.store.doc
        if doc is None or not CODE_RE.fullmatch(code) or code not in self.store.codes:
            raise web.HTTPNotFound(text=f"no QR code {code[:64]!r} in the running qr/set document")
        svg = await asyncio.to_thread(render_svg, doc.url(code), code)
        return web.Response(body=svg, content_type="image/svg+xml", headers={
            "Content-Disposition": f'inline; filename="qr-{code}.svg"', "Cache-Control": "no-store"})

    # -- what staff and ops see ------------------------------------------------------------------

    def status(self) -> QrStatus:
        return QrStatus(version=self.store.version, codes=len(self.store.codes),
                        scans=sum(s.count for s in self.store.scans.values()), unknown=self.unknown,
                        rate_limited=self.limiter.refused)

    def metrics(self) -> Iterable[Metric]:
        scans = CounterMetricFamily("o2o_qr_scans", "QR code scans by outcome", labels=["outcome"])
        for outcome, n in (("redirected", self.scanned), ("unknown", self.unknown),
                           ("rate_limited", self.limiter.refused)):
            scans.add_metric([outcome], n)
        return [scans]


def render_svg(url: str, code: str) -> bytes:
    """The printable QR code for `url`: error correction M (survives a scuffed sticker), a white quiet zone."""
    import segno  # only when a code is drawn

    qr = segno.make_qr(url, error="m")
    out = io.BytesIO()
    qr.save(out, kind="svg", scale=10, border=4, light="#fff", title=f"QR code {code}", xmldecl=True)
    return out.getvalue()
