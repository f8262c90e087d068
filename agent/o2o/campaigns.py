"""Proximity-offer campaigns (`campaigns/set`): the document, its checks, schedules, and who gets what.

Pure: no clock, no I/O. A campaign document is validated whole (pydantic,
problems with their key paths) before anything changes. Schedules are read
in the store's time zone. A member's variant and holdout are a stable hash
of (campaign, member), so the cloud recomputes them without asking:

    h(s)     = int.from_bytes(sha256(s.encode()).digest()[:8], "big") / 2**64     # uniform in [0, 1)
    held out = h(f"{campaign}|{member}|holdout") < holdout
    variant  = the first variant whose cumulative share exceeds h(f"{campaign}|{member}|variant")
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.config_sections import DocVersion

__all__ = ["Campaign", "CampaignsDoc", "Offer", "Triggered", "assign", "stable_unit"]

# A store runs tens of campaigns; 200 is the benchmark's load, beyond a few thousand is a mistake.
MAX_CAMPAIGNS = 5000
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# Shares must add up to 1 within this (they are decimals typed by people).
SHARE_TOLERANCE = 1e-6


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Offer(_Strict):
    title: str = Field(min_length=1, max_length=120)
    text: str = Field(default="", max_length=1000)
    code: str | None = Field(default=None, max_length=64)
    url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://[^\s]+$")


class Trigger(_Strict):
    on: Literal["enter", "dwell", "wifi.session.start"]
    zones: list[str] = Field(default_factory=list, max_length=100)  # enter/dwell: at least one
    dwell_s: float | None = Field(default=None, gt=0, le=86400)  # counts for "dwell" only (DESIGN's example sends
    # it with every trigger): taken and ignored with "enter" and "wifi.session.start"

    @model_validator(mode="after")
    def _shape(self) -> Trigger:
        if self.on in ("enter", "dwell") and not self.zones:
            raise ValueError(f"a trigger on {self.on!r} needs zones")
        if self.on == "dwell" and self.dwell_s is None:
            raise ValueError("a dwell trigger needs dwell_s")
        return self


class Schedule(_Strict):
    start: date | None = None
    end: date | None = None  # inclusive
    days: list[Day] = Field(default_factory=lambda: list(DAYS))
    from_: time | None = Field(default=None, alias="from")
    to: time | None = None  # exclusive; before `from`: the window runs past midnight

    @model_validator(mode="after")
    def _order(self) -> Schedule:
        if self.start and self.end and self.end < self.start:
            raise ValueError("end is before start")
        if (self.from_ is None) != (self.to is None):
            raise ValueError("from and to go together")
        return self

    def active(self, local: datetime) -> bool:
        """`local` is the store's local time (aware or naive in the store's zone)."""
        day = local.date()
        if (self.start and day < self.start) or (self.end and day > self.end):
            return False
        if self.from_ is None or self.to is None:
            return DAYS[local.weekday()] in self.days
        now = local.time().replace(tzinfo=None)
        if self.from_ <= self.to:
            return DAYS[local.weekday()] in self.days and self.from_ <= now < self.to
        # past midnight: 22:00-02:00 on a friday runs into saturday morning
        if now >= self.from_:
            return DAYS[local.weekday()] in self.days
        return now < self.to and DAYS[(local.weekday() - 1) % 7] in self.days


class Audience(_Strict):
    segments: list[str] = Field(default_factory=list, max_length=100)  # empty: every consenting member


class Variant(_Strict):
    id: str = Field(pattern=_ID)
    share: float = Field(gt=0, le=1)
    offer: Offer


class Caps(_Strict):
    per_person_per_day: int = Field(default=1, ge=1, le=100)
    cooldown_s: float = Field(default=3600.0, ge=0, le=30 * 86400)


class Campaign(_Strict):
    id: str = Field(pattern=_ID)
    priority: int = Field(default=0, ge=-1000, le=1000)
    trigger: Trigger
    schedule: Schedule = Field(default_factory=Schedule)
    audience: Audience = Field(default_factory=Audience)
    offer: Offer
    variants: list[Variant] = Field(default_factory=list, max_length=20)
    holdout: float = Field(default=0.0, ge=0, le=1)
    caps: Caps = Field(default_factory=Caps)
    products: list[str] = Field(default_factory=list, max_length=10_000)  # GTINs whose purchase redeems it
    attribution_window_s: float = Field(default=86400.0, gt=0, le=90 * 86400)
    signage: bool = True  # shown (without anyone's name) on the signage screens of its zones

    @field_validator("products")
    @classmethod
    def _gtins(cls, value: list[str]) -> list[str]:
        out = []
        for i, g in enumerate(value):
            if not g.isdigit() or len(g) not in (8, 12, 13, 14):
                raise ValueError(f"products[{i}]: a GTIN is 8, 12, 13 or 14 digits")
            out.append(g.zfill(14))
        return out

    @model_validator(mode="after")
    def _variants(self) -> Campaign:
        if self.variants:
            total = sum(v.share for v in self.variants)
            if abs(total - 1) > SHARE_TOLERANCE:
                raise ValueError(f"variant shares add up to {total:g}, not 1")
            ids = [v.id for v in self.variants]
            if len(set(ids)) != len(ids):
                raise ValueError("variant ids must be unique")
        return self

    def offer_of(self, variant: str | None) -> Offer:
        for v in self.variants:
            if v.id == variant:
                return v.offer
        return self.offer


class CampaignsDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: DocVersion
    campaigns: list[Campaign] = Field(max_length=MAX_CAMPAIGNS)

    @field_validator("campaigns")
    @classmethod
    def _unique(cls, value: list[Campaign]) -> list[Campaign]:
        seen: dict[str, int] = {}
        for i, c in enumerate(value):
            if c.id in seen:
                raise ValueError(f"campaigns[{i}]: id {c.id!r} also at campaigns[{seen[c.id]}]")
            seen[c.id] = i
        return value


def stable_unit(text: str) -> float:
    """A number in [0, 1) from text, the same on every machine (sha256, first 8 bytes)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def assign(campaign: Campaign, member: str) -> tuple[str | None, bool]:
    """(variant, held out) for a member: deterministic, documented in the module docstring."""
    held_out = stable_unit(f"{campaign.id}|{member}|holdout") < campaign.holdout
    variant = None
    if campaign.variants:
        u = stable_unit(f"{campaign.id}|{member}|variant")
        acc = 0.0
        variant = campaign.variants[-1].id
        for v in campaign.variants:
            acc += v.share
            if u < acc:
                variant = v.id
                break
    return variant, held_out


@dataclass(frozen=True, slots=True)
class Triggered:
    """A decision: this campaign, for this member, at this moment (shown, or held out)."""

    campaign: Campaign
    member: str
    variant: str | None
    held_out: bool
    zone: str | None
    trigger: str

    def data(self) -> dict[str, Any]:
        offer = self.campaign.offer_of(self.variant).model_dump(exclude_defaults=True)
        return {"campaign": self.campaign.id, "variant": self.variant, "member": self.member, "zone": self.zone,
                "trigger": self.trigger, "offer": offer}


def by_priority(campaigns: Iterable[Campaign]) -> list[Campaign]:
    """The highest priority first; ties by id, so the same moment always picks the same campaign."""
    return sorted(campaigns, key=lambda c: (-c.priority, c.id))
