"""Benchmarks. They run the production profile on throwaway databases, so, unless SECRET_KEY is set, each run
gets a throwaway key of its own (inherited by every process it starts: they must sign alike)."""

import os
import secrets

os.environ.setdefault("SECRET_KEY", "bench-" + secrets.token_urlsafe(48))
