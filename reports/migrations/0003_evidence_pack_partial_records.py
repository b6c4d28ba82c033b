from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("reports", "0002_evidence_pack_includes_records"),
    ]

    operations = [
        migrations.AddField(
            model_name="evidencepack",
            name="records_processed",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="evidencepack",
            name="partial",
            field=models.BooleanField(default=False),
        ),
    ]
