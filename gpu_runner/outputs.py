"""The one place a finished clip is stored, whoever made it (a gpu runner, a remote server): the clip and its
thumbnail signed with their content credentials first (videogen.provenance), then written."""

from __future__ import annotations

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from videogen import provenance


def store(*, base: str, video: bytes, thumbnail: bytes, generation: provenance.Generation, derived: bool = False):
    """Sign the clip and its thumbnail, and store them as `base`.mp4 and `base`.webp: their storage keys. Nothing is
    stored when either cannot be signed (provenance.SigningError, fail-closed). Called outside any transaction:
    signing and storing are side effects the database cannot roll back. `derived`: the clip came from elsewhere."""
    signed = provenance.sign(video, generation, derived=derived)
    signed_thumbnail = provenance.sign(thumbnail, generation, mime=provenance.WEBP)
    keys: list[str] = []
    try:
        keys.append(default_storage.save(f"{base}.mp4", ContentFile(signed)))
        keys.append(default_storage.save(f"{base}.webp", ContentFile(signed_thumbnail)))
    except BaseException:
        for key in keys:
            default_storage.delete(key)
        raise
    return keys
