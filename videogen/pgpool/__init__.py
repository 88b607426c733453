"""Django's Postgres backend with a pooled-connection check that costs no round trip (see .base)."""
