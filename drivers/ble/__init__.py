"""Bluetooth Low Energy: HCI advertising reports, beacon formats, sources (an adapter or a capture file)."""
