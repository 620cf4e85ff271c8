"""The `gpu:` config section: defaults, typed values, and every mistake refused by key."""

# ruff: noqa: E501 (a table of (input, expected message) reads best one case per line)

from __future__ import annotations

import pytest

from agent.config import AgentConfig, ConfigError, GpuConfig, effective, parse_config

from ..conftest import REPO


def test_defaults() -> None:
    gpu = AgentConfig().gpu
    assert (gpu.temperature_warn, gpu.temperature_critical, gpu.memory_full_percent) == (83, 90, 95)
    assert gpu.reset_xid_set == {48, 62, 64, 74, 79, 92, 95, 119, 120, 140, 154}
    assert gpu.application_xid_set == {13, 31, 43, 45, 68}
    assert gpu.xid_window == 3600.0 and gpu.restart_cooldown == 1800.0
    assert gpu.restart_ollama_on_xid is False


def test_values_are_typed() -> None:
    config = parse_config(
        "gpu:\n  temperature_warn: 75\n  xid_window: 10m\n  reset_xids: [79]\n"
        "  restart_ollama_on_xid: true\n  ollama_url: http://ollama:11434\n"
    )
    assert config.gpu.temperature_warn == 75 and config.gpu.xid_window == 600.0
    assert config.gpu.reset_xid_set == {79}
    assert config.gpu == GpuConfig(temperature_warn=75, xid_window=600.0, reset_xids=(79,),
                                   restart_ollama_on_xid=True, ollama_url="http://ollama:11434")  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gpu: {temprature_warn: 80}", "gpu.temprature_warn: unknown key in section 'gpu' (did you mean 'gpu.temperature_warn'?)"),
        ("gpu: {temperature_warn: 95}", "gpu.temperature_warn: must be lower than gpu.temperature_critical (90), got 95"),
        ("gpu: {temperature_critical: 500}", "gpu.temperature_critical: must be between 30 and 130 (got 500)"),
        ("gpu: {memory_full_percent: 101}", "gpu.memory_full_percent: must be between 50 and 100 (got 101)"),
        ("gpu: {reset_xids: [48, x]}", "gpu.reset_xids[1]: must be a whole number (got 'x')"),
        ("gpu: {reset_xids: [48, 1000]}", "gpu.reset_xids[1]: must be between 1 and 999 (got 1000)"),
        ("gpu: {reset_xids: 48}", "gpu.reset_xids: must be a list (got 48)"),
        ("gpu: {reset_xids: '48,62'}", "gpu.reset_xids: must be a list (got '48,62')"),
        ("gpu: {application_xids: [13, 48]}", "gpu.application_xids: XIDs 48 are also in gpu.reset_xids"),
        ("gpu: {xid_window: 0s}", "gpu.xid_window: must be longer than 0s"),
        ("gpu: {xid_window: 60}", "gpu.xid_window: a duration needs a unit"),
        ("gpu: {xid_storm: -1}", "gpu.xid_storm: must be between 0 and 1000000 (got -1)"),
        ("gpu: {restart_cooldown: 10s}", "gpu.restart_cooldown: must be at least 1m"),
        ("gpu: {ollama_url: 'localhost:11434'}", "gpu.ollama_url: must start with http:// or https://"),
        ("gpu: {kernel_log: 'yes'}", "gpu.kernel_log: must be true or false (got 'yes')"),
    ],
)  # fmt: skip
def test_mistakes_are_refused_with_their_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_xid_lists_are_yaml_lists_and_print_back_as_lists() -> None:
    config = parse_config("gpu: {reset_xids: [79, 48], application_xids: []}")
    assert config.gpu.reset_xids == (79, 48) and config.gpu.application_xid_set == frozenset()
    assert effective(config)["gpu"]["reset_xids"] == [79, 48]


def test_every_bad_list_item_is_reported() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("gpu: {reset_xids: [a, 48, b]}")
    assert info.value.problems == [
        "gpu.reset_xids[0]: must be a whole number (got 'a')",
        "gpu.reset_xids[2]: must be a whole number (got 'b')",
    ]


def test_shipped_config_documents_the_gpu_section() -> None:
    text = (REPO / "etc/aistack/agent.yaml").read_text()
    assert "\ngpu:\n" in text
    for key in GpuConfig.__dataclass_fields__:
        assert f"  # {key}: " in text, key
