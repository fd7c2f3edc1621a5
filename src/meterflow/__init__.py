"""meterflow: price energy meter records as a stream."""

__version__ = "0.1.0"
