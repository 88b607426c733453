"""The demo user exists only where it is asked for and never overrides an operator's password, and password logins
(the site's and the admin's) are throttled: wrong passwords in a row lock that username on that address, the right
password included, until the cool-off; other users are unaffected."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from jobs.accounts import ensure_user
from jobs.models import ApiKey

pytestmark = pytest.mark.django_db


def test_the_production_profile_makes_no_demo_user(settings, tiny_model_dir, capsys):
    settings.DEMO_USER = False
    call_command("setup_demo")
    assert not get_user_model().objects.filter(username="demo").exists()
    assert "no demo user" in capsys.readouterr().out


def test_the_demo_user_never_resets_an_existing_password_or_its_rights(settings, tiny_model_dir, capsys):
    settings.DEMO_USER = True
    ensure_user(username="demo", password="an operator's long passphrase")
    call_command("setup_demo")
    demo = get_user_model().objects.get(username="demo")
    assert demo.check_password("an operator's long passphrase") and not demo.check_password("demo")
    assert not demo.is_superuser and not demo.is_staff  # rights the operator did not give stay ungiven
    out = capsys.readouterr().out
    assert "demo / demo" not in out and ApiKey.objects.filter(user=demo, name="demo").count() == 1


def test_the_embedded_profile_makes_the_demo_superuser_once(settings, tiny_model_dir, capsys):
    settings.DEMO_USER = True
    call_command("setup_demo")
    demo = get_user_model().objects.get(username="demo")
    assert demo.check_password("demo") and demo.is_superuser and demo.is_staff
    assert "demo login: demo / demo" in capsys.readouterr().out
    call_command("setup_demo")  # a second start: one live demo key, the same user
    assert ApiKey.objects.filter(user=demo, name="demo").count() == 1


def _user(name: str, password: str, *, staff: bool = False):
    user, _ = ensure_user(username=name, password=password)
    if staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    return user


@pytest.mark.parametrize(("url", "staff"), [("/accounts/login/", False), ("/admin/login/", True)])
def test_six_wrong_passwords_lock_the_login_until_the_cool_off(settings, url, staff):
    settings.AXES_COOLOFF_TIME = 3 / 3600  # hours: three seconds
    _user("victim", "right-horse-battery", staff=staff)
    _user("bystander", "another-horse-battery", staff=staff)
    client = Client()
    codes = [client.post(url, {"username": "victim", "password": f"wrong-{i}"}).status_code for i in range(6)]
    assert codes[:4] == [200] * 4  # the form again, with its error
    assert codes[4:] == [429, 429], codes  # locked: the lockout page
    locked = client.post(url, {"username": "victim", "password": "right-horse-battery"})
    assert locked.status_code == 429 and b"Too many failed logins" in locked.content
    assert "_auth_user_id" not in client.session  # not logged in

    other = Client().post(url, {"username": "bystander", "password": "another-horse-battery"})
    assert other.status_code == 302  # another user, the same address: unaffected

    time.sleep(3.5)  # the cool-off passes without another try
    after = client.post(url, {"username": "victim", "password": "right-horse-battery"})
    assert after.status_code == 302 and "_auth_user_id" in client.session
