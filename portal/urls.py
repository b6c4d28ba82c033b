from django.urls import include, path

from portal.views import accounts, approvals, audit, home, incidents, policy, requests, tokens
from reports import views as evidence

app_name = "portal"
urlpatterns = [
    path("", home.home, name="home"),
    path("healthz", home.healthz, name="healthz"),
    # engineers
    path("requests/", requests.requests_page, name="requests"),
    path("requests/fragment/", requests.requests_fragment, name="requests_fragment"),
    path("requests/<int:pk>/cancel/", requests.request_cancel, name="request_cancel"),
    path("tokens/", tokens.tokens_page, name="tokens"),
    path("tokens/<int:pk>/revoke/", tokens.token_revoke_view, name="token_revoke"),
    path("tokens/api/<int:pk>/revoke/", tokens.api_token_revoke_view, name="api_token_revoke"),
    # approvers
    path("approvals/", approvals.approvals_page, name="approvals"),
    path("approvals/fragment/", approvals.approvals_fragment, name="approvals_fragment"),
    path("approvals/access/<int:pk>/decide/", approvals.access_request_decide_view,
         name="access_request_decide"),
    path("approvals/queries/<int:pk>/", approvals.query_approval_page, name="query_approval"),
    path("approvals/queries/<int:pk>/decide/", approvals.query_approval_decide_view,
         name="query_approval_decide"),
    # admins: accounts and grants
    path("users/", accounts.accounts_page, name="accounts"),
    path("users/new/", accounts.account_new, name="account_new"),
    path("users/<int:pk>/", accounts.account_detail, name="account_detail"),
    path("users/<int:pk>/disable/", accounts.account_disable_view, name="account_disable"),
    path("users/<int:pk>/enable/", accounts.account_enable_view, name="account_enable"),
    path("users/<int:pk>/roles/", accounts.account_roles_view, name="account_roles"),
    path("grants/", accounts.grants_page, name="grants"),
    path("grants/<int:pk>/revoke/", accounts.grant_revoke_view, name="grant_revoke"),
    # admins: incident response
    path("incidents/", incidents.incidents_page, name="incidents"),
    path("incidents/<int:pk>/lift/", incidents.incident_lift_view, name="incident_lift"),
    path("quarantines/<int:pk>/lift/", incidents.quarantine_lift_view, name="quarantine_lift"),
    path("sessions/<int:pk>/kill/", incidents.session_kill_view, name="session_kill"),
    # admins: connections and policy
    path("connections/", policy.connections_page, name="connections"),
    path("connections/new/", policy.connection_edit, name="connection_new"),
    path("connections/<slug:slug>/", policy.connection_edit, name="connection_edit"),
    path("connections/<slug:slug>/credentials/", policy.connection_credentials,
         name="connection_credentials"),
    path("connections/<slug:slug>/catalog/accept/", policy.connection_catalog_accept,
         name="connection_catalog_accept"),
    path("roles/", policy.roles_page, name="roles"),
    path("roles/new/", policy.role_edit, name="role_new"),
    path("roles/<int:pk>/", policy.role_edit, name="role_edit"),
    path("policy/try/", policy.policy_try_view, name="policy_try"),
    path("policy/export.yaml", policy.policy_export_view, name="policy_export"),
    # auditors
    path("audit/", audit.audit_page, name="audit"),
    path("audit/export/", audit.audit_export, name="audit_export"),
    path("audit/<int:seq>/", audit.audit_record_page, name="audit_record"),
    # auditors and admins: evidence packs (reports/)
    path("evidence/", evidence.evidence_page, name="evidence"),
    path("evidence/history/", evidence.evidence_history_fragment, name="evidence_history"),
    path("evidence/public-key.pem", evidence.evidence_public_key, name="evidence_public_key"),
    path("evidence/<int:pk>/", evidence.evidence_detail, name="evidence_detail"),
    path("evidence/<int:pk>/download/", evidence.evidence_download, name="evidence_download"),
    # API
    path("api/", include("portal.api.urls")),
]
