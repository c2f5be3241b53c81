"""raylens: observability and cost bundle for Ray clusters."""

__version__ = "0.1.0"
