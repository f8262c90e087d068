"""Every feature of the daemon, one line each, in start order (stopped in reverse).

A new feature is its own files plus one line here: the lifecycle starts it when
the config wants it, the web app serves its routes, the downlink routes its
documents and commands, /api/status and /metrics carry its status, the staff
page draws its card, the rules engine feeds it events if it is a `Rule`.
"""

from __future__ import annotations

from agent.component import Component
from agent.components.activity import ActivityComponent
from agent.components.ble import Ble
from agent.components.catalog import Catalog
from agent.components.config import ConfigControl
from agent.components.housekeeping import Housekeeping
from agent.components.outbox import OutboxComponent
from agent.components.readers import Readers
from agent.components.sync import Sync
from agent.components.wifi import GuestWifiComponent, PresenceComponent
from agent.o2o.collect import Collect
from agent.o2o.members import Members
from agent.o2o.offers import Offers
from agent.o2o.qr import Qr
from agent.o2o.stock import Stock
from agent.o2o.store_kpis import StoreKpis
from agent.rules.engine import RulesEngine
from agent.rules.exit_gate import ExitGate
from agent.rules.selfcheckout import SelfCheckout

__all__ = ["COMPONENTS", "register"]

COMPONENTS: list[type[Component]] = [
    OutboxComponent,     # first up, last down: every event published by the others is committed
    Catalog,             # catalog and sold ledger, read by the rules
    ConfigControl,       # config/set, reload-config
    ActivityComponent,   # the staff page's feed, gate alarms, the last hour
    Members,             # members/set: who may be recognised, with which consents
    ExitGate,            # rules before their sources, so no tag event is missed
    SelfCheckout,
    Stock,               # stock per GTIN and zone from RFID (agent/o2o/stock_counts.py)
    Offers,              # proximity offers: campaigns/set, A/B with holdout, attribution
    Collect,             # click-and-collect: arrival, handover
    StoreKpis,           # the day's O2O measures, kpi.daily
    RulesEngine,
    Readers,
    Ble,
    GuestWifiComponent,
    PresenceComponent,
    Qr,                  # dynamic QR codes: qr/set, /q/{code}, printable SVGs
    Housekeeping,
    Sync,                # last up, first down: says "offline" before the rest stops
]


def register(component: type[Component], *, before: type[Component] | None = None) -> None:
    """Add a component (a plug-in, a test's toy rule) to the registry, before `before` or at the end."""
    if component in COMPONENTS:
        return
    COMPONENTS.insert(COMPONENTS.index(before) if before is not None else len(COMPONENTS), component)
