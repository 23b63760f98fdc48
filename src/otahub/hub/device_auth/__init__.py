"""Who may connect to the hub's MQTT endpoint and what each client may touch.

The guarantees live here once, below the dialect drivers: thin-edge and
tedge-legacy device passwords, the topic rules of those devices, and what
anonymous clients may publish (``install`` wires them into the endpoint).
ThingsBoard and EnOS keep their own authenticators and ACLs in their drivers.
"""
