"""The Celery application; configuration comes from Django settings (CELERY_*)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wardgate.settings")

app = Celery("wardgate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _ensure_filesystem_queue_folders() -> None:
    # kombu's filesystem transport expects its folders to exist before the first message.
    from pathlib import Path

    from django.conf import settings

    for key in ("data_folder_in", "data_folder_out", "processed_folder"):
        folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get(key)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
    backend = settings.CELERY_RESULT_BACKEND
    if backend.startswith("file://"):
        Path(backend.removeprefix("file://")).mkdir(parents=True, exist_ok=True)


@app.on_after_configure.connect
def _prepare_embedded_transport(sender: Celery, **_: object) -> None:
    _ensure_filesystem_queue_folders()
