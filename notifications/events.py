"""The event types a user can be notified of, and which channels carry them."""

from __future__ import annotations

EVENT_TYPES: dict[str, str] = {
    "video.queued": "The video waits for a GPU (again, after a retry).",
    "video.in_progress": "A GPU started generating the video.",
    "video.progress": "Generation progress (throttled, ephemeral: live streams only, may be dropped).",
    "video.completed": "The video is ready to download.",
    "video.failed": "The video failed; its error says why.",
    "video.cancelled": "The video was cancelled.",
    "video.moderation_blocked": "Moderation blocked the prompt, the reference or the result.",
    "video.held_for_review": "The prompt, the reference or the result waits for a human moderator.",
    "video.appeal_decided": "A moderator decided the appeal of a rejected video (approved: it runs again).",
}
# Webhooks carry every event in the log; progress is never written to it.
WEBHOOK_EVENT_TYPES = tuple(name for name in EVENT_TYPES if name != "video.progress")
