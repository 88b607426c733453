"""ETag and 304 Not Modified on GET responses (Django's ConditionalGetMiddleware), keeping the rate-limit
headers on a 304: Django's not-modified response copies only the caching headers, and a client pacing its
polls by x-ratelimit-* must see them whatever the answer."""

from __future__ import annotations

from django.middleware.http import ConditionalGetMiddleware as DjangoConditionalGet

KEPT_ON_304 = ("x-ratelimit-", "openai-poll-after-ms", "retry-after")


class ConditionalGetMiddleware(DjangoConditionalGet):
    def process_response(self, request, response):
        answer = super().process_response(request, response)
        if answer is not response and answer.status_code == 304:
            for name, value in response.items():
                if name.lower().startswith(KEPT_ON_304):
                    answer[name] = value
        return answer
