"""Every string the self-checkout kiosk shows, per language (the shopper's, by Accept-Language, as the portal)."""

from __future__ import annotations

from agent.portal_text import pick_language

__all__ = ["LANGUAGES", "kiosk_text", "pick_language"]

LANGUAGES = ("en", "fr")

_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Self-checkout",
        "connecting": "connecting…",
        "live": "live",
        "reconnecting": "reconnecting…",
        "not_set_up": "This kiosk is not set up. Please ask a member of staff.",
        "not_set_up_state": "not set up",
        "empty": "Put your basket on the table.",
        "unknown_items": "Some items are not recognised. A member of staff is on the way.",
        "item": "Item",
        "qty": "Qty",
        "price": "Price",
        "amount": "Amount",
        "total": "Total",
    },
    "fr": {
        "title": "Caisse libre-service",
        "connecting": "connexion…",
        "live": "en direct",
        "reconnecting": "reconnexion…",
        "not_set_up": "Cette borne n'est pas configurée. Merci de demander à un membre du personnel.",
        "not_set_up_state": "non configurée",
        "empty": "Posez votre panier sur la table.",
        "unknown_items": "Certains articles ne sont pas reconnus. Un membre du personnel arrive.",
        "item": "Article",
        "qty": "Qté",
        "price": "Prix",
        "amount": "Montant",
        "total": "Total",
    },
}


def kiosk_text(lang: str) -> dict[str, str]:
    """All the kiosk's strings in `lang` (English for a language we do not have)."""
    return _TEXT.get(lang, _TEXT["en"])
