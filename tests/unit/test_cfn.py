"""Template loading and resolution for the local stack, on template.yaml and on small inline templates."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from atelier_dev.local.cfn import (
    LocalTemplate,
    TemplateError,
    find_template,
    load_template,
    loads_template,
    physical_name,
)

ROOT = Path(__file__).resolve().parents[2]
S3_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
STYLES = ("sketch", "pencil", "oil", "watercolor")


@pytest.fixture(scope="module")
def project() -> LocalTemplate:
    return LocalTemplate.from_file(ROOT / "template.yaml", stack_name="atelier-test", account="123456789012")


def inline(text: str, **kwargs: Any) -> LocalTemplate:
    return LocalTemplate(loads_template(text), Path("/srv/app"), **kwargs)


# --- short tags ------------------------------------------------------------------------------------------


def test_short_tags_become_their_long_form() -> None:
    data = loads_template(
        """
        A: !Ref Thing
        B: !GetAtt Queue.Arn
        C: !Sub "${AWS::Region}-x"
        D: !FindInMap [M, k, v]
        E: !If [Cond, 1, 2]
        F: !Join [",", [a, b]]
        G: !Select [0, !Split [",", "a,b"]]
        H: !Not [!Equals [a, b]]
        I: !And [!Or [!Condition X, true], true]
        J: !GetAZs ""
        K: !ImportValue Shared
        L: !Base64 hello
        M: !Cidr [10.0.0.0/16, 4, 8]
        """
    )
    assert data["A"] == {"Ref": "Thing"}
    assert data["B"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert data["C"] == {"Fn::Sub": "${AWS::Region}-x"}
    assert data["D"] == {"Fn::FindInMap": ["M", "k", "v"]}
    assert data["E"] == {"Fn::If": ["Cond", 1, 2]}
    assert data["F"] == {"Fn::Join": [",", ["a", "b"]]}
    assert data["G"] == {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]}
    assert data["H"] == {"Fn::Not": [{"Fn::Equals": ["a", "b"]}]}
    assert data["I"] == {"Fn::And": [{"Fn::Or": [{"Condition": "X"}, True]}, True]}
    assert data["J"] == {"Fn::GetAZs": ""}
    assert data["K"] == {"Fn::ImportValue": "Shared"}
    assert data["L"] == {"Fn::Base64": "hello"}
    assert data["M"] == {"Fn::Cidr": ["10.0.0.0/16", 4, 8]}


def test_json_templates_load_too() -> None:
    assert loads_template(json.dumps({"Resources": {"B": {"Type": "AWS::S3::Bucket"}}}))["Resources"]


def test_a_template_must_be_a_mapping() -> None:
    with pytest.raises(TemplateError):
        loads_template("- just\n- a list\n")


# --- names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stack", "logical_id"),
    [("atelier-local", "PhotoBucket"), ("My_Stack", "X"), ("s", "A" * 120), ("Atelier Local", "Some.Bucket")],
)
def test_physical_names_are_deterministic_and_valid_bucket_names(stack: str, logical_id: str) -> None:
    name = physical_name(stack, logical_id)
    assert name == physical_name(stack, logical_id)
    assert S3_NAME.match(name), name
    assert "--" not in name


def test_long_names_differ_by_logical_id() -> None:
    assert physical_name("s", "A" * 100 + "1") != physical_name("s", "A" * 100 + "2")


# --- the project's template.yaml -------------------------------------------------------------------------


def test_find_template_finds_the_project_template() -> None:
    assert find_template(ROOT / "tests") == ROOT / "template.yaml"
    assert load_template(find_template())["Resources"]


def test_project_bucket(project: LocalTemplate) -> None:
    buckets = project.buckets()
    assert [b.logical_id for b in buckets] == ["PhotoBucket"]
    assert S3_NAME.match(buckets[0].name)
    assert buckets[0].name == "atelier-test-photobucket"
    assert buckets[0].eventbridge_enabled


def test_project_tables_carry_key_schema_billing_and_ttl(project: LocalTemplate) -> None:
    tables = {t.logical_id: t for t in project.tables()}
    status = tables["StatusTable"]
    assert status.create_kwargs["KeySchema"] == [
        {"AttributeName": "image_id", "KeyType": "HASH"},
        {"AttributeName": "style", "KeyType": "RANGE"},
    ]
    assert status.create_kwargs["BillingMode"] == "PAY_PER_REQUEST"
    assert "ProvisionedThroughput" not in status.create_kwargs
    assert status.ttl_attribute == "expires_at"
    assert status.create_kwargs["TableName"] == status.name
    assert tables["IdempotencyTable"].create_kwargs["KeySchema"] == [
        {"AttributeName": "id", "KeyType": "HASH"}
    ]
    assert tables["IdempotencyTable"].ttl_attribute == "expiration"
    # Keys the CloudFormation resource has but create_table does not take are left out.
    assert not {"SSESpecification", "PointInTimeRecoverySpecification", "TimeToLiveSpecification"} & set(
        status.create_kwargs
    )


def test_project_queues(project: LocalTemplate) -> None:
    queues = {q.logical_id: q for q in project.queues()}
    dlq = queues["RenderDeadLetterQueue"]
    assert dlq.arn == f"arn:aws:sqs:us-east-1:123456789012:{dlq.name}"
    assert dlq.attributes["MessageRetentionPeriod"] == "1209600"
    assert project.get_att("RenderDeadLetterQueue", "QueueName") == dlq.name
    assert (
        project.ref("RenderDeadLetterQueue") == f"https://sqs.us-east-1.amazonaws.com/123456789012/{dlq.name}"
    )


def test_project_style_functions(project: LocalTemplate) -> None:
    functions = {f.logical_id: f for f in project.functions()}
    dlq_arn = project.arn_of("RenderDeadLetterQueue")
    for style in STYLES:
        fn = functions[f"{style.capitalize()}Function"]
        assert fn.code_dir == ROOT / "functions"
        assert fn.handler_file.parent.name == style and fn.handler_file.suffix == ".py"
        assert fn.handler_file.is_relative_to(ROOT / "functions")
        assert fn.handler_attr == "handler"
        assert fn.memory_size == project.template["Mappings"]["StyleSizing"][style]["MemoryMB"]
        assert fn.timeout == project.template["Globals"]["Function"]["Timeout"]
        assert fn.environment["ATELIER_BUCKET"] == "atelier-test-photobucket"
        assert fn.environment["ATELIER_STATUS_TABLE"] == project.name_of("StatusTable")
        assert fn.environment["ATELIER_IDEMPOTENCY_TABLE"] == project.name_of("IdempotencyTable")
        assert fn.environment["ATELIER_MAX_BYTES"] == str(
            project.template["Parameters"]["MaxInputBytes"]["Default"]
        )
        assert fn.environment["POWERTOOLS_SERVICE_NAME"] == f"atelier-{style}"
        assert fn.max_retry_attempts == 2
        # after the last retry: the marker, named so it can tell the style from the function's name
        assert fn.name == f"atelier-test-{style}"
        assert fn.on_failure is not None and fn.on_failure.type == "Lambda"
        assert fn.on_failure.arn == functions["DeadLetterFunction"].arn
        marker = functions["DeadLetterFunction"]
        assert marker.on_failure is not None and marker.on_failure.arn == dlq_arn
        assert marker.environment["ATELIER_FUNCTION_PREFIX"] == "atelier-test-"
        assert fn.environment["ATELIER_DEAD_LETTER_QUEUE_URL"].endswith(dlq_arn.rsplit(":", 1)[-1])
        assert fn.arn == f"arn:aws:lambda:us-east-1:123456789012:function:{fn.name}"
        (rule,) = fn.event_rules
        assert rule.pattern["source"] == ["aws.s3"]
        assert rule.pattern["detail"]["bucket"]["name"] == ["atelier-test-photobucket"]
        assert {"prefix": f"incoming/{style}/"} in rule.pattern["detail"]["object"]["key"]
        assert {"prefix": "incoming/all/"} in rule.pattern["detail"]["object"]["key"]


def test_the_anime_image_function_differs_from_the_zip_one_only_in_packaging(project: LocalTemplate) -> None:
    resources = project.template["Resources"]
    zipped, imaged = resources["AnimeFunction"], resources["AnimeImageFunction"]
    assert (zipped["Condition"], imaged["Condition"]) == ("AnimeFromZip", "AnimeFromImage")
    assert [f.logical_id for f in project.functions()].count("AnimeFunction") == 1  # the default: zip
    # the image function's rule, made by the transform under its condition, is not the zip function's
    anime = next(f for f in project.functions() if f.logical_id == "AnimeFunction")
    assert [rule.name for rule in anime.event_rules] == ["Upload"]
    packaging = {"CodeUri", "Handler", "Runtime", "Layers", "PackageType", "ImageUri", "Description"}
    same = {k: v for k, v in zipped["Properties"].items() if k not in packaging}
    assert same == {k: v for k, v in imaged["Properties"].items() if k not in packaging}
    assert imaged["Properties"]["ImageUri"] == {"Ref": "AnimeImageUri"}
    # the image runs the zip function's handler module, from the requirements its tests install (.venv-ov)
    dockerfile = (ROOT / "infra" / "anime-image" / "Dockerfile").read_text()
    assert f'CMD ["{zipped["Properties"]["Handler"]}"]' in dockerfile
    assert "-r /tmp/req/infra/anime-image/requirements.txt" in dockerfile


def test_project_is_read_after_the_sam_transform(project: LocalTemplate) -> None:
    types = {res["Type"] for res in project.resources.values()}
    assert not {t for t in types if t.startswith("AWS::Serverless::")}
    assert {"AWS::Lambda::Function", "AWS::Lambda::EventInvokeConfig", "AWS::Events::Rule"} <= types
    # rules() holds the rules the template writes; a function's own come with the function
    assert [rule.logical_id for rule in project.rules()] == ["UpscaleRule"]
    # properties() is the template as written: the API's routes are its function's HttpApi events
    assert project.properties("ApiFunction")["Events"]["CreateUpload"]["Type"] == "HttpApi"


def test_project_environment_and_outputs(project: LocalTemplate) -> None:
    env = project.function_environment()
    assert env["ATELIER_BUCKET"] == project.name_of("PhotoBucket")
    assert all(isinstance(v, str) for v in env.values())
    outputs = project.outputs()
    assert outputs["BucketName"] == project.name_of("PhotoBucket")


def test_parameter_overrides(project: LocalTemplate) -> None:
    other = LocalTemplate(project.template, project.base_dir, parameters={"MaxInputBytes": 1234})
    assert other.function_environment()["ATELIER_MAX_BYTES"] == "1234"


# --- small inline templates ------------------------------------------------------------------------------

QUEUES = """
Resources:
  Work:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 90
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt Dead.Arn
        maxReceiveCount: 3
  Dead:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-dead"
  Jobs:
    Type: AWS::SQS::Queue
    Properties:
      FifoQueue: true
      ContentBasedDeduplication: true
"""


def test_queues_come_dead_letter_first_with_their_attributes() -> None:
    t = inline(QUEUES, stack_name="st")
    queues = t.queues()
    assert [q.logical_id for q in queues] == ["Dead", "Work", "Jobs"]
    work = queues[1]
    assert work.attributes["VisibilityTimeout"] == "90"
    assert json.loads(work.attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": "arn:aws:sqs:us-east-1:000000000000:st-dead",
        "maxReceiveCount": 3,
    }
    assert queues[0].name == "st-dead"
    jobs = queues[2]
    assert jobs.name.endswith(".fifo")
    assert jobs.attributes["FifoQueue"] == "true"


def test_queue_url_follows_the_local_endpoint() -> None:
    t = inline(QUEUES, stack_name="st", sqs_endpoint="http://127.0.0.1:5000/")
    assert t.ref("Dead") == "http://127.0.0.1:5000/000000000000/st-dead"
    assert t.get_att("Dead", "QueueUrl") == t.ref("Dead")


TABLES = """
Parameters:
  Env:
    Type: String
    Default: dev
Conditions:
  IsProd: !Equals [!Ref Env, prod]
Resources:
  Items:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "items-${Env}"
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: sk, AttributeType: S}
        - {AttributeName: gk, AttributeType: N}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
        - {AttributeName: sk, KeyType: RANGE}
      ProvisionedThroughput: {ReadCapacityUnits: 2, WriteCapacityUnits: 3}
      GlobalSecondaryIndexes:
        - IndexName: by-gk
          KeySchema: [{AttributeName: gk, KeyType: HASH}]
          Projection: {ProjectionType: ALL}
          ProvisionedThroughput: {ReadCapacityUnits: 1, WriteCapacityUnits: 1}
          ContributorInsightsSpecification: {Enabled: true}
      LocalSecondaryIndexes:
        - IndexName: by-pk-gk
          KeySchema: [{AttributeName: pk, KeyType: HASH}, {AttributeName: gk, KeyType: RANGE}]
          Projection: {ProjectionType: KEYS_ONLY}
      StreamSpecification:
        StreamViewType: NEW_IMAGE
      TimeToLiveSpecification:
        AttributeName: ttl
        Enabled: !If [IsProd, true, false]
"""


def test_tables_with_indexes_provisioned_throughput_and_conditions() -> None:
    (table,) = inline(TABLES).tables()
    kwargs = table.create_kwargs
    assert kwargs["TableName"] == "items-dev"
    assert kwargs["BillingMode"] == "PROVISIONED"
    assert kwargs["ProvisionedThroughput"] == {"ReadCapacityUnits": 2, "WriteCapacityUnits": 3}
    assert kwargs["GlobalSecondaryIndexes"] == [
        {
            "IndexName": "by-gk",
            "KeySchema": [{"AttributeName": "gk", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"},
            "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1},
        }
    ]
    assert kwargs["LocalSecondaryIndexes"][0]["IndexName"] == "by-pk-gk"
    assert kwargs["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    assert table.ttl_attribute is None
    prod = inline(TABLES, parameters={"Env": "prod"}).tables()[0]
    assert prod.ttl_attribute == "ttl"
    assert prod.name == "items-prod"


FUNCTIONS = """
Globals:
  Function:
    Runtime: python3.12
    Handler: app.handler
    Timeout: 30
    Environment:
      Variables:
        SHARED: one
        BUCKET: !Ref Photos
        REMOVED: !Ref AWS::NoValue
Resources:
  Photos:
    Type: AWS::S3::Bucket
  Jobs:
    Type: AWS::SQS::Queue
  Failures:
    Type: AWS::SQS::Queue
  Render:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: render/main.lambda_handler
      MemorySize: 512
      Environment:
        Variables:
          OWN: !Sub "${Photos}/${Photos.Arn}/${!Literal}/${AWS::Region}"
          JOINED: !Join ["-", [!Select [1, !Split [",", "a,b,c"]], !GetAtt Jobs.QueueName]]
      EventInvokeConfig:
        MaximumRetryAttempts: 1
        MaximumEventAgeInSeconds: 120
        DestinationConfig:
          OnFailure: {Type: SQS, Destination: !GetAtt Failures.Arn}
          OnSuccess: {Type: SQS, Destination: !GetAtt Jobs.Arn}
      Events:
        Upload:
          Type: EventBridgeRule
          Properties:
            Pattern: {source: [aws.s3], detail: {object: {key: [{prefix: in/}]}}}
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt Jobs.Arn
            BatchSize: 1
  Plain:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: other
  Forward:
    Type: AWS::Events::Rule
    Properties:
      EventPattern: '{"source": ["aws.s3"], "detail-type": ["Object Created"]}'
      Targets:
        - Id: q
          Arn: !GetAtt Jobs.Arn
"""


PACKAGED = """
Parameters:
  ImageUri: {Type: String, Default: ""}
Conditions:
  FromImage: !Not [!Equals [!Ref ImageUri, ""]]
  FromZip: !Equals [!Ref ImageUri, ""]
Resources:
  Zipped:
    Type: AWS::Serverless::Function
    Condition: FromZip
    Properties: {CodeUri: src/, Handler: app.handler, Runtime: python3.12}
  Imaged:
    Type: AWS::Serverless::Function
    Condition: FromImage
    Properties: {PackageType: Image, ImageUri: !Ref ImageUri}
"""


def test_functions_follow_their_conditions_and_refuse_images() -> None:
    assert [f.logical_id for f in inline(PACKAGED).functions()] == ["Zipped"]
    with pytest.raises(TemplateError, match="Imaged: a container image function does not run on the local"):
        inline(PACKAGED, parameters={"ImageUri": "1.dkr.ecr.eu-west-1.amazonaws.com/a:1"}).functions()


def test_what_the_sam_transform_refuses_is_a_template_error() -> None:
    unpackaged = PACKAGED.replace(", Runtime: python3.12", "")
    with pytest.raises(TemplateError, match=r"\[Zipped\].*Runtime and Handler"):
        inline(unpackaged).functions()


def test_functions_merge_globals_and_resolve() -> None:
    t = inline(FUNCTIONS, stack_name="st", region="eu-west-1", account="111122223333")
    render, plain = t.functions()
    assert render.code_dir == Path("/srv/app/src")
    assert render.handler_file == Path("/srv/app/src/render/main.py")
    assert render.handler_attr == "lambda_handler"
    assert render.memory_size == 512 and render.timeout == 30 and render.runtime == "python3.12"
    assert render.environment == {
        "SHARED": "one",
        "BUCKET": "st-photos",
        "OWN": "st-photos/arn:aws:s3:::st-photos/${Literal}/eu-west-1",
        "JOINED": "b-st-jobs",
    }
    assert render.max_retry_attempts == 1 and render.max_event_age == 120
    assert (
        render.on_failure is not None
        and render.on_failure.arn == "arn:aws:sqs:eu-west-1:111122223333:st-failures"
    )
    assert render.on_failure.type == "SQS"  # from the ARN, as Lambda tells a destination's type
    assert render.on_success is not None and render.on_success.arn.endswith(":st-jobs")
    # the rule and the event source mapping the transform makes of the events, named as the events
    assert [(r.name, r.pattern["detail"]["object"]["key"]) for r in render.event_rules] == [
        ("Upload", [{"prefix": "in/"}])
    ]
    (work,) = render.sqs_events
    assert work.name == "Work" and work.queue_arn.endswith(":st-jobs") and work.batch_size == 1
    # Lambda's defaults apply where the template says nothing.
    assert plain.handler_file == Path("/srv/app/other/app.py")
    assert plain.memory_size == 128
    assert plain.max_retry_attempts == 2 and plain.on_failure is None


def test_events_rules_with_sqs_targets() -> None:
    t = inline(FUNCTIONS, stack_name="st")
    # only the rule the template writes: the one made of Render's Upload event is Render's event_rules
    assert "RenderUpload" in t.resources
    (rule,) = t.rules()
    assert rule.pattern == {"source": ["aws.s3"], "detail-type": ["Object Created"]}
    assert rule.target_arns == ("arn:aws:sqs:us-east-1:000000000000:st-jobs",)


def test_unknown_references_are_errors() -> None:
    t = inline(FUNCTIONS)
    with pytest.raises(TemplateError):
        t.resolve({"Ref": "Nope"})
    with pytest.raises(TemplateError):
        t.resolve({"Fn::GetAtt": ["Photos", "Nope"]})
    with pytest.raises(TemplateError):
        t.resolve({"Fn::ImportValue": "Shared"})


def test_find_in_map_and_pseudo_parameters() -> None:
    t = inline(
        """
        Mappings:
          Sizes: {small: {mb: 128}}
        Resources: {}
        """,
        stack_name="st",
    )
    assert t.resolve({"Fn::FindInMap": ["Sizes", "small", "mb"]}) == 128
    assert (
        t.resolve({"Fn::Sub": "${AWS::StackName}:${AWS::AccountId}:${AWS::Partition}"})
        == "st:000000000000:aws"
    )
    assert t.resolve({"Fn::Sub": ["${A}-${B}", {"A": "x", "B": {"Ref": "AWS::Region"}}]}) == "x-us-east-1"
    assert t.resolve({"Fn::Base64": "hi"}) == "aGk="
    assert t.resolve({"Fn::GetAZs": ""})[0] == "us-east-1a"


def test_the_endpoint_variables_are_declared_for_sam_local_and_deploy_as_nothing(
    project: LocalTemplate,
) -> None:
    """template.yaml declares AWS_ENDPOINT_URL_* as AWS::NoValue, for `sam local --env-vars` to set: nothing
    of them reaches a function here (the local stack sets its own endpoints), as nothing is deployed."""
    for fn in project.functions():
        declared = project.resources[fn.logical_id]["Properties"]["Environment"]["Variables"]
        assert {k: v for k, v in declared.items() if k.startswith("AWS_ENDPOINT_URL_")} == {
            f"AWS_ENDPOINT_URL_{service}": {"Ref": "AWS::NoValue"} for service in ("S3", "DYNAMODB", "SQS")
        }
        assert not [k for k in fn.environment if k.startswith("AWS_ENDPOINT_URL")]
