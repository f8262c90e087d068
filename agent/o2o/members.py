"""The store app's members who may be recognised in the store, and their consents (`members/set`).

A person is recognised only through consent: a member whose phone (the store
app's iBeacon) is heard is named only with personalisation consent, and is
offered something only with marketing consent; everyone else stays anonymous
(the daily-hashed ids of agent/beacons.py). A captive-portal guest who ticked
personalisation and gave a loyalty id is recognised through their Wi-Fi
session the same way (agent/guest_wifi.py), with the marketing choice they
made there.

`members/set` is a full replace, versioned, reported on `members/reported`;
the members live in o2o-data.db (SQLite) and survive a restart. A member dropped
by a new document, or whose consent is withdrawn (`consent.withdrawn` naming
them), is forgotten: deleted from the database and no longer recognised.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from agent.component import Context, Document, Rule
from agent.config_sections import DocVersion
from agent.documents import Report, applied, rejected, take_versioned
from agent.events import Event
from agent.json_bytes import json_bytes
from agent.storage import SqliteWorker, storage_errors, transaction

__all__ = ["MAX_MEMBERS", "O2O_DB", "Member", "Members", "MembersDoc", "o2o_db"]

log = logging.getLogger(__name__)

# The members who may walk into one store (the cloud sends each store its own regulars, not the whole app).
# Parsing takes about 1.2 KB per member while the document is applied (12 MiB for 10,000); at this bound
# that is ~60 MiB on top of the daemon's ~70, well inside the unit's MemoryMax=256M (200,000 would not be).
MAX_MEMBERS = 50_000
# 50,000 members with names and segments are ~11 MB of JSON; anything bigger is refused before it is parsed.
MAX_MEMBERS_BYTES = 16 * 1024 * 1024
_UUID = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS members (member TEXT PRIMARY KEY, doc BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS o2o_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


# The O2O features' own database file, beside the outbox (never inside it: the outbox is for events only).
O2O_DB = "o2o-data.db"


def o2o_db(ctx: Context, name: str) -> SqliteWorker:
    """A worker on o2o-data.db (one thread per store that uses it)."""
    return SqliteWorker(ctx.storage_dir / O2O_DB, name=name, label=f"{name} store")


def normal_uuid(value: str) -> str:
    u = value.replace("-", "").lower()
    return f"{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}"


# A member arrives in the tens of thousands: slotted dataclasses, not BaseModels, which take about three
# times the memory each (10,000 members: 11.6 MiB parsed instead of 30 MiB; the unit has MemoryMax=256M).
_MEMBER_CONFIG = ConfigDict(extra="forbid")


@pydantic_dataclass(frozen=True, slots=True, config=_MEMBER_CONFIG)
class IBeaconIdentity:
    uuid: str = Field(pattern=_UUID)
    major: int = Field(ge=0, le=65535)
    minor: int = Field(ge=0, le=65535)

    @field_validator("uuid")
    @classmethod
    def _normal(cls, value: str) -> str:
        return normal_uuid(value)


@pydantic_dataclass(frozen=True, slots=True, config=_MEMBER_CONFIG)
class Consents:
    personalisation: bool = False
    marketing: bool = False


@pydantic_dataclass(frozen=True, slots=True, config=_MEMBER_CONFIG)
class MemberDoc:
    member: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@+-]+$")
    name: str | None = Field(default=None, max_length=80)  # how staff greet them ("Ms B."), for collect
    ibeacon: IBeaconIdentity | None = None
    consents: Consents = Field(default_factory=Consents)
    segments: list[str] = Field(default_factory=list, max_length=50)


class MembersDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: DocVersion
    members: list[MemberDoc] = Field(max_length=MAX_MEMBERS)

    @field_validator("members")
    @classmethod
    def _unique(cls, value: list[MemberDoc]) -> list[MemberDoc]:
        seen: dict[str, int] = {}
        beacons: dict[tuple[str, int, int], int] = {}
        for i, m in enumerate(value):
            if m.member in seen:
                raise ValueError(f"members[{i}]: member {m.member!r} also at members[{seen[m.member]}]")
            seen[m.member] = i
            if m.ibeacon is not None:
                key = (m.ibeacon.uuid, m.ibeacon.major, m.ibeacon.minor)
                if key in beacons:
                    raise ValueError(f"members[{i}].ibeacon: the same phone as members[{beacons[key]}]")
                beacons[key] = i
        return value


@dataclass(frozen=True, slots=True)
class Member:
    member: str
    name: str | None
    personalisation: bool
    marketing: bool
    segments: frozenset[str]

    @classmethod
    def of(cls, doc: MemberDoc, shared: dict[frozenset[str], frozenset[str]] | None = None) -> Member:
        """`shared`: one frozenset per distinct segment list (thousands of members share a handful)."""
        segments = frozenset(doc.segments)
        if shared is not None:
            segments = shared.setdefault(segments, segments)
        return cls(doc.member, doc.name, doc.consents.personalisation, doc.consents.marketing, segments)


class MembersStatus(BaseModel):
    version: int
    members: int
    recognisable: int  # with personalisation consent and a phone
    forgotten: int  # since start, by withdrawal


class Members(Rule):
    """Also a rule: it takes `consent.withdrawn` to forget whoever withdrew."""

    key = "members"
    status_model = MembersStatus
    kinds = frozenset({"consent.withdrawn"})

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._db = o2o_db(ctx, "members")
        self.version = 0
        self._members: dict[str, Member] = {}
        self._beacons: dict[tuple[str, int, int], str] = {}
        self._app_uuids: set[str] = set()
        self.forgotten = 0
        # Told when a member is forgotten (the BLE tracker stops following them by name).
        self.on_forget: list[Callable[[str], None]] = []

    async def start(self) -> None:
        rows = await self._db.open(_load)
        assert rows is not None
        version, docs = rows
        self._index(version, docs)
        if self.ctx.demo and self.version == 0:
            from agent.o2o.demo import DEMO_MEMBERS

            await self._apply(MembersDoc.model_validate(DEMO_MEMBERS))

    async def stop(self) -> None:
        await self._db.close()

    def _index(self, version: int, docs: Iterable[MemberDoc]) -> None:
        members, beacons = {}, {}
        shared: dict[frozenset[str], frozenset[str]] = {}
        for d in docs:
            members[d.member] = Member.of(d, shared)
            if d.ibeacon is not None:
                beacons[(d.ibeacon.uuid, d.ibeacon.major, d.ibeacon.minor)] = d.member
        self.version, self._members, self._beacons = version, members, beacons
        self._app_uuids = {uuid for uuid, _, _ in beacons}

    # -- who is who ------------------------------------------------------------------------------

    def get(self, member: str) -> Member | None:
        return self._members.get(member)

    def is_person(self, uuid: str) -> bool:
        return uuid in self._app_uuids

    def member_of(self, uuid: str, major: int, minor: int) -> str | None:
        """The member behind a phone, only with personalisation consent."""
        member = self._beacons.get((uuid, major, minor))
        m = self._members.get(member) if member is not None else None
        return m.member if m is not None and m.personalisation else None

    def __len__(self) -> int:
        return len(self._members)

    # -- members/set -----------------------------------------------------------------------------

    def documents(self) -> Iterable[Document]:
        yield Document("members/set", self.on_members, "members/reported", max_bytes=MAX_MEMBERS_BYTES,
                       refused=lambda errors: rejected(None, errors, self.version))

    async def on_members(self, payload: bytes, retained: bool = False) -> Report | None:
        return await take_versioned("members", MembersDoc, payload, retained, running=self.version,
                                    apply=self._apply, max_bytes=MAX_MEMBERS_BYTES)

    async def _apply(self, doc: MembersDoc) -> Report:
        dropped = set(self._members) - {m.member for m in doc.members}
        await self._db.run(_replace, doc)
        self._index(doc.version, doc.members)
        for member in dropped:
            self._told_to_forget(member)
        log.info("members: version %d, %d member(s) (%d with a phone they may be recognised by), %d dropped",
                 doc.version, len(doc.members), len(self._beacons), len(dropped))
        return applied(doc.version, members=len(doc.members))

    # -- withdrawal ------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        member = event.data.get("member")
        if isinstance(member, str) and member in self._members:
            self.forget(member)

    def forget(self, member: str) -> None:
        """Forget a member now (memory) and on disk (in the background, the loop never waits for it)."""
        m = self._members.pop(member, None)
        if m is None:
            return
        self._beacons = {k: v for k, v in self._beacons.items() if v != member}
        self.forgotten += 1
        self._told_to_forget(member)
        self._db.submit(_delete, member).add_done_callback(_log_failure)
        log.info("members: a member withdrew their consent and was forgotten")

    def _told_to_forget(self, member: str) -> None:
        for callback in list(self.on_forget):
            callback(member)

    def status(self) -> MembersStatus:
        recognisable = sum(1 for m in self._beacons.values() if self._members[m].personalisation)
        return MembersStatus(version=self.version, members=len(self._members), recognisable=recognisable,
                             forgotten=self.forgotten)


def _log_failure(fut: Any) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("members: forgetting on disk failed: %s", fut.exception())


# -- on the worker thread ------------------------------------------------------------------------

_MEMBER: TypeAdapter[MemberDoc] = TypeAdapter(MemberDoc)


def _load(conn: sqlite3.Connection) -> tuple[int, list[MemberDoc]]:
    conn.executescript(_SCHEMA)
    row = conn.execute("SELECT value FROM o2o_meta WHERE key = 'members_version'").fetchone()
    docs = [_MEMBER.validate_json(d) for (d,) in conn.execute("SELECT doc FROM members")]
    return (int(row[0]) if row else 0), docs


def _replace(conn: sqlite3.Connection, doc: MembersDoc) -> None:
    rows = ((m.member, json_bytes(m)) for m in doc.members)  # one at a time: orjson writes dataclasses itself
    with storage_errors("members write failed"), transaction(conn):
        conn.execute("DELETE FROM members")
        conn.executemany("INSERT INTO members (member, doc) VALUES (?, ?)", rows)
        conn.execute("INSERT OR REPLACE INTO o2o_meta (key, value) VALUES ('members_version', ?)",
                     (str(doc.version),))


def _delete(conn: sqlite3.Connection, member: str) -> None:
    with storage_errors("members delete failed"), transaction(conn):
        conn.execute("DELETE FROM members WHERE member = ?", (member,))

