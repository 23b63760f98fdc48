"""Dialect drivers: the glue between a device protocol, the services and a transport."""
