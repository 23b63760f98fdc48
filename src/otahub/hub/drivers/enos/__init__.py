"""The ``enos`` dialect on the hub: EnOS devices update from otahub unmodified.

Devices log in on the hub's MQTT endpoint with the signed EnOS CONNECT
(``auth``), then talk JSON request/reply on ``/sys/{pk}/{dk}/ota/device/…``
(``ota``). Upgrades are pushed straight onto the device's connection, never
routed; firmware is downloaded from a per-update HTTP URL with Range support
(``downloads``), or through the EnOS HTTP broker's ``/auth`` + ``/multipart``
pair (``broker_http``). Work for one device is done in order (``links``).

Mapping (``protocols/enos.py`` holds the protocol facts):

===================================  ==========================================
EnOS                                 otahub
===================================  ==========================================
CONNECT ``dk|securemode=2,…|``,      device looked up by (productKey, deviceKey),
user ``dk&pk``, signed password      sign checked; wrong sign or unknown keys:
                                     CONNACK 4; securemode 3/4: CONNACK 5
``inform`` ``{"version"}``           device's firmware version recorded; the
                                     update's target version: ``succeeded``;
                                     another version after step 100: ``failed``
                                     ("rolled back"); then a due push goes out
``upgrade`` (hub → device)           push-mode update ``pending`` → ``sent``;
                                     direct delivery QoS 1, ``id`` = update id;
                                     re-pushed on reconnect while still ``sent``
``progress`` step 0…99 / 100         ``downloading`` / ``installing``, percent =
                                     step; no active update: 764; update not
                                     pushed or offered yet: 765
``progress`` step < 0                ``failed``, code = step, reason = the step's
                                     meaning (-1 … -5) and ``desc``
``getversion``                       on-request update offered in ``data``
                                     (``pending`` → ``sent``); else ``[]``
``upgrade_reply`` code ≠ 200         ``failed``, "device rejected the upgrade"
foreign keys (request)               reply 1009 to the sender, log line
foreign keys (reply, SDK's ``None``) ignored (debug log)
malformed JSON / empty / bad fields  reply 1220 / 1251 / 1220 with a message
===================================  ==========================================

A push-mode update waits (``pending``, EnOS "To be Pushed") while the device
is offline, and until it has reported a version at least once (seed 004:
only such devices can be targeted) unless the update is forced. After a
CONNECT the push waits for the device's first ``inform`` or a grace period.
"""

from otahub.hub.drivers.enos.driver import EnosDriver

__all__ = ["EnosDriver"]
