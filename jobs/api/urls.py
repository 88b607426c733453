from django.urls import path
from drf_spectacular.views import SpectacularRedocView

from jobs.api import openapi, views, webhooks

urlpatterns = [
    path("videos", views.VideosView.as_view()),
    path("videos/<str:video_id>", views.VideoDetailView.as_view()),
    path("videos/<str:video_id>/cancel", views.VideoCancelView.as_view()),
    path("videos/<str:video_id>/content", views.VideoContentView.as_view()),
    path("videos/<str:video_id>/appeal", views.VideoAppealView.as_view()),
    path("models", views.ModelsView.as_view()),
    path("notifications", views.NotificationsView.as_view()),
    path("notifications/read", views.NotificationsReadView.as_view()),
    path("credits", views.CreditsView.as_view()),
    path("notification_preferences", views.NotificationPreferencesView.as_view()),
    path("webhook_endpoints", webhooks.WebhookEndpointsView.as_view()),
    path("webhook_endpoints/<str:endpoint_id>", webhooks.WebhookEndpointDetailView.as_view()),
    path("webhook_endpoints/<str:endpoint_id>/rotate_secret", webhooks.WebhookRotateSecretView.as_view()),
    path("webhook_endpoints/<str:endpoint_id>/test", webhooks.WebhookTestView.as_view()),
    path("webhook_endpoints/<str:endpoint_id>/deliveries", webhooks.WebhookDeliveriesView.as_view()),
    path("webhook_endpoints/<str:endpoint_id>/deliveries/<str:event_id>/replay", webhooks.WebhookReplayView.as_view()),
    path("webhook_event_types", webhooks.WebhookEventTypesView.as_view()),
    path("openapi.json", openapi.OpenApiView.as_view(), name="openapi"),
    path("docs", SpectacularRedocView.as_view(url_name="openapi"), name="api-docs"),
]
