"""The hub's domain logic: firmware packages, devices, updates and the event bus."""
