from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from jobs import views
from jobs.remote_webhooks import remote_webhook
from videogen import health

urlpatterns = [
    path("", views.index, name="index"),
    path("settings", views.settings_page, name="settings"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("v1/", include("jobs.api.urls")),
    path("internal/backends/<str:pool>/webhook", remote_webhook, name="remote-webhook"),
]

handler404 = "videogen.urls.not_found"
handler500 = "jobs.api.errors.json_500"


def not_found(request, exception=None):
    # API clients get the OpenAI envelope; people get Django's page.
    if request.path.startswith("/v1/"):
        from jobs.api.errors import json_404

        return json_404(request, exception)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)
