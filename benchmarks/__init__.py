"""Benchmarks. They run the production profile on throwaway databases, so, unless SECRET_KEY is set, each run
gets a throwaway key of its own (inherited by every process it starts: they must sign alike); and unless
C2PA_SIGN_CERT is set, a throwaway local authority and content credentials signer (every gpu worker signs its
clips, and offers no slot without a signer)."""

import atexit
import os
import secrets
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "bench-" + secrets.token_urlsafe(48))

if not os.environ.get("C2PA_SIGN_CERT"):
    from videogen.provenance import issue_local_credentials

    _c2pa = Path(tempfile.mkdtemp(prefix="videogen-bench-c2pa-"))
    atexit.register(shutil.rmtree, _c2pa, True)
    os.environ.update(
        C2PA_SIGN_CERT=str(_c2pa / "signer.pem"),
        C2PA_SIGN_KEY=str(_c2pa / "signer.key"),
        C2PA_LOCAL_CA=str(_c2pa / "ca.pem"),
    )
    issue_local_credentials(
        authority_path=_c2pa / "ca.pem", cert_path=_c2pa / "signer.pem", key_path=_c2pa / "signer.key"
    )
