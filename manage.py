#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "videogen.settings")
    from videogen import boot

    boot.prepare()  # what libraries read from the environment at import, and the folders they write to

    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
