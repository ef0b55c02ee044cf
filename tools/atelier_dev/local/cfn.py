"""Read a SAM/CloudFormation template for the local stack and resolve it against local physical names.

Libraries do the reading: cfn-lint's decoder parses the YAML or JSON with CloudFormation's short tags
(``!Ref``, ``!GetAtt``, ...), and aws-sam-translator turns the ``AWS::Serverless::*`` resources, with their
``Globals``, ``Events`` and ``EventInvokeConfig``, into the plain CloudFormation that would be deployed. What
is written here is what no library does offline: evaluating ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::If``
and the other intrinsic functions against the names, ARNs and URLs the local stack gives the resources, and
reading the plain resources (``AWS::Lambda::Function``, ``AWS::Lambda::EventInvokeConfig``,
``AWS::Events::Rule``, ``AWS::Lambda::EventSourceMapping``, buckets, tables, queues) into specs.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import boto3
from cfnlint.decode import decode_str
from samtranslator.model.exceptions import ExceptionWithMessage, InvalidDocumentException
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "000000000000"
DEFAULT_STACK = "atelier-local"

# Lambda's documented defaults for asynchronous invocation.
DEFAULT_MAX_RETRY_ATTEMPTS = 2
DEFAULT_MAX_EVENT_AGE = 21600

# The SAM transform takes code only as S3 locations: a local folder goes through it as s3://<this>/<folder>.
LOCAL_CODE_BUCKET = "atelier-local-code"

_SUB_VAR = re.compile(r"\$\{([^}]*)\}")

# A destination's type, as Lambda tells it from the ARN's service.
_DESTINATION_TYPES = {
    "lambda": "Lambda",
    "sqs": "SQS",
    "sns": "SNS",
    "events": "EventBridge",
    "s3": "S3Bucket",
}


class TemplateError(ValueError):
    """The template cannot be read or resolved for the local stack."""


def load_template(path: str | Path) -> dict[str, Any]:
    """Parse a template file (YAML or JSON) with the CloudFormation short tags understood."""
    text = Path(path).read_text(encoding="utf-8")
    return loads_template(text)


def loads_template(text: str) -> dict[str, Any]:
    """Parse template text (YAML or JSON) with cfn-lint's decoder, as plain dicts, lists and scalars."""
    data, matches = decode_str(text)
    if matches:
        raise TemplateError("; ".join(str(m.message) for m in matches))
    if not isinstance(data, dict):
        raise TemplateError("a template must be a mapping at its top level")
    plain: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return plain


def sam_transform(template: Mapping[str, Any], parameters: Mapping[str, Any], region: str) -> dict[str, Any]:
    """The plain CloudFormation that aws-sam-translator makes of a SAM template, offline.

    Local ``CodeUri``/``ContentUri`` folders go through as ``s3://LOCAL_CODE_BUCKET/<folder>`` (the
    transform takes S3 locations only); managed policies named in ``Policies`` are not looked up.
    """
    sam = copy.deepcopy(dict(template))
    sections = [res.get("Properties") for res in (sam.get("Resources") or {}).values()]
    sections += list((sam.get("Globals") or {}).values())
    for props in sections:
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props, dict) and isinstance(props.get(key), str) and "://" not in props[key]:
                props[key] = f"s3://{LOCAL_CODE_BUCKET}/{props[key]}"
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    try:
        return translator.translate(sam, dict(parameters), get_managed_policy_map=dict)
    except InvalidDocumentException as exc:
        raise TemplateError("; ".join(cause.message for cause in exc.causes)) from exc
    except ExceptionWithMessage as exc:
        raise TemplateError(exc.message) from exc


def find_template(start: str | Path | None = None) -> Path:
    """Find ``template.yaml`` in ``start`` or a parent of it, else above this package."""
    candidates: list[Path] = []
    if start is not None:
        base = Path(start).resolve()
        candidates += [base, *base.parents]
    here = Path(__file__).resolve()
    candidates += list(here.parents)
    for folder in candidates:
        path = folder / "template.yaml"
        if path.is_file():
            return path
    raise TemplateError("template.yaml not found")


def physical_name(stack_name: str, logical_id: str, max_len: int = 63) -> str:
    """A deterministic, lower-case name valid for S3 buckets, DynamoDB tables, SQS queues and functions."""
    raw = f"{stack_name}-{logical_id}".lower()
    name = re.sub(r"[^a-z0-9-]+", "-", raw)
    name = re.sub(r"-{2,}", "-", name).strip("-")
    if len(name) > max_len:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = name[: max_len - 9].rstrip("-") + "-" + digest
    if len(name) < 3:
        name = (name + "-xxx")[:3] if name else "xxx"
    return name


@dataclass(frozen=True)
class BucketSpec:
    """An ``AWS::S3::Bucket`` with its local name."""

    logical_id: str
    name: str
    eventbridge_enabled: bool


@dataclass(frozen=True)
class TableSpec:
    """An ``AWS::DynamoDB::Table``: ``create_table`` keyword arguments and its TTL attribute."""

    logical_id: str
    name: str
    create_kwargs: dict[str, Any]
    ttl_attribute: str | None


@dataclass(frozen=True)
class QueueSpec:
    """An ``AWS::SQS::Queue``: name and ``create_queue`` attributes (strings, as SQS takes them)."""

    logical_id: str
    name: str
    arn: str
    attributes: dict[str, str]


@dataclass(frozen=True)
class Destination:
    """An asynchronous-invoke destination (``OnFailure`` / ``OnSuccess``)."""

    type: str
    arn: str


@dataclass(frozen=True)
class EventRule:
    """An ``AWS::Events::Rule`` that the transform made of a function's ``EventBridgeRule`` event."""

    name: str
    pattern: dict[str, Any]


@dataclass(frozen=True)
class SqsEventSource:
    """An ``AWS::Lambda::EventSourceMapping`` of a function on an SQS queue."""

    name: str
    queue_arn: str
    batch_size: int


@dataclass(frozen=True)
class FunctionSpec:
    """An ``AWS::Lambda::Function`` (a SAM function after the transform) with its event sources, resolved."""

    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    handler_file: Path
    handler_attr: str
    environment: dict[str, str]
    memory_size: int
    timeout: int
    runtime: str | None
    max_retry_attempts: int
    max_event_age: int
    on_failure: Destination | None
    on_success: Destination | None
    event_rules: tuple[EventRule, ...] = ()
    sqs_events: tuple[SqsEventSource, ...] = ()
    reserved_concurrency: int | None = None  # ReservedConcurrentExecutions: at most this many at once


@dataclass(frozen=True)
class RuleSpec:
    """An ``AWS::Events::Rule`` with its pattern and target ARNs."""

    logical_id: str
    name: str
    pattern: dict[str, Any]
    target_arns: tuple[str, ...]
    enabled: bool = True


@dataclass
class LocalTemplate:
    """A template resolved for the local stack: names, ARNs, URLs and parameter defaults.

    ``template`` is the template as written; ``cfn`` is the plain CloudFormation the SAM transform makes
    of it, which the names, the intrinsic functions and the specs are read from.
    """

    template: dict[str, Any]
    base_dir: Path
    stack_name: str = DEFAULT_STACK
    region: str = DEFAULT_REGION
    account: str = DEFAULT_ACCOUNT
    sqs_endpoint: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: str | Path | None = None, **kwargs: Any) -> LocalTemplate:
        """Load ``path`` (default: the project's template.yaml) and resolve it locally."""
        template_path = Path(path) if path is not None else find_template()
        return cls(load_template(template_path), template_path.resolve().parent, **kwargs)

    # --- basics --------------------------------------------------------------------------------------

    @cached_property
    def cfn(self) -> dict[str, Any]:
        """The plain CloudFormation of the template (SAM resources transformed, the rest as written)."""
        resources = self.template.get("Resources") or {}
        if not isinstance(resources, dict):
            raise TemplateError("Resources must be a mapping")
        if not any(str(res.get("Type", "")).startswith("AWS::Serverless::") for res in resources.values()):
            return self.template
        return sam_transform(self.template, self.parameters, self.region)

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        """The Resources of the plain CloudFormation."""
        resources: dict[str, dict[str, Any]] = self.cfn.get("Resources") or {}
        return resources

    def resources_of(self, resource_type: str) -> list[tuple[str, dict[str, Any]]]:
        """(logical id, resource) pairs of one type in the plain CloudFormation whose condition holds."""
        return [
            (lid, res)
            for lid, res in self.resources.items()
            if res.get("Type") == resource_type
            and ("Condition" not in res or self.condition(_to_str(res["Condition"])))
        ]

    def properties(self, logical_id: str) -> dict[str, Any]:
        """A resource's Properties as the template writes them (a SAM resource's, before the transform)."""
        res = (self.template.get("Resources") or {}).get(logical_id) or self.resources[logical_id]
        return dict(res.get("Properties") or {})

    def cfn_properties(self, logical_id: str) -> dict[str, Any]:
        """A resource's Properties in the plain CloudFormation (empty when it has none)."""
        return dict(self.resources[logical_id].get("Properties") or {})

    def parameter_value(self, name: str) -> str:
        """A parameter's local value: an override, else its Default, as a string (as Ref returns)."""
        if name in self.parameters:
            return _to_str(self.parameters[name])
        spec = (self.template.get("Parameters") or {}).get(name)
        if spec is None:
            raise TemplateError(f"unknown parameter {name}")
        if "Default" not in spec:
            raise TemplateError(f"parameter {name} has no Default and no local value")
        default = spec["Default"]
        if isinstance(default, list):
            return ",".join(_to_str(v) for v in default)
        return _to_str(default)

    def name_of(self, logical_id: str) -> str:
        """The local physical name of a resource (its explicit name property, if it sets one)."""
        res = self.resources.get(logical_id)
        if res is None:
            raise TemplateError(f"unknown resource {logical_id}")
        explicit = {
            "AWS::S3::Bucket": "BucketName",
            "AWS::DynamoDB::Table": "TableName",
            "AWS::SQS::Queue": "QueueName",
            "AWS::Lambda::Function": "FunctionName",
            "AWS::Events::Rule": "Name",
            "AWS::Logs::LogGroup": "LogGroupName",
        }.get(res.get("Type", ""))
        props = res.get("Properties") or {}
        if explicit and explicit in props:
            return _to_str(self.resolve(props[explicit]))
        name = physical_name(self.stack_name, logical_id, max_len=63)
        if res.get("Type") == "AWS::SQS::Queue" and _truthy(props.get("FifoQueue")):
            name = name[:58] + ".fifo"
        return name

    def arn_of(self, logical_id: str) -> str:
        """The local ARN of a resource."""
        res_type = self.resources[logical_id].get("Type", "")
        name = self.name_of(logical_id)
        region, account = self.region, self.account
        if res_type == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{name}"
        if res_type == "AWS::DynamoDB::Table":
            return f"arn:aws:dynamodb:{region}:{account}:table/{name}"
        if res_type == "AWS::SQS::Queue":
            return f"arn:aws:sqs:{region}:{account}:{name}"
        if res_type == "AWS::Lambda::Function":
            return f"arn:aws:lambda:{region}:{account}:function:{name}"
        if res_type == "AWS::Events::Rule":
            return f"arn:aws:events:{region}:{account}:rule/{name}"
        if res_type == "AWS::Logs::LogGroup":
            return f"arn:aws:logs:{region}:{account}:log-group:{name}:*"
        if res_type == "AWS::SNS::Topic":
            return f"arn:aws:sns:{region}:{account}:{name}"
        service = res_type.split("::")[1].lower() if res_type.count("::") >= 2 else "unknown"
        return f"arn:aws:{service}:{region}:{account}:{name}"

    def queue_url(self, name: str) -> str:
        """The URL of a queue by name, on the local SQS endpoint when one is known."""
        base = (self.sqs_endpoint or f"https://sqs.{self.region}.amazonaws.com").rstrip("/")
        return f"{base}/{self.account}/{name}"

    def ref(self, name: str) -> Any:
        """What ``Ref`` returns: a parameter's value, a pseudo parameter, or a resource's local name/URL."""
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": (
                f"arn:aws:cloudformation:{self.region}:{self.account}:stack/{self.stack_name}/local"
            ),
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
        }
        if name in pseudo:
            return pseudo[name]
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in (self.template.get("Parameters") or {}):
            return self.parameter_value(name)
        if name in self.resources:
            if self.resources[name].get("Type") == "AWS::SQS::Queue":
                return self.queue_url(self.name_of(name))
            return self.name_of(name)
        raise TemplateError(f"Ref to unknown name {name}")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        """What ``Fn::GetAtt`` returns for the attributes the local stack knows."""
        if logical_id not in self.resources:
            raise TemplateError(f"GetAtt on unknown resource {logical_id}")
        res_type = self.resources[logical_id].get("Type", "")
        name = self.name_of(logical_id)
        if attribute == "Arn":
            return self.arn_of(logical_id)
        known: dict[tuple[str, str], Any] = {
            ("AWS::SQS::Queue", "QueueName"): name,
            ("AWS::SQS::Queue", "QueueUrl"): self.queue_url(name),
            ("AWS::S3::Bucket", "DomainName"): f"{name}.s3.amazonaws.com",
            ("AWS::S3::Bucket", "RegionalDomainName"): f"{name}.s3.{self.region}.amazonaws.com",
            ("AWS::DynamoDB::Table", "StreamArn"): f"{self.arn_of(logical_id)}/stream/local",
        }
        if (res_type, attribute) in known:
            return known[(res_type, attribute)]
        raise TemplateError(f"GetAtt {logical_id}.{attribute} is not known locally")

    # --- intrinsic functions -------------------------------------------------------------------------

    def condition(self, name: str) -> bool:
        """Evaluate a named condition of the Conditions section."""
        conditions = self.cfn.get("Conditions") or {}
        if name not in conditions:
            raise TemplateError(f"unknown condition {name}")
        return bool(self.resolve(conditions[name]))

    def resolve(self, value: Any) -> Any:
        """Resolve every intrinsic function in ``value`` (dropping ``AWS::NoValue``)."""
        result = self._resolve(value)
        return None if result is _NO_VALUE else result

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self._resolve(v) for v in value]
            return [v for v in items if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            handler = _INTRINSICS.get(key)
            if handler is not None:
                return handler(self, arg)
        out: dict[str, Any] = {}
        for k, v in value.items():
            r = self._resolve(v)
            if r is not _NO_VALUE:
                out[k] = r
        return out

    def _fn_ref(self, arg: Any) -> Any:
        return self.ref(_to_str(self._resolve(arg)))

    def _fn_getatt(self, arg: Any) -> Any:
        if isinstance(arg, str):
            arg = arg.split(".", 1)
        logical_id, attribute = (_to_str(self._resolve(a)) for a in arg)
        return self.get_att(logical_id, attribute)

    def _fn_sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self._resolve(v) for k, v in (arg[1] or {}).items()}
        else:
            text, variables = arg, {}

        def substitute(match: re.Match[str]) -> str:
            expr = match.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            expr = expr.strip()
            if expr in variables:
                return _to_str(variables[expr])
            if "." in expr and not expr.startswith("AWS::"):
                logical_id, attribute = expr.split(".", 1)
                return _to_str(self.get_att(logical_id, attribute))
            return _to_str(self.ref(expr))

        return _SUB_VAR.sub(substitute, _to_str(text))

    def _fn_find_in_map(self, arg: Any) -> Any:
        map_name, top, second = (self._resolve(a) for a in arg[:3])
        try:
            return self.cfn["Mappings"][map_name][top][second]
        except (KeyError, TypeError) as exc:
            if len(arg) > 3 and isinstance(arg[3], dict) and "DefaultValue" in arg[3]:
                return self._resolve(arg[3]["DefaultValue"])
            raise TemplateError(f"FindInMap {map_name}/{top}/{second} not found") from exc

    def _fn_if(self, arg: Any) -> Any:
        name, if_true, if_false = arg
        return self._resolve(if_true if self.condition(name) else if_false)

    def _fn_join(self, arg: Any) -> str:
        sep, items = arg
        values = self._resolve(items)
        return _to_str(sep).join(_to_str(v) for v in values)

    def _fn_select(self, arg: Any) -> Any:
        index, items = self._resolve(arg[0]), self._resolve(arg[1])
        return items[int(index)]

    def _fn_split(self, arg: Any) -> list[str]:
        sep, text = arg[0], self._resolve(arg[1])
        return _to_str(text).split(_to_str(sep))

    def _fn_equals(self, arg: Any) -> bool:
        left, right = (self._resolve(a) for a in arg)
        return _to_str(left) == _to_str(right)

    def _fn_not(self, arg: Any) -> bool:
        return not self._truth(arg[0])

    def _fn_and(self, arg: Any) -> bool:
        return all(self._truth(a) for a in arg)

    def _fn_or(self, arg: Any) -> bool:
        return any(self._truth(a) for a in arg)

    def _fn_condition(self, arg: Any) -> bool:
        return self.condition(_to_str(arg))

    def _truth(self, value: Any) -> bool:
        if isinstance(value, dict) and set(value) == {"Condition"}:
            return self.condition(_to_str(value["Condition"]))
        return bool(self._resolve(value))

    def _fn_get_azs(self, arg: Any) -> list[str]:
        region = _to_str(self._resolve(arg)) or self.region
        return [f"{region}{suffix}" for suffix in "abc"]

    def _fn_base64(self, arg: Any) -> str:
        return base64.b64encode(_to_str(self._resolve(arg)).encode()).decode()

    def _fn_unsupported(self, arg: Any) -> Any:
        raise TemplateError(f"intrinsic function not available locally: {arg!r}")

    # --- resources -----------------------------------------------------------------------------------

    def buckets(self) -> list[BucketSpec]:
        """Every ``AWS::S3::Bucket``."""
        out = []
        for lid, _res in self.resources_of("AWS::S3::Bucket"):
            props = self.cfn_properties(lid)
            eb = (props.get("NotificationConfiguration") or {}).get("EventBridgeConfiguration") or {}
            enabled = _truthy(self.resolve(eb.get("EventBridgeEnabled", False)))
            out.append(BucketSpec(lid, self.name_of(lid), enabled))
        return out

    def tables(self) -> list[TableSpec]:
        """Every ``AWS::DynamoDB::Table`` as ``create_table`` keyword arguments plus its TTL attribute."""
        out = []
        for lid, _res in self.resources_of("AWS::DynamoDB::Table"):
            props = self.resolve(self.cfn_properties(lid))
            kwargs: dict[str, Any] = {
                "TableName": self.name_of(lid),
                "AttributeDefinitions": props["AttributeDefinitions"],
                "KeySchema": props["KeySchema"],
            }
            billing = props.get("BillingMode", "PROVISIONED")
            kwargs["BillingMode"] = billing
            if billing == "PROVISIONED":
                kwargs["ProvisionedThroughput"] = _throughput(props.get("ProvisionedThroughput"))
            gsis = []
            for index in props.get("GlobalSecondaryIndexes") or []:
                gsi = {k: index[k] for k in ("IndexName", "KeySchema", "Projection") if k in index}
                if billing == "PROVISIONED":
                    gsi["ProvisionedThroughput"] = _throughput(index.get("ProvisionedThroughput"))
                gsis.append(gsi)
            if gsis:
                kwargs["GlobalSecondaryIndexes"] = gsis
            lsis = [
                {k: index[k] for k in ("IndexName", "KeySchema", "Projection") if k in index}
                for index in props.get("LocalSecondaryIndexes") or []
            ]
            if lsis:
                kwargs["LocalSecondaryIndexes"] = lsis
            stream = props.get("StreamSpecification")
            if stream and stream.get("StreamViewType"):
                kwargs["StreamSpecification"] = {
                    "StreamEnabled": True,
                    "StreamViewType": stream["StreamViewType"],
                }
            ttl = props.get("TimeToLiveSpecification") or {}
            ttl_attribute = ttl.get("AttributeName") if _truthy(ttl.get("Enabled", False)) else None
            out.append(TableSpec(lid, kwargs["TableName"], kwargs, ttl_attribute))
        return out

    def queues(self) -> list[QueueSpec]:
        """Every ``AWS::SQS::Queue``, dead-letter targets before the queues that name them."""
        queue_ids = [lid for lid, _ in self.resources_of("AWS::SQS::Queue")]
        deps = {lid: _references(self.cfn_properties(lid)) & set(queue_ids) - {lid} for lid in queue_ids}
        ordered: list[str] = []
        visiting: set[str] = set()

        def visit(lid: str) -> None:
            if lid in ordered:
                return
            if lid in visiting:
                raise TemplateError(f"queues refer to each other in a cycle at {lid}")
            visiting.add(lid)
            for dep in sorted(deps[lid], key=queue_ids.index):
                visit(dep)
            visiting.discard(lid)
            ordered.append(lid)

        for lid in queue_ids:
            visit(lid)
        out = []
        for lid in ordered:
            props = self.resolve(self.cfn_properties(lid))
            attributes: dict[str, str] = {}
            for key in (
                "VisibilityTimeout",
                "MessageRetentionPeriod",
                "DelaySeconds",
                "MaximumMessageSize",
                "ReceiveMessageWaitTimeSeconds",
                "KmsMasterKeyId",
                "KmsDataKeyReusePeriodSeconds",
                "DeduplicationScope",
                "FifoThroughputLimit",
            ):
                if key in props:
                    attributes[key] = _to_str(props[key])
            for key in ("FifoQueue", "ContentBasedDeduplication", "SqsManagedSseEnabled"):
                if key in props:
                    attributes[key] = "true" if _truthy(props[key]) else "false"
            for key in ("RedrivePolicy", "RedriveAllowPolicy"):
                if key in props:
                    policy = props[key]
                    attributes[key] = policy if isinstance(policy, str) else json.dumps(policy)
            name = self.name_of(lid)
            out.append(QueueSpec(lid, name, self.arn_of(lid), attributes))
        return out

    def functions(self) -> list[FunctionSpec]:
        """Every ``AWS::Lambda::Function`` whose condition holds, with its event sources, resolved.

        Functions run in this process, so a container image function is refused: its image needs Docker.
        """
        out = []
        for lid, _res in self.resources_of("AWS::Lambda::Function"):
            props = self.resolve(self.cfn_properties(lid))
            code = props.get("Code") or {}
            if props.get("PackageType") == "Image" or "ImageUri" in code:
                raise TemplateError(f"{lid}: a container image function does not run on the local stack")
            handler = _to_str(props.get("Handler") or "")
            if not handler or "." not in handler:
                raise TemplateError(f"{lid}: Handler must look like 'module.function', got {handler!r}")
            if code.get("S3Bucket") != LOCAL_CODE_BUCKET:
                raise TemplateError(f"{lid}: CodeUri must be a local folder locally, got {code!r}")
            code_dir = (self.base_dir / _to_str(code["S3Key"])).resolve()
            module, attr = handler.rsplit(".", 1)
            variables = ((props.get("Environment") or {}).get("Variables")) or {}
            name, arn = self.name_of(lid), self.arn_of(lid)
            invoke = self._invoke_config({name, arn})
            destinations = invoke.get("DestinationConfig") or {}
            out.append(
                FunctionSpec(
                    logical_id=lid,
                    name=name,
                    arn=arn,
                    code_dir=code_dir,
                    handler=handler,
                    handler_file=code_dir / (module.replace(".", "/") + ".py"),
                    handler_attr=attr,
                    environment={k: _to_str(v) for k, v in variables.items()},
                    memory_size=int(props.get("MemorySize", 128)),
                    timeout=int(props.get("Timeout", 3)),
                    runtime=props.get("Runtime"),
                    max_retry_attempts=int(invoke.get("MaximumRetryAttempts", DEFAULT_MAX_RETRY_ATTEMPTS)),
                    max_event_age=int(invoke.get("MaximumEventAgeInSeconds", DEFAULT_MAX_EVENT_AGE)),
                    on_failure=_destination(destinations.get("OnFailure")),
                    on_success=_destination(destinations.get("OnSuccess")),
                    event_rules=tuple(self._event_rules(lid, arn)),
                    sqs_events=tuple(self._sqs_sources(lid, {name, arn})),
                    reserved_concurrency=(
                        int(props["ReservedConcurrentExecutions"])
                        if "ReservedConcurrentExecutions" in props
                        else None
                    ),
                )
            )
        return out

    def _invoke_config(self, function: set[str]) -> dict[str, Any]:
        """The resolved ``AWS::Lambda::EventInvokeConfig`` of a function (its name or ARN), or ``{}``."""
        for lid, _res in self.resources_of("AWS::Lambda::EventInvokeConfig"):
            props = self.resolve(self.cfn_properties(lid))
            if _to_str(props.get("FunctionName")) in function:
                return dict(props)
        return {}

    def _event_rules(self, function_id: str, arn: str) -> list[EventRule]:
        """The rules the SAM transform made of a function's ``EventBridgeRule`` events, by event name."""
        out = []
        for lid, _res in self.resources_of("AWS::Events::Rule"):
            if self._written(lid):
                continue
            props = self.resolve(self.cfn_properties(lid))
            if "EventPattern" in props and arn in (_to_str(t["Arn"]) for t in props.get("Targets") or []):
                event = lid.removeprefix(function_id) or lid
                out.append(EventRule(event, _pattern(props["EventPattern"])))
        return out

    def _sqs_sources(self, function_id: str, function: set[str]) -> list[SqsEventSource]:
        """A function's ``AWS::Lambda::EventSourceMapping`` on SQS queues (named as the SAM events)."""
        out = []
        for lid, _res in self.resources_of("AWS::Lambda::EventSourceMapping"):
            props = self.resolve(self.cfn_properties(lid))
            source = _to_str(props.get("EventSourceArn", ""))
            if _to_str(props.get("FunctionName")) in function and source.startswith("arn:aws:sqs:"):
                event = lid.removeprefix(function_id) or lid
                out.append(SqsEventSource(event, source, int(props.get("BatchSize", 10))))
        return out

    def _written(self, logical_id: str) -> bool:
        """Whether the template writes this resource itself (rather than the SAM transform making it)."""
        return logical_id in (self.template.get("Resources") or {})

    def rules(self) -> list[RuleSpec]:
        """Every ``AWS::Events::Rule`` the template writes with an EventPattern, and its target ARNs.

        The rules the SAM transform makes of a function's events are that function's ``event_rules``.
        """
        out = []
        for lid, _res in self.resources_of("AWS::Events::Rule"):
            if not self._written(lid):
                continue
            props = self.resolve(self.cfn_properties(lid))
            if "EventPattern" not in props:
                continue
            targets = tuple(_to_str(t["Arn"]) for t in props.get("Targets") or [])
            enabled = props.get("State", "ENABLED") == "ENABLED"
            out.append(RuleSpec(lid, self.name_of(lid), _pattern(props["EventPattern"]), targets, enabled))
        return out

    def function_environment(self) -> dict[str, str]:
        """The resolved ``Globals.Function.Environment.Variables`` every function shares."""
        globals_fn = ((self.template.get("Globals") or {}).get("Function")) or {}
        variables = self.resolve(((globals_fn.get("Environment") or {}).get("Variables")) or {})
        return {k: _to_str(v) for k, v in variables.items()}

    def outputs(self) -> dict[str, Any]:
        """The template's Outputs, resolved."""
        return {
            name: self.resolve(spec.get("Value")) for name, spec in (self.cfn.get("Outputs") or {}).items()
        }


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE = _NoValue()

_INTRINSICS: dict[str, Any] = {
    "Ref": LocalTemplate._fn_ref,
    "Fn::GetAtt": LocalTemplate._fn_getatt,
    "Fn::Sub": LocalTemplate._fn_sub,
    "Fn::FindInMap": LocalTemplate._fn_find_in_map,
    "Fn::If": LocalTemplate._fn_if,
    "Fn::Join": LocalTemplate._fn_join,
    "Fn::Select": LocalTemplate._fn_select,
    "Fn::Split": LocalTemplate._fn_split,
    "Fn::Equals": LocalTemplate._fn_equals,
    "Fn::Not": LocalTemplate._fn_not,
    "Fn::And": LocalTemplate._fn_and,
    "Fn::Or": LocalTemplate._fn_or,
    "Condition": LocalTemplate._fn_condition,
    "Fn::GetAZs": LocalTemplate._fn_get_azs,
    "Fn::Base64": LocalTemplate._fn_base64,
    "Fn::ImportValue": LocalTemplate._fn_unsupported,
    "Fn::Cidr": LocalTemplate._fn_unsupported,
    "Fn::Transform": LocalTemplate._fn_unsupported,
}


def _to_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _throughput(value: Any) -> dict[str, int]:
    value = value or {}
    return {
        "ReadCapacityUnits": int(value.get("ReadCapacityUnits", 5)),
        "WriteCapacityUnits": int(value.get("WriteCapacityUnits", 5)),
    }


def _destination(value: Any) -> Destination | None:
    """An ``OnFailure``/``OnSuccess`` destination; its type is the ARN's, as Lambda tells it."""
    if not value or "Destination" not in value:
        return None
    arn = _to_str(value["Destination"])
    service = arn.split(":")[2] if arn.count(":") >= 2 else ""
    return Destination(_DESTINATION_TYPES.get(service, service), arn)


def _pattern(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, dict):
        raise TemplateError(f"an event pattern must be a mapping, got {value!r}")
    return value


def _references(value: Any) -> set[str]:
    """Logical ids that ``value`` refers to through Ref, GetAtt or Sub."""
    found: set[str] = set()
    if isinstance(value, list):
        for v in value:
            found |= _references(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref" and isinstance(v, str):
                found.add(v)
            elif k == "Fn::GetAtt":
                target = v.split(".", 1)[0] if isinstance(v, str) else v[0]
                if isinstance(target, str):
                    found.add(target)
            elif k == "Fn::Sub":
                text = v[0] if isinstance(v, list) else v
                if isinstance(text, str):
                    for expr in _SUB_VAR.findall(text):
                        if not expr.startswith("!"):
                            found.add(expr.split(".", 1)[0].strip())
                found |= _references(v)
            else:
                found |= _references(v)
    return found
