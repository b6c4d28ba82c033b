from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from portal.admin_site import restrict_admin_to_superusers

restrict_admin_to_superusers(admin.site)

urlpatterns = [
    # The admin signs in through allauth (MFA, rate limits, audit), never its own form.
    path("admin/login/", RedirectView.as_view(url="/accounts/login/?next=/admin/",
                                              query_string=False)),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    # The portal's few static files (vendored htmx, admin CSS) are served by the app itself, so
    # one process (demo or production) needs no separate web server; a CDN may sit in front.
    re_path(rf"^{settings.STATIC_URL.lstrip('/')}(?P<path>.*)$", serve_static, {"insecure": True}),
    path("", include("portal.urls")),
]
