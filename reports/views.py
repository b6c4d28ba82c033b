"""The Evidence pages (auditors and admins): build a pack, watch it build, see the history, open
a pack's summary, download it and the public key that verifies it. Thin: parse, call a service
or selector, render. The API twin is portal/api/packs.py."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from portal.services.events import RequestMeta
from portal.views._base import meta_from_request, role_required
from reports.forms import PackRequestForm, period_presets
from reports.models import EvidencePack
from reports.selectors import (
    PACK_ROLES,
    evidence_pack_controls,
    evidence_pack_get,
    evidence_pack_list,
    evidence_pack_path,
    evidence_pack_progress,
    pack_public_key,
)
from reports.services import (
    PackRequestError,
    evidence_pack_record_download,
    evidence_pack_request,
)


def _history() -> dict[str, object]:
    packs = [(p, evidence_pack_progress(p)) for p in evidence_pack_list()]
    return {"packs": packs, "building": any(not progress["finished"] for _, progress in packs)}


@role_required(*PACK_ROLES)
def evidence_page(request: HttpRequest) -> HttpResponse:
    form = PackRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        start, end = form.cleaned_data["period"]
        try:
            pack = evidence_pack_request(
                period_start=start, period_end=end, controls=form.cleaned_data["controls"],
                partial=form.cleaned_data["partial"], created_by=request.user,
                origin=meta_from_request(request))
        except PackRequestError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Pack #{pack.pk} requested"
                             + (" (PARTIAL period)" if pack.partial else "")
                             + ": its progress is shown below.")
            return redirect(reverse("portal:evidence") + f"#pack-{pack.pk}")
    return render(request, "reports/evidence.html", {
        "form": form, "presets": period_presets(timezone.now().date()), **_history()})


@role_required(*PACK_ROLES)
@require_GET
def evidence_history_fragment(request: HttpRequest) -> HttpResponse:
    """The history table alone: polled in place while a pack builds."""
    return render(request, "reports/_history.html", _history())


@role_required(*PACK_ROLES)
@require_GET
def evidence_detail(request: HttpRequest, pk: int) -> HttpResponse:
    pack = evidence_pack_get(pk=pk)
    if pack is None:
        raise Http404("No such evidence pack")
    _, key = pack_public_key()
    return render(request, "reports/evidence_detail.html", {
        "pack": pack, "progress": evidence_pack_progress(pack),
        "controls": evidence_pack_controls(pack), "key_id": key,
        "downloadable": evidence_pack_path(pack) is not None})


def pack_download_response(pack: EvidencePack, *, user: Any,
                           origin: RequestMeta) -> FileResponse | None:
    """The pack's zip as an attachment (X-Pack-SHA256), or None when it is not ready. The
    download is recorded before the first byte leaves; if that fails, nothing is sent."""
    path = evidence_pack_path(pack)
    if path is None:
        return None
    evidence_pack_record_download(pack=pack, user=user, origin=origin)
    response = FileResponse(path.open("rb"), as_attachment=True, filename=path.name,
                            content_type="application/zip")
    response["X-Pack-SHA256"] = pack.sha256
    return response


def public_key_response() -> HttpResponse:
    """The PEM public key that verifies this system's packs (X-Key-Id: its key id)."""
    pem, key = pack_public_key()
    response = HttpResponse(pem, content_type="application/x-pem-file")
    response["Content-Disposition"] = f'attachment; filename="wardgate-pack-key-{key}.pem"'
    response["X-Key-Id"] = key
    return response


@role_required(*PACK_ROLES)
@require_GET
def evidence_download(request: HttpRequest, pk: int) -> HttpResponse:
    pack = evidence_pack_get(pk=pk)
    response = (pack_download_response(pack, user=request.user,
                                       origin=meta_from_request(request))
                if pack is not None else None)
    if response is None:
        raise Http404("No such evidence pack, or it is not ready")
    return response


@role_required(*PACK_ROLES)
@require_GET
def evidence_public_key(request: HttpRequest) -> HttpResponse:
    return public_key_response()
