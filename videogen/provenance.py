"""Content credentials: every stored clip carries a signed C2PA manifest (c2pa-python) that says it is AI-generated.

The manifest holds a `c2pa.actions` assertion whose `c2pa.created` action names the digital source type
`trainedAlgorithmicMedia` (IPTC's term for media a trained model made: machine-readable "AI-generated"), the
model and its version (the action's software agent) and when it was made, and our own `org.videogen.generation`
assertion with the platform. A clip a remote server made keeps what it carried: it becomes an ingredient of our
manifest.

The signer is an X.509 end-entity certificate (C2PA_SIGN_CERT, with its issuers) and its private key (C2PA_SIGN_KEY).
c2pa refuses a self-signed signer, so `manage.py c2pa_setup` makes a local authority and a signer it issues for the
embedded profile (issue_local_credentials); production deployments configure their own.

Signing happens once, in gpu_runner.outputs, before a clip is stored: outside any transaction (a side effect with
no database in it), and fail-closed (a clip that cannot be signed is never stored; see docs/provenance.md).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
from django.conf import settings

log = logging.getLogger(__name__)

PLATFORM = "videogen"
# IPTC's digital source type for media a trained model made (what C2PA readers show as AI-generated).
AI_GENERATED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
GENERATION_LABEL = "org.videogen.generation"
ALGORITHMS = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")
MP4, WEBP = "video/mp4", "image/webp"


class SigningError(Exception):
    """The clip could not be signed (credentials missing or unusable, or c2pa refused): it must not be stored."""


@dataclass(frozen=True)
class Generation:
    """What the manifest says about a clip."""

    model: str
    model_version: str
    created_at: dt.datetime
    backend: str = "local"  # "local", or "remote:<pool>" for a clip a remote server made


def platform_version() -> str:
    try:
        return metadata.version(PLATFORM)
    except metadata.PackageNotFoundError:
        return "unknown"


def model_version(model: str, default: str) -> str:
    """MODEL_VERSIONS names it ("name=version,..."), else what the caller knows (the weights' folder, the server's
    model name)."""
    pairs = (item.split("=", 1) for item in settings.MODEL_VERSIONS if "=" in item)
    return {name.strip(): version.strip() for name, version in pairs}.get(model) or default


def manifest(generation: Generation, mime: str = MP4) -> dict:
    when = generation.created_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    agent = {"name": generation.model, "version": generation.model_version}
    return {
        "claim_generator_info": [{"name": PLATFORM, "version": platform_version()}],
        "format": mime,
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": AI_GENERATED,
                            "softwareAgent": agent,
                            "when": when,
                        }
                    ]
                },
            },
            {
                "label": GENERATION_LABEL,
                "data": {
                    "platform": PLATFORM,
                    "platform_version": platform_version(),
                    "model": generation.model,
                    "model_version": generation.model_version,
                    "created_at": when,
                    "backend": generation.backend,
                },
            },
        ],
    }


def _read(path: str, what: str) -> bytes:
    if not path:
        raise SigningError(f"{what} is not set")
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SigningError(f"{what} {path}: {exc.strerror or exc}") from None


def _signer():
    import c2pa

    cfg = settings.C2PA
    alg = cfg["SIGN_ALG"].strip().lower()
    if alg not in ALGORITHMS:
        raise SigningError(f"C2PA_SIGN_ALG {alg!r} is not one of {', '.join(ALGORITHMS)}")
    chain = _read(cfg["SIGN_CERT"], "C2PA_SIGN_CERT")
    key = _read(cfg["SIGN_KEY"], "C2PA_SIGN_KEY")
    try:
        # No timestamp authority: that would be an outbound call without a deadline of ours inside every signing.
        return c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg.encode(), chain, key, None))
    except c2pa.C2paError as exc:
        raise SigningError(f"the signing credentials are unusable: {exc}") from None


def _context():
    import c2pa

    # No thumbnail of the clip inside the manifest (ours is stored beside it), and no network while signing.
    return c2pa.Context.from_dict(
        {"builder": {"thumbnail": {"enabled": False}}, "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    )


def _sign(data: bytes, generation: Generation, *, mime: str, derived: bool) -> bytes:
    import c2pa

    signer = _signer()
    try:
        builder = c2pa.Builder(manifest(generation, mime), context=_context())
        if derived:
            ingredient = {"title": f"{generation.backend}.{mime.rsplit('/', 1)[1]}", "relationship": "componentOf"}
            builder.add_ingredient(ingredient, mime, io.BytesIO(data))
        out = io.BytesIO()
        builder.sign(signer, mime, io.BytesIO(data), out)
        return out.getvalue()
    except Exception as exc:  # c2pa's: a self-signed or expired certificate, a key that is not the certificate's, ...
        raise SigningError(str(exc) or type(exc).__name__) from None
    finally:
        signer.close()


def sign(data: bytes, generation: Generation, *, mime: str = MP4, derived: bool = False) -> bytes:
    """The file (an MP4 clip, or its WebP thumbnail) with our signed manifest embedded, its pixels untouched.
    `derived`: it came from elsewhere (a remote server); it is recorded as an ingredient, with any manifest it
    carried. Raises SigningError."""
    from videogen import metrics  # here: importing this module (set-up, benchmarks) must not start prometheus_client

    try:
        signed = _sign(data, generation, mime=mime, derived=derived)
    except SigningError as exc:
        metrics.C2PA_SIGNINGS.labels("failed").inc()
        log.error("content credentials: cannot sign a %s (%s): the clip is not stored", mime, exc)
        raise
    metrics.C2PA_SIGNINGS.labels("signed").inc()
    return signed


def check_signer() -> str:
    """Sign a one-frame clip with the configured credentials: the subject they sign as. Raises SigningError."""
    from cryptography import x509

    from videogen.video_io import encode_mp4

    sample = encode_mp4(np.zeros((1, 16, 16, 3), dtype=np.uint8), fps=1)
    made = Generation(model="check", model_version="0", created_at=dt.datetime.now(dt.UTC))
    _sign(sample, made, mime=MP4, derived=False)
    certificate = x509.load_pem_x509_certificates(_read(settings.C2PA["SIGN_CERT"], "C2PA_SIGN_CERT"))[0]
    return certificate.subject.rfc4514_string()


# --- the visible mark (a per-tier option: TIER_<TIER>_WATERMARK) ---------------------------------------------------

WATERMARK_TEXT = "AI-generated"


def watermark(frames: np.ndarray) -> np.ndarray:
    """The frames (F, H, W, 3) uint8 with a small "AI-generated" mark in the bottom-right corner: light text on a
    darkened band, drawn once and blended into every frame (before encoding, so it survives any re-encoding)."""
    from PIL import Image, ImageDraw, ImageFont

    _, height, width, _ = frames.shape
    size = max(8, min(height, width) // 24)
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), WATERMARK_TEXT, font=font)
    pad = max(2, size // 4)
    box_w, box_h = right - left + 2 * pad, bottom - top + 2 * pad
    x0, y0 = max(0, width - box_w - pad), max(0, height - box_h - pad)
    text = Image.new("L", (width, height), 0)
    ImageDraw.Draw(text).text((x0 + pad - left, y0 + pad - top), WATERMARK_TEXT, fill=255, font=font)
    ink = np.asarray(text, dtype=np.float32)[None, :, :, None] / 255.0
    band = np.zeros((1, height, width, 1), dtype=np.float32)
    band[:, y0 : y0 + box_h, x0 : x0 + box_w] = 0.5
    out = frames.astype(np.float32) * (1.0 - band)
    out = out * (1.0 - 0.85 * ink) + 255.0 * 0.85 * ink
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# --- reading back --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """A clip's manifest as c2pa's reader validated it against the trust anchors given."""

    state: str  # "Trusted" (valid, signer chains to a trust anchor), "Valid" (valid, signer unknown), "Invalid"
    failures: tuple[
        str, ...
    ]  # validation failure codes (e.g. signingCredential.untrusted, assertion.bmffHash.mismatch)
    manifest: dict = field(repr=False)

    def assertion(self, label: str) -> dict | None:
        for assertion in self.manifest.get("assertions", []):
            if assertion["label"] == label or assertion["label"].startswith(f"{label}.v"):
                return assertion["data"]
        return None

    @property
    def created(self) -> dict | None:
        """The `c2pa.created` action, when there is one."""
        actions = (self.assertion("c2pa.actions") or {}).get("actions", [])
        return next((a for a in actions if a.get("action") == "c2pa.created"), None)

    @property
    def ai_generated(self) -> bool:
        return bool(self.created and self.created.get("digitalSourceType") == AI_GENERATED)


def read(data: bytes, *, trust_anchors: str, mime: str = MP4) -> Credentials | None:
    """The file's active manifest, validated with only `trust_anchors` (PEM) trusted; None if it carries none."""
    import c2pa

    context = c2pa.Context.from_dict(
        {
            "trust": {"trust_anchors": trust_anchors},
            "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
        }
    )
    reader = c2pa.Reader.try_create(mime, io.BytesIO(data), None, context)
    if reader is None:
        return None
    with reader:
        results = reader.get_validation_results() or {}
        failures = (results.get("activeManifest") or {}).get("failure", [])
        return Credentials(
            state=reader.get_validation_state() or "",
            failures=tuple(f["code"] for f in failures),
            manifest=reader.get_active_manifest() or {},
        )


# --- credentials for the embedded profile ----------------------------------------------------------------------


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, PLATFORM), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def _usage(*, sign: bool):
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not sign,
        crl_sign=not sign,
        encipher_only=False,
        decipher_only=False,
    )


def make_authority(common_name: str, *, days: int = 3650):
    """A certificate authority: (certificate, private key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(sign=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def issue_signer(authority, authority_key, common_name: str, *, days: int = 825):
    """An end-entity signing certificate the authority issues: (certificate, private key). C2PA's profile: key usage
    digitalSignature only, and an extended key usage its trust list accepts (emailProtection here)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(authority.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(sign=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority_key.public_key()), critical=False)
        .sign(authority_key, hashes.SHA256())
    )
    return certificate, key


def pem(certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return certificate.public_bytes(serialization.Encoding.PEM)


def key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    tmp.replace(path)


def issue_local_credentials(*, authority_path: Path, cert_path: Path, key_path: Path) -> None:
    """A local authority (its certificate at `authority_path`, its key beside it) and a signer it issues: the
    signer's certificate chain (itself, then the authority) at `cert_path`, its key at `key_path` (mode 0600).
    Readers that trust the authority's certificate see our clips as Trusted; nobody else does."""
    authority, authority_key = make_authority(f"{PLATFORM} local content credentials authority")
    signer, signer_key = issue_signer(authority, authority_key, f"{PLATFORM} content credentials signer")
    _write(authority_path.with_suffix(".key"), key_pem(authority_key), 0o600)
    _write(authority_path, pem(authority), 0o644)
    _write(key_path, key_pem(signer_key), 0o600)
    _write(cert_path, pem(signer) + pem(authority), 0o644)
