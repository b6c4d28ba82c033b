from django.conf import settings
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import include, path, re_path

# No Django admin: every write to accounts, groups, grants, roles, connections, tokens and the
# tool catalogue goes through a portal service that records it (and has its side effects).
urlpatterns = [
    path("accounts/", include("allauth.urls")),
    # The portal's few static files (vendored htmx) are served by the app itself, so
    # one process (demo or production) needs no separate web server; a CDN may sit in front.
    re_path(rf"^{settings.STATIC_URL.lstrip('/')}(?P<path>.*)$", serve_static, {"insecure": True}),
    path("", include("portal.urls")),
]
