"""Every string the captive portal shows, in one place, per language. `TEXT_VERSION` is stored with each
consent, so the exact wording a guest agreed to can always be shown again."""

from __future__ import annotations

__all__ = ["LANGUAGES", "TEXT_VERSION", "pick_language", "text"]

TEXT_VERSION = "2026-12-v2"
LANGUAGES = ("en", "fr")

_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Free Wi-Fi",
        "welcome": "Welcome to {store}",
        "terms": "By connecting you accept the terms of use: fair use, no unlawful activity, sessions of {minutes} minutes.",
        "choices": "To go online, tick the first box: it accepts the terms above. The other two are optional, and you can change your mind later on this page:",
        "c_wifi": "I accept the terms of use and want to go online",
        "c_marketing": "Send me offers by e-mail or in the app",
        "c_personalisation": "Personalise my visit in store (recognise my phone near the shelves and counters)",
        "loyalty": "Loyalty card number or e-mail (optional)",
        "connect": "Connect",
        "success": "You are connected. Enjoy your visit!",
        "continue": "Continue browsing",
        "withdraw": "Withdraw my consent and forget me",
        "withdrawn": "Done: your choices and identifiers were deleted from this store.",
        "need_wifi": "Please tick the Wi-Fi box to connect.",
        "bad_request": "Something went wrong with this page. Please open it again.",
        "too_many": "Too many attempts. Please wait a minute.",
        "loyalty_bad": "This loyalty number or e-mail does not look right.",
        "unverified": "We will check your loyalty card as soon as the store is back online.",
        "logout": "Disconnect",
        "logged_out": "You are disconnected. Thank you for your visit!",
        "time_left": "Your session ends in {minutes} minutes ({end}).",
        "your_offer": "Your offer today",
        "withdraw_explain": "This deletes, from this store's gateway: your choices, your loyalty number or e-mail, and your phone's address if you let us recognise it. Your Wi-Fi session ends with its time as usual. The store's cloud is told to forget you too.",
        "no_query": "Connect to the Wi-Fi network of {store}: this page opens by itself. If it does not, open any website in your browser.",
        "refused": "This page has expired or was opened from another device. Reconnect to the Wi-Fi network to get a fresh page.",
        "nds_down": "The Wi-Fi gateway is not answering right now. Please try again in a minute.",
    },
    "fr": {
        "title": "Wi-Fi gratuit",
        "welcome": "Bienvenue chez {store}",
        "terms": "En vous connectant, vous acceptez les conditions d'utilisation : usage raisonnable, aucune activité illicite, sessions de {minutes} minutes.",
        "choices": "Pour aller sur Internet, cochez la première case : elle accepte les conditions ci-dessus. Les deux autres sont facultatives et modifiables plus tard sur cette page :",
        "c_wifi": "J'accepte les conditions d'utilisation et je veux aller sur Internet",
        "c_marketing": "Recevoir des offres par e-mail ou dans l'application",
        "c_personalisation": "Personnaliser ma visite en magasin (reconnaître mon téléphone près des rayons et des caisses)",
        "loyalty": "Numéro de carte de fidélité ou e-mail (facultatif)",
        "connect": "Se connecter",
        "success": "Vous êtes connecté. Bonne visite !",
        "continue": "Continuer la navigation",
        "withdraw": "Retirer mon consentement et m'oublier",
        "withdrawn": "C'est fait : vos choix et identifiants ont été effacés de ce magasin.",
        "need_wifi": "Cochez la case Wi-Fi pour vous connecter.",
        "bad_request": "Un problème est survenu avec cette page. Merci de la rouvrir.",
        "too_many": "Trop de tentatives. Merci de patienter une minute.",
        "loyalty_bad": "Ce numéro de fidélité ou cet e-mail ne semble pas correct.",
        "unverified": "Nous vérifierons votre carte de fidélité dès que le magasin sera de nouveau en ligne.",
        "logout": "Se déconnecter",
        "logged_out": "Vous êtes déconnecté. Merci de votre visite !",
        "time_left": "Votre session se termine dans {minutes} minutes ({end}).",
        "your_offer": "Votre offre du jour",
        "withdraw_explain": "Cela efface, de la passerelle de ce magasin : vos choix, votre numéro de fidélité ou e-mail, et l'adresse de votre téléphone si vous nous avez permis de le reconnaître. Votre session Wi-Fi se termine à l'heure prévue. Le cloud du magasin est aussi prié de vous oublier.",
        "no_query": "Connectez-vous au Wi-Fi de {store} : cette page s'ouvre d'elle-même. Sinon, ouvrez n'importe quel site dans votre navigateur.",
        "refused": "Cette page a expiré ou a été ouverte depuis un autre appareil. Reconnectez-vous au Wi-Fi pour obtenir une nouvelle page.",
        "nds_down": "La passerelle Wi-Fi ne répond pas pour le moment. Merci de réessayer dans une minute.",
    },
}


def pick_language(accept_language: str | None) -> str:
    """The first supported language in Accept-Language (by q-value), else English."""
    best: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "").split(",")):
        piece = part.strip()
        if not piece:
            continue
        tag, _, params = piece.partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = tag.strip().lower().split("-")[0]
        if lang in LANGUAGES:
            best.append((-q, i, lang))
    return sorted(best)[0][2] if best else "en"


def text(lang: str, key: str, **values: object) -> str:
    return _TEXT.get(lang, _TEXT["en"])[key].format(**values)
