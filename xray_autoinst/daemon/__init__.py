"""The local X-Ray daemon (UDP ingest, SQLite store, relay, sampling proxy) and terminal views.

Kept empty on purpose: ``xray-run --local`` imports ``xray_autoinst.daemon.local`` and must stay
cheap.
"""
