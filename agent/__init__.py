"""o2o-edge: the in-store edge agent."""

__version__ = "0.1.0"
