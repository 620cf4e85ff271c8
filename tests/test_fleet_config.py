"""The fleet's keys in agent.yaml (docs/fleet.md): Ollama published to other hosts only
by explicit opt-in, remote backends as plain http(s)://host:port URLs; each mistake named
by its key."""

from __future__ import annotations

import pytest

from agent.config import ConfigError, parse_config

BACKENDS = "stack:\n  ollama: {models: [llama3.2:1b]}\n  litellm: {ollama_backends: %s}\n"


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.problems


@pytest.mark.parametrize("port", ["10.0.0.5:11434", "0.0.0.0:11434", "[::]:11434"])
def test_ollama_on_another_hosts_reach_needs_allow_remote(port: str) -> None:
    text = f"stack:\n  ollama:\n    ports: ['127.0.0.1:11434', '{port}']\n"
    [problem] = _problems(text)
    assert problem.startswith(f"stack.ollama.ports[1]: {port} is not a loopback address, so ")
    assert "set stack.ollama.allow_remote: true if that is intended" in problem
    config = parse_config(text.replace("    ports:", "    allow_remote: true\n    ports:"))
    assert config.stack.ollama.ports == ("127.0.0.1:11434", port)


def test_loopback_needs_no_opt_in() -> None:
    config = parse_config("stack: {ollama: {ports: ['127.0.0.1:11434', '[::1]:11434']}}")
    assert config.stack.ollama.allow_remote is False


def test_a_gpu_host_published_only_remotely_must_say_where_its_agent_asks() -> None:
    text = "stack: {ollama: {allow_remote: true, ports: ['10.0.0.5:11434']}}\n"
    [problem] = _problems(text)
    assert problem.startswith("stack.ollama.ports: none of them publishes where the agent asks")
    assert "gpu.ollama_url: http://127.0.0.1:11434" in problem
    parse_config(text + "gpu: {ollama_url: 'http://10.0.0.5:11434'}\n")
    parse_config("stack: {ollama: {allow_remote: true, ports: ['0.0.0.0:11434']}}")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://gpu1:11434", "must start with http:// or https://"),
        ("gpu1:11434", "must start with http:// or https://"),
        ("http://user:secret@gpu1:11434", "must not carry credentials"),
        ("http://gpu1", "needs a port"),
        ("http://gpu1:99999", "not a URL"),
        ("http://gpu1:11434/v1", "without a path or query"),
        ("http://gpu1:11434?x=1", "without a path or query"),
        ("http://gpu_1:11434", "not a host name or IP address: 'gpu_1'"),
        ("http://:11434", "no host"),
    ],
)
def test_a_bad_backend_url_is_named_by_its_index(url: str, why: str) -> None:
    [problem] = _problems(BACKENDS % f"[http://gpu0:11434, '{url}']")
    assert problem.startswith("stack.litellm.ollama_backends[1]: "), problem
    assert why in problem
    assert "secret" not in problem


def test_duplicates_and_the_local_ollama_are_refused() -> None:
    problems = _problems(
        BACKENDS % "[http://gpu1:11434, 'http://gpu1:11434/', http://ollama:11434]"
    )
    assert problems == [
        "stack.litellm.ollama_backends[1]: 'http://gpu1:11434/' is listed twice",
        "stack.litellm.ollama_backends[2]: 'http://ollama:11434' is the local Ollama, which "
        "is a deployment already when stack.ollama.enabled is true",
    ]


def test_backends_need_models_to_route() -> None:
    [problem] = _problems("stack: {litellm: {ollama_backends: [http://gpu1:11434]}}")
    assert problem.startswith("stack.litellm.ollama_backends: no model to route to them")


def test_good_backends_are_kept_and_normalised() -> None:
    config = parse_config(BACKENDS % "[http://gpu1:11434/, 'https://[fd00::6]:11434', "
                          "http://10.0.0.7:11434, http://gpu2.lan.:11434]")  # fmt: skip
    assert config.stack.litellm.backend_urls == (
        "http://gpu1:11434",
        "https://[fd00::6]:11434",
        "http://10.0.0.7:11434",
        "http://gpu2.lan.:11434",
    )
