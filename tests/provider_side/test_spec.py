"""docs/provider-api.md is the spec: every JSON example in it validates against the schema and
is accepted by sshpin's own parser, and every response of the reference server validates."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from sshpin.trust.document import parse_capsul_api
from tests.conftest import TLS, TOKEN, Keys
from tests.refserver import ReferenceServer

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCHEMA = json.loads((DOCS / "capsul-hostkeys-v1.schema.json").read_text())
EXAMPLES = re.findall(r"```json\n(.*?)```", (DOCS / "provider-api.md").read_text(), re.S)


def test_the_spec_has_examples() -> None:
    assert EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.split("\n", 1)[0][:30])
def test_every_example_validates_and_parses(example: str) -> None:
    data = json.loads(example)
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    doc = parse_capsul_api(example.encode(), "spec", "https://capsul.example/api/capsuls")
    assert all(c.keys and not c.problem for c in doc.capsuls)


def test_the_schema_is_a_valid_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_reference_server_responses_validate(
    provider: ReferenceServer, keys: Keys, tls: TLS
) -> None:
    import ssl
    import urllib.request

    provider.api.add("capsul-s1", [keys.pub(keys.host)], ipv4="198.51.100.9", name="s1")
    provider.api.revoke([keys.pub(keys.forged)])
    context = ssl.create_default_context(cafile=tls.ca_path)
    for query in ("", "?host=capsul-s1"):
        request = urllib.request.Request(provider.api_url + "/capsuls" + query,
                                         headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        with urllib.request.urlopen(request, context=context) as r:
            data = json.loads(r.read())
        jsonschema.Draft202012Validator(SCHEMA).validate(data)
        assert data["capsuls"][0]["id"] == "capsul-s1"
