"""The one place a finished clip is stored, whoever made it (a gpu runner, a remote server): signed with its content
credentials first (videogen.provenance), then written with its thumbnail."""

from __future__ import annotations

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from videogen import provenance


def store(*, base: str, video: bytes, thumbnail: bytes, generation: provenance.Generation, derived: bool = False):
    """Sign the clip and store it as `base`.mp4 beside its thumbnail (`base`.webp): their storage keys. Nothing is
    stored when it cannot be signed (provenance.SigningError, fail-closed). Called outside any transaction: signing
    and storing are side effects the database cannot roll back. `derived`: the clip came from elsewhere."""
    signed = provenance.sign_mp4(video, generation, derived=derived)
    keys: list[str] = []
    try:
        keys.append(default_storage.save(f"{base}.mp4", ContentFile(signed)))
        keys.append(default_storage.save(f"{base}.webp", ContentFile(thumbnail)))
    except BaseException:
        for key in keys:
            default_storage.delete(key)
        raise
    return keys
