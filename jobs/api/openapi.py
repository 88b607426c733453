"""The API's description (/v1/openapi.json), readable without a key.

It depends only on the code, so each process builds it once, on first request, and serves the same bytes after:
building it walks every view and serializer, and an open route that rebuilt it per request was a cheap way to
load the web role. Clients and proxies may keep it for a while.
"""

from __future__ import annotations

import threading

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularJSONAPIView

MAX_AGE_SECONDS = 3600
_built: tuple[bytes, str] | None = None
_lock = threading.Lock()


@extend_schema(exclude=True)
class OpenApiView(SpectacularJSONAPIView):
    def get(self, request, *args, **kwargs):
        global _built
        with _lock:  # one build per process, however many requests arrive before it is done
            if _built is None:
                response = self.finalize_response(request, super().get(request, *args, **kwargs))
                response.render()
                _built = (response.content, response["Content-Type"])
        content, content_type = _built
        answer = HttpResponse(content, content_type=content_type)
        answer["Cache-Control"] = f"public, max-age={MAX_AGE_SECONDS}"
        return answer
