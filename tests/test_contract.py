import json

import pytest
from pydantic import ValidationError

from steps.contract import (
    BuildRequest,
    BuildResult,
    Classification,
    FailureClass,
    Policy,
    describe_errors,
    parse_duration,
)

GOOD = {"context": "app", "destination": "registry.example.com/team/app:1.0"}


def test_parameters_round_trip_through_argo_strings():
    req = BuildRequest(**GOOD, build_args={"A": "1"}, strict=True)
    params = req.to_parameters()
    assert params["build-args"] == '{"A":"1"}'
    assert params["strict"] == "true"
    assert BuildRequest.from_parameters(params) == req


def test_parameter_specs_carry_names_defaults_and_enums_from_the_model():
    specs = {s.name: s for s in BuildRequest.parameter_specs()}
    assert list(specs) == [
        "context", "dockerfile", "destination", "build-args", "labels",
        "mode", "strict", "push", "approval-timeout",
    ]
    assert specs["mode"].enum == ["auto", "kaniko", "buildkit", "runner", "synthetic"]
    assert specs["approval-timeout"].default == "24h"
    assert specs["context"].required and specs["context"].default is None
    assert all(s.description for s in specs.values())


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("context", "../up", "escapes the build context"),
        ("dockerfile", "/etc/passwd", "escapes the build context"),
        ("destination", "app:1", "fully qualified"),
        ("destination", "Registry.example.com/UPPER:1", "fully qualified"),
        ("approval_timeout", "soon", "not a duration"),
        ("approval_timeout", "0", "must be positive"),
        ("build_args", {"A": "x\x1b[31m"}, "control character"),
        ("build_args", {"A": "x" * 5000}, "longer than"),
        ("build_args", {"bad key": "1"}, "not a valid name"),
        ("mode", "docker", "auto"),
    ],
)
def test_bad_request_names_the_field_and_the_fix(field, value, words):
    with pytest.raises(ValidationError) as exc:
        BuildRequest(**{**GOOD, field: value})
    lines = describe_errors(exc.value)
    assert lines[0].startswith(field), lines
    assert words in lines[0]


def test_build_args_that_are_not_json_are_refused_with_the_field_name():
    with pytest.raises(ValueError, match="build-args: not valid JSON"):
        BuildRequest.from_parameters({**GOOD, "build-args": "A=1"})


def test_unknown_parameter_is_refused():
    with pytest.raises(ValueError, match="unknown parameter"):
        BuildRequest.from_parameters({**GOOD, "desitnation": "x"})


def test_durations_follow_argo():
    assert parse_duration("24h") == 86400
    assert parse_duration("1h30m") == 5400
    assert parse_duration("20") == 20


def test_policy_round_trips_through_configmap_strings():
    policy = Policy(allowed_registries=["registry.example.com/team"], allow_synthetic=False)
    data = policy.to_configmap_data()
    assert data["allowSynthetic"] == "false"
    assert all(isinstance(v, str) for v in data.values())
    assert Policy.from_configmap_data(data) == policy


def test_only_runtime_unavailable_may_fall_back():
    with pytest.raises(ValidationError):
        Classification(class_=FailureClass.BUILD_ERROR, fallback_allowed=True)
    ok = Classification(class_=FailureClass.BUILDER_RUNTIME_UNAVAILABLE, fallback_allowed=True)
    assert json.loads(ok.to_json())["class"] == "builder_runtime_unavailable"


@pytest.mark.parametrize(
    "result",
    [
        {"status": "synthetic", "builder": "buildah", "simulated": True},
        {"status": "succeeded", "builder": "synthetic", "simulated": True, "digest": "sha256:" + "a" * 64},
        {"status": "failed", "builder": "buildah"},
        {"status": "succeeded", "builder": "buildah"},
    ],
    ids=["synthetic-but-real-builder", "simulated-success", "failed-without-class", "success-without-digest"],
)
def test_inconsistent_results_cannot_be_built(result):
    with pytest.raises(ValidationError):
        BuildResult.model_validate(result)
