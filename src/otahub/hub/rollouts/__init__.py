"""Rollouts: one release for a whole fleet, in stages, with automatic brakes.

``spec`` checks and parses what an operator asks for, ``stages``, ``rate`` and
``window`` hold the engine's rules as plain functions, ``service`` is the API
(create, start, pause, ...) and ``engine`` the loop that drives running rollouts
from the database.
"""
