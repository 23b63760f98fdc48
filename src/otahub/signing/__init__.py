"""Signed updates with TUF: keys, target signing, the hub's metadata repository.

The roles are TUF's: *root* (offline) names every role's keys; *targets*
(offline, the publisher's) signs what may be installed, by path
``<title>/<version>`` with length and hashes; *snapshot* and *timestamp*
(online, on the hub) pin the current versions of the other metadata and
keep it fresh. A hub that holds only the online keys can serve stale
metadata at worst, never a package the publisher did not sign.
"""
