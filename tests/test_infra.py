"""infra/template.yaml: cfn-lint clean, and the IAM in it stays least-privilege."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT

TEMPLATE = ROOT / "infra" / "template.yaml"
S3_WRITES = {
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:PutObjectAcl",
    "s3:RestoreObject",
}


class _CfnLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships without stubs here
    """Reads CloudFormation's short-form tags (`!Ref X`) as their long form (`{"Ref": X}`)."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)
    return loaded


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def iam_allow_statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(resource name, statement) for every Allow in an identity policy (not the bucket's Deny policy)."""
    found = []
    for name, resource in template["Resources"].items():
        if resource["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                if statement["Effect"] == "Allow":
                    found.append((name, statement))
        for policy in resource.get("Properties", {}).get("Policies", []):  # inline policies on users/roles
            found.extend((name, s) for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow")
    return found


def test_cfn_lint_passes() -> None:
    cfn_lint = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or shutil.which("cfn-lint")
    if cfn_lint is None:
        pytest.skip("cfn-lint is not installed (pip install cfn-lint, part of the dev extra)")
    result = subprocess.run([cfn_lint, str(TEMPLATE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_iam_grants_no_wildcard_actions(template: dict[str, Any]) -> None:
    statements = iam_allow_statements(template)
    assert {name for name, _ in statements} == {"WebPolicy", "WorkerPolicy"}
    for name, statement in statements:
        for action in _listify(statement["Action"]):
            assert "*" not in action, f"{name}/{statement.get('Sid')}: wildcard action {action}"


def test_iam_grants_no_wildcard_resources(template: dict[str, Any]) -> None:
    for name, statement in iam_allow_statements(template):
        for resource in _listify(statement["Resource"]):
            assert resource != "*", f"{name}/{statement.get('Sid')}: Resource *"


def test_s3_writes_are_confined_to_the_output_prefix(template: dict[str, Any]) -> None:
    writes = {}
    for name, statement in iam_allow_statements(template):
        if S3_WRITES & set(_listify(statement["Action"])):
            resources = _listify(statement["Resource"])
            assert all(isinstance(r, dict) and "Fn::Sub" in r for r in resources), resources
            writes[name] = sorted(r["Fn::Sub"] for r in resources)
    assert writes == {
        # The web only offloads oversized deliveries; the worker writes outputs, claims and offloads.
        "WebPolicy": ["${OutputBucket.Arn}/${OutputPrefix}/_queue/*"],
        "WorkerPolicy": ["${OutputBucket.Arn}/${OutputPrefix}/*"],
    }


def test_bucket_listing_is_conditioned_on_the_prefix(template: dict[str, Any]) -> None:
    for name, statement in iam_allow_statements(template):
        if "s3:ListBucket" in _listify(statement["Action"]):
            conditions = statement.get("Condition", {})
            prefixes = [c["s3:prefix"] for c in conditions.values() if "s3:prefix" in c]
            assert prefixes, f"{name}: s3:ListBucket without an s3:prefix condition"


def test_queues_redrive_and_encrypt_and_bucket_is_private(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    work = resources["WorkQueue"]["Properties"]
    assert work["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        "maxReceiveCount": {"Ref": "MaxReceiveCount"},
    }
    assert work["VisibilityTimeout"] == {"Ref": "VisibilityTimeoutSeconds"}
    assert template["Parameters"]["MaxReceiveCount"]["Default"] == 8
    assert template["Parameters"]["VisibilityTimeoutSeconds"]["Default"] == 120
    assert resources["DeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"] is True
    assert work["SqsManagedSseEnabled"] is True
    bucket = resources["OutputBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 1
    }
    assert rules["expire-queue-offload"]["Prefix"] == {"Fn::Sub": "${OutputPrefix}/_queue/"}


def test_outputs_give_the_environment_values(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["LabelhookQueue"]["Value"] == {"Fn::Sub": "sqs+${WorkQueue}"}
    assert outputs["LabelhookStore"]["Value"] == {"Fn::Sub": "s3://${OutputBucket}/${OutputPrefix}"}
    assert {"QueueUrl", "DeadLetterQueueUrl", "BucketName"} <= set(outputs)
    # Secret access keys go to Secrets Manager, never into (plain-text, widely readable) stack outputs.
    assert not any("SecretAccessKey" in str(o["Value"]) for o in outputs.values())
