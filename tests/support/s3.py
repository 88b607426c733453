"""A real S3 API on loopback (moto's server mode) and the storage settings that point at it: fixtures for the
tests that store clips in a bucket (registered in tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import time

import boto3
import httpx
import pytest

from harness.platform import free_port

BUCKET = "videogen-test"
CREDENTIALS = {"STORAGE_ACCESS_KEY": "testing", "STORAGE_SECRET_KEY": "testing", "STORAGE_REGION": "us-east-1"}


def s3_client(url: str):
    return boto3.client(
        "s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 API server on a loopback port, with an empty bucket."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.1)
    s3_client(url).create_bucket(Bucket=BUCKET)
    yield url
    proc.terminate()
    proc.wait()


@pytest.fixture
def s3_storage(settings, s3_server):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": s3_server,
                "access_key": "testing",
                "secret_key": "testing",
                "region_name": "us-east-1",
                "default_acl": None,
                "file_overwrite": True,
                "signature_version": "s3v4",
            },
        },
    }
    settings.STORAGE_URL_SECONDS = 120
    return s3_server
