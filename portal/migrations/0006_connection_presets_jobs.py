import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('portal', '0005_connection_metadata_tools'),
        ('auth', '0012_alter_user_first_name_max_length'),
    ]

    operations = [
        migrations.AddField(
            model_name='connection',
            name='preset',
            field=models.CharField(blank=True, max_length=40),
        ),
        migrations.AddField(
            model_name='connection',
            name='job_tools',
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name='connection',
            name='project_argument',
            field=models.CharField(blank=True, max_length=100),
        ),
        migrations.CreateModel(
            name='UpstreamJob',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('job_id', models.CharField(max_length=1024)),
                ('user_id', models.BigIntegerField()),
                ('tool', models.CharField(max_length=200)),
                ('statement', models.TextField()),
                ('fingerprint', models.CharField(blank=True, max_length=64)),
                ('tables', models.JSONField(blank=True, default=list)),
                ('column_plan', models.JSONField(blank=True, default=dict)),
                ('role', models.CharField(blank=True, max_length=150)),
                ('policy_version', models.IntegerField(default=0)),
                ('request_id', models.CharField(max_length=64)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('connection', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='jobs', to='portal.connection')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('connection', 'job_id'), name='upstream_job_unique')],
            },
        ),
    ]
