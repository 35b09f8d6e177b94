from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from processors.config import Settings, load_settings
from tests.support import SECRET

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def make_settings(tmp_path: Path) -> Any:
    """Settings for one `acme` standard source with queue and store under tmp_path; overrides by kwarg."""

    def make(**env: str) -> Settings:
        base = {
            "LABELHOOK_QUEUE": f"sqlite:///{tmp_path}/queue.db",
            "LABELHOOK_STORE": f"file://{tmp_path}/out",
            "LABELHOOK_SOURCES": "acme",
            "LABELHOOK_ACME_VENDOR": "standard",
            "LABELHOOK_ACME_SECRET": SECRET,
            "LABELHOOK_RETRY_BASE_SECONDS": "0.05",
            "LABELHOOK_LEASE_SECONDS": "5",
        }
        base.update(env)
        return load_settings(base)

    return make


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server (S3, SQS) on 127.0.0.1 over real HTTP, shared by the session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_client(moto_endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def bucket(s3_client: Any, request: pytest.FixtureRequest) -> str:
    name = "lh-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def aws_env(moto_endpoint: str) -> dict[str, str]:
    """Environment for subprocesses that talk to moto through boto3's standard variables."""
    return {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": moto_endpoint}


def pytest_configure(config: pytest.Config) -> None:
    # Tests never reach real AWS: boto3 inside this process only ever gets explicit test clients.
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
