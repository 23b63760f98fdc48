"""Fleet simulator: thousands of devices per process over real sockets, every dialect.

Each simulated device has its own MQTT connection and credentials and speaks
its dialect's device side as the real platforms' devices do; nothing is kept
but counters and a hasher per download, so a process holds thousands.
``otahub simulate`` (:mod:`otahub.cli.simulate`) runs it.
"""
