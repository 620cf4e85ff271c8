"""LiteLLM's config with remote Ollama backends (docs/fleet.md): one deployment per
backend per declared model, the local Ollama one of them when enabled, the router's
failover settings; without backends the config is the person's model_list alone."""

from __future__ import annotations

from typing import Any

import yaml

from agent.config import parse_config
from agent.stack.render import ROUTER_SETTINGS, HostFacts, render

from ..conftest import REPO
from .test_render import P54


def _litellm(text: str) -> dict[str, Any]:
    result = render(parse_config(text).stack, HostFacts(P54, 257, "none"), REPO / "units")
    assert result.litellm_config is not None
    doc: dict[str, Any] = yaml.safe_load(result.litellm_config)
    return doc


def _pairs(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (m["model_name"], m["litellm_params"]["model"], m["litellm_params"].get("api_base"))
        for m in doc["model_list"]
    ]


def test_one_deployment_per_backend_per_model_with_the_local_ollama_first() -> None:
    doc = _litellm(
        "stack:\n  ollama: {models: [llama3.2:1b, qwen2.5:0.5b]}\n"
        "  litellm:\n    ollama_backends: [http://gpu1:11434, 'https://gpu2.example.com:443/']\n"
    )
    assert _pairs(doc) == [
        ("llama3.2:1b", "ollama_chat/llama3.2:1b", "http://ollama:11434"),
        ("llama3.2:1b", "ollama_chat/llama3.2:1b", "http://gpu1:11434"),
        ("llama3.2:1b", "ollama_chat/llama3.2:1b", "https://gpu2.example.com:443"),
        ("qwen2.5:0.5b", "ollama_chat/qwen2.5:0.5b", "http://ollama:11434"),
        ("qwen2.5:0.5b", "ollama_chat/qwen2.5:0.5b", "http://gpu1:11434"),
        ("qwen2.5:0.5b", "ollama_chat/qwen2.5:0.5b", "https://gpu2.example.com:443"),
    ]
    assert doc["router_settings"] == dict(ROUTER_SETTINGS)
    assert doc["router_settings"]["routing_strategy"] == "simple-shuffle"
    assert doc["router_settings"]["num_retries"] >= 1  # a failed request goes to another


def test_the_persons_model_list_comes_first_and_is_kept_as_is() -> None:
    doc = _litellm(
        "stack:\n  ollama: {enabled: false, models: [llama3.2:1b]}\n"
        "  litellm:\n    ollama_backends: [http://gpu1:11434]\n"
        "    model_list:\n      - model_name: gpt-4o\n"
        "        litellm_params: {model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY}\n"
    )
    assert _pairs(doc) == [
        ("gpt-4o", "openai/gpt-4o", None),
        ("llama3.2:1b", "ollama_chat/llama3.2:1b", "http://gpu1:11434"),
    ]


def test_without_backends_nothing_is_added() -> None:
    doc = _litellm("stack:\n  ollama: {models: [llama3.2:1b]}\n")
    assert doc == {"model_list": []}
