"""thin-edge's file-transfer service on the hub, shared by both thin-edge dialects."""
