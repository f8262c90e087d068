"""The local HTTP side: status API and health (the staff page, kiosk and portal plug in here)."""
