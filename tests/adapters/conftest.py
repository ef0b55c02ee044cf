"""The adapters tier's fixture: the template's bucket, tables and queues under moto's in-process mock."""

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from atelier_dev.local import strict_moto
from atelier_dev.local.cfn import LocalTemplate
from tests.aws import ROOT, MotoAws


@pytest.fixture
def moto_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoAws]:
    """Buckets and tables made from template.yaml (never a second copy of the schema) under moto."""
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "Atelier",
    }.items():
        monkeypatch.setenv(name, value)
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(var, raising=False)
    strict_moto.install()  # DynamoDB's transactions are serializable; moto's are not on their own
    with mock_aws():
        tpl = LocalTemplate.from_file(ROOT / "template.yaml")
        s3, dynamodb, sqs = boto3.client("s3"), boto3.client("dynamodb"), boto3.client("sqs")
        bucket = tpl.name_of("PhotoBucket")
        s3.create_bucket(Bucket=bucket)
        for table in tpl.tables():
            dynamodb.create_table(**table.create_kwargs)
        urls = {q.logical_id: sqs.create_queue(QueueName=q.name)["QueueUrl"] for q in tpl.queues()}
        yield MotoAws(s3, dynamodb, bucket, tpl.function_environment(), sqs, urls)
