import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("portal", "0002_approvals"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="GatewaySession",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                           verbose_name="ID")),
                ("session_key", models.CharField(max_length=200, unique=True)),
                ("auth_method", models.CharField(max_length=20)),
                ("process", models.CharField(help_text="host:pid of the gateway process",
                                             max_length=200)),
                ("source_ip", models.CharField(blank=True, max_length=64)),
                ("user_agent", models.CharField(blank=True, max_length=512)),
                ("opened_at", models.DateTimeField(auto_now_add=True)),
                ("closed_at", models.DateTimeField(blank=True, null=True)),
                ("close_reason", models.CharField(blank=True, max_length=200)),
                ("kill_requested_at", models.DateTimeField(blank=True, null=True)),
                ("connection", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                                 related_name="gateway_sessions",
                                                 to="portal.connection")),
                ("kill_requested_by", models.ForeignKey(blank=True, null=True,
                                                        on_delete=django.db.models.deletion.SET_NULL,
                                                        related_name="+",
                                                        to=settings.AUTH_USER_MODEL)),
                ("user", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                           related_name="gateway_sessions",
                                           to=settings.AUTH_USER_MODEL)),
            ],
            options={
                "ordering": ["-opened_at"],
                "indexes": [models.Index(fields=["user", "closed_at"],
                                         name="portal_gate_user_id_3f1c2a_idx")],
            },
        ),
    ]
