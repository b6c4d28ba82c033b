"""The `wardgate` console script: Django's management commands with Wardgate's settings, so an
installed package (no manage.py beside it) runs `wardgate serve`, `wardgate migrate`, ..."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wardgate.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
