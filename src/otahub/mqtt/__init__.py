"""MQTT 3.1.1 / 5.0: a sans-IO codec and the hub's server endpoint."""

from otahub.mqtt.codec import Decoder, encode
from otahub.mqtt.errors import MQTTError

__all__ = ["Decoder", "MQTTError", "encode"]
