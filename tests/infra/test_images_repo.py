"""The image repositories (issue 28, "an ECR repository in a stack"): the store stack creates one per image named
in ``ecr_repositories``, immutable, scanned on push, encrypted under the store key, untagged images expired; the
SageMaker execution role pulls the serving image from exactly the repository the stack creates.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.helpers.infra import INFRA, ROOT, Synth, resources

from resnet_infra.config import DEFAULT_CONFIG, ConfigError, load, parse  # isort: skip

pytestmark = pytest.mark.cdk

CFG = load()
VALUES = ROOT / "charts" / "resnet50-serving" / "values.yaml"
PULL = {"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"}
PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "AWS::URLSuffix": "amazonaws.com",
}


def repositories(synth: Synth) -> dict[str, tuple[str, dict[str, Any]]]:
    """Repository name -> (logical id, resource), from the store template."""
    found = resources(synth.templates["store"], "AWS::ECR::Repository")
    return {r["Properties"]["RepositoryName"]: (logical, r) for logical, r in found.items()}


def store_key(synth: Synth) -> str:
    (logical,) = resources(synth.templates["store"], "AWS::KMS::Key")
    return logical


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(synth: Synth) -> dict[str, list[dict[str, Any]]]:
    """Role name -> every statement of the policies attached to it, across the templates."""
    out: dict[str, list[dict[str, Any]]] = {}
    for template in synth.templates.values():
        roles = resources(template, "AWS::IAM::Role")
        for policy in resources(template, "AWS::IAM::Policy").values():
            for ref in policy["Properties"]["Roles"]:
                name = roles[ref["Ref"]]["Properties"].get("RoleName", ref["Ref"])
                out.setdefault(name, []).extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return out


# ---- the repositories ---------------------------------------------------------------------------------------
def test_one_repository_per_configured_image_and_no_other(synth: Synth) -> None:
    assert CFG.repositories == {"serving": "resnet-serving", "operator": "resnet-serving-operator"}
    assert set(repositories(synth)) == set(CFG.ecr_repositories)
    for key, template in synth.templates.items():
        if key != "store":
            assert not resources(template, "AWS::ECR::Repository"), key


@pytest.mark.parametrize("name", CFG.ecr_repositories)
def test_repository_is_immutable_scanned_on_push_and_kept(synth: Synth, name: str) -> None:
    _, repo = repositories(synth)[name]
    props = repo["Properties"]
    assert props["ImageTagMutability"] == "IMMUTABLE"
    assert props["ImageScanningConfiguration"] == {"ScanOnPush": True}
    # Deleting or replacing the stack's resource must not delete the images endpoints and pods pull.
    assert repo["DeletionPolicy"] == "Retain" and repo["UpdateReplacePolicy"] == "Retain"
    # No repository policy: who may pull is decided by the account's IAM policies alone.
    assert "RepositoryPolicyText" not in props


@pytest.mark.parametrize("name", CFG.ecr_repositories)
def test_repository_is_encrypted_under_the_store_key(synth: Synth, name: str) -> None:
    _, repo = repositories(synth)[name]
    key = store_key(synth)
    assert repo["Properties"]["EncryptionConfiguration"] == {
        "EncryptionType": "KMS",
        "KmsKey": {"Fn::GetAtt": [key, "Arn"]},
    }
    assert synth.templates["store"]["Resources"][key]["Properties"]["EnableKeyRotation"] is True


@pytest.mark.parametrize("name", CFG.ecr_repositories)
def test_lifecycle_expires_untagged_images_and_never_a_tagged_one(synth: Synth, name: str) -> None:
    _, repo = repositories(synth)[name]
    rules = json.loads(repo["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
    assert rules, "no lifecycle rule: untagged images would pile up"
    (untagged,) = [r for r in rules if r["selection"]["tagStatus"] == "untagged"]
    assert untagged["action"] == {"type": "expire"}
    assert untagged["selection"]["countType"] in ("sinceImagePushed", "imageCountMoreThan")
    assert 0 < untagged["selection"]["countNumber"] <= 90
    # A tagged image is a release someone may roll back to: no rule selects one.
    assert all(r["selection"]["tagStatus"] == "untagged" for r in rules), rules


def test_repository_uris_are_outputs_of_the_right_repositories(synth: Synth) -> None:
    outputs = synth.templates["store"]["Outputs"]
    repos = repositories(synth)
    for kind, output in (("serving", "ServingRepositoryUri"), ("operator", "OperatorRepositoryUri")):
        logical, _ = repos[CFG.repositories[kind]]
        body, variables = outputs[output]["Value"]["Fn::Sub"]
        assert variables == {"Name": {"Ref": logical}}, output
        names = {**PSEUDO, "Name": CFG.repositories[kind]}
        uri = re.sub(r"\$\{([^}]+)\}", lambda m, names=names: names[m.group(1)], body)
        assert uri == f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/{CFG.repositories[kind]}", output


def test_repository_names_are_the_charts_image_names() -> None:
    values = yaml.safe_load(VALUES.read_text())
    assert values["operator"]["image"]["repository"] == CFG.repositories["operator"]
    # The serving image has no default repository; the chart's comment gives the ECR example to follow.
    text = VALUES.read_text()
    examples = re.findall(r"<account>\.dkr\.ecr\.<region>\.amazonaws\.com/([a-z0-9._/-]+)`", text)
    assert sorted(examples) == sorted(CFG.ecr_repositories)


# ---- who pulls ----------------------------------------------------------------------------------------------
def test_the_execution_role_pulls_exactly_the_serving_repository_the_stack_creates(synth: Synth) -> None:
    statements = role_statements(synth)[CFG.roles["sagemaker"]]
    pulls = [s for s in statements if PULL & set(listed(s["Action"]))]
    assert {a for s in pulls for a in listed(s["Action"])} == PULL
    (resource,) = [r for s in pulls for r in listed(s["Resource"])]
    # The role names the repository by its configured name (the roles stack needs no import); it must be the
    # serving repository the store stack creates, and the operator's is not SageMaker's to pull.
    arn = "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/"
    assert resource == {"Fn::Sub": arn + CFG.serving_repository}
    assert CFG.serving_repository in repositories(synth)
    ecr_actions = {a for s in statements for a in listed(s["Action"]) if a.startswith("ecr:")}
    assert ecr_actions == PULL | {"ecr:GetAuthorizationToken"}, "the execution role must not push or delete images"


def test_no_role_may_push_images(synth: Synth) -> None:
    # Images are pushed by a person or CI with their own credentials, never through a serving role.
    pushes = {"ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"}
    for role, statements in role_statements(synth).items():
        granted = {a for s in statements for a in listed(s["Action"])}
        assert not pushes & granted, role


def test_pulling_needs_no_kms_right_and_the_key_policy_is_unchanged(synth: Synth) -> None:
    # ECR decrypts layers through the grant it makes on the key when it creates the repository: the execution
    # role's KMS rights stay those of reading the store through S3, and the key policy still only delegates to IAM.
    statements = role_statements(synth)[CFG.roles["sagemaker"]]
    for s in statements:
        if any(a.startswith("kms:") for a in listed(s["Action"])):
            assert s["Condition"] == {
                "StringEquals": {"kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}}
            }
    key = synth.templates["store"]["Resources"][store_key(synth)]
    (root,) = key["Properties"]["KeyPolicy"]["Statement"]
    assert root["Action"] == "kms:*" and root["Principal"]["AWS"]["Fn::Join"][1][-1] == ":root"


# ---- the config ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["resnet-serving"], "ecr_repositories must name two ECR repositories, the serving image's then the operator"),
        (["a", "b", "c"], "ecr_repositories must name two ECR repositories"),
        (["resnet-serving", "resnet-serving"], "ecr_repositories: the serving and operator images need a repository"),
        (["resnet-serving", "Resnet-Operator"], "ecr_repositories[1] is not a valid ECR repository name"),
    ],
)
def test_bad_repository_lists_name_the_parameter(value: Any, message: str) -> None:
    data = json.loads(DEFAULT_CONFIG.read_text())
    data["ecr_repositories"] = value
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(data)


# ---- the README ---------------------------------------------------------------------------------------------
def test_readme_lists_the_store_stacks_outputs_and_how_nodes_pull(synth: Synth) -> None:
    text = (INFRA / "README.md").read_text()
    (row,) = [line for line in text.splitlines() if line.startswith("| `resnet-serving-store` |")]
    # CDK's cross-stack exports (ExportsOutput...) are plumbing for the roles stack, not outputs to read.
    for output in [o for o in synth.templates["store"]["Outputs"] if not o.startswith("ExportsOutput")]:
        assert f"`{output}`" in row, f"infra/README.md's stack table does not list {output}"
    section = text.split("## Image repositories", 1)[1].split("\n## ", 1)[0]
    assert "AmazonEC2ContainerRegistryReadOnly" in section
    assert all(f"`{name}`" in section for name in CFG.ecr_repositories)
