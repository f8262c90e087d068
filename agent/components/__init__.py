"""The daemon's features as components (agent/component.py); agent/registry.py lists them in start order."""
