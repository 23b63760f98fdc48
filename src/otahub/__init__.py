"""otahub: over-the-air updates for MQTT-connected devices."""

__version__ = "0.1.0"
