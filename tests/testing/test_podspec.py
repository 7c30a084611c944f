"""The kubelet's expansion of a container spec: environment sources in order, downward API fields,
$(VAR) in command and args, and a missing source that keeps the container from starting."""

from __future__ import annotations

import base64

import pytest

from keychain.testing.podspec import ContainerConfigError, expand, expand_container, field_value


def test_expansion_follows_the_kubelet_rules():
    env = {"A": "x", "EMPTY": ""}
    assert expand("$(A)-$(A)", env) == "x-x"
    assert expand("$$(A)", env) == "$(A)"  # $$ escapes
    assert expand("$(MISSING)/$(A)", env) == "$(MISSING)/x"  # unknown references stay
    assert expand("a$b$", env) == "a$b$"
    assert expand("$(EMPTY)|$(A", env) == "|$(A"


def test_env_overrides_env_from_and_may_reference_earlier_variables():
    container = {
        "command": ["run"],
        "args": ["--who", "$(WHO)", "--at", "$(POD)@$(NS)", "$(IGNORED)"],
        "envFrom": [{"configMapRef": {"name": "cfg"}}, {"configMapRef": {"name": "cfg2"}, "prefix": "P_"}],
        "env": [
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "WHO", "value": "$(POD)/$(P_K)"},
            {"name": "LATER", "value": "$(UNSET_YET)"},
            {"name": "UNSET_YET", "value": "now"},
        ],
    }
    configmaps = {"cfg": {"WHO": "from-config", "bad key": "skipped"}, "cfg2": {"K": "v"}}
    pod = {"metadata": {"name": "p-0", "namespace": "ns"}}
    argv, env = expand_container(container, configmaps, pod)
    assert argv == ["run", "--who", "p-0/v", "--at", "p-0@ns", "$(IGNORED)"]
    assert env["LATER"] == "$(UNSET_YET)" and "bad key" not in env


def test_a_missing_config_map_keeps_the_container_from_starting_unless_optional():
    container = {"command": ["run"], "envFrom": [{"configMapRef": {"name": "absent"}}]}
    with pytest.raises(ContainerConfigError, match="absent"):
        expand_container(container, {}, {"metadata": {"name": "p"}})
    container["envFrom"][0]["configMapRef"]["optional"] = True
    assert expand_container(container, {}, {"metadata": {"name": "p"}}) == (["run"], {})


def test_without_command_the_image_entrypoint_runs_with_the_args():
    argv, _ = expand_container({"args": ["node"]}, {}, {"metadata": {}}, image_entrypoint=["keychain"])
    assert argv == ["keychain", "node"]


def test_secrets_and_downward_api_labels_and_ip_are_read_as_the_kubelet_reads_them():
    container = {
        "command": ["run", "$(TOKEN)", "$(ZONE)", "$(IP)"],
        "env": [
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "t"}}},
            {"name": "ZONE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['zone']"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k", "optional": True}}},
        ],
    }
    pod = {"metadata": {"name": "p", "labels": {"zone": "a"}}, "status": {"podIP": "10.1.2.3"}}
    secrets = {"s": {"t": base64.b64encode(b"tok").decode()}}
    argv, env = expand_container(container, {}, pod, secrets=secrets)
    assert argv == ["run", "tok", "a", "10.1.2.3"] and "GONE" not in env
    with pytest.raises(ContainerConfigError, match=r"status\.podIP"):
        field_value({"metadata": {}}, "status.podIP")
