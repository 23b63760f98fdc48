"""The hub's HTTP side: REST API, downloads, dashboard."""
