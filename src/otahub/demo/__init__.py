"""``otahub demo``: a hub and one agent per dialect, updated end to end on one machine."""
