"""uptend: keeps the agents on a fleet of servers up to date, signed and unbrickable."""

__version__ = "0.1.0"
