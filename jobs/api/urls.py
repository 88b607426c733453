from django.urls import path

from jobs.api import views

urlpatterns = [
    path("videos", views.VideosView.as_view()),
    path("videos/<str:video_id>", views.VideoDetailView.as_view()),
    path("videos/<str:video_id>/cancel", views.VideoCancelView.as_view()),
    path("videos/<str:video_id>/content", views.VideoContentView.as_view()),
    path("models", views.ModelsView.as_view()),
    path("notifications", views.NotificationsView.as_view()),
    path("credits", views.CreditsView.as_view()),
]
