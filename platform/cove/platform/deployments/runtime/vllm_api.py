"""The parts of vLLM's OpenAI-compatible server the control plane uses: health, the served
models, the runtime LoRA API (`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`) and /metrics."""

from __future__ import annotations

import httpx

from cove.platform.deployments.runtime.base import AdapterFailure


class VllmApi:
    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def healthy(self, base_url: str) -> bool:
        try:
            return self._client.get(f"{base_url}/health").status_code == 200
        except httpx.HTTPError:
            return False

    def served(self, base_url: str) -> frozenset[str] | None:
        """The model names the server answers for; None when it does not answer."""
        try:
            resp = self._client.get(f"{base_url}/v1/models")
            resp.raise_for_status()
            data = resp.json().get("data", [])
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        return frozenset(str(m.get("id")) for m in data if isinstance(m, dict))

    def load_adapter(self, base_url: str, name: str, path: str) -> None:
        try:
            resp = self._client.post(
                f"{base_url}/v1/load_lora_adapter", json={"lora_name": name, "lora_path": path}
            )
        except httpx.HTTPError as exc:
            raise AdapterFailure(f"the instance did not answer: {exc}") from exc
        if resp.status_code == 200:
            return
        message = _error_message(resp)
        if "already been loaded" in message:
            return
        raise AdapterFailure(f"vLLM refused the adapter ({resp.status_code}): {message}")

    def unload_adapter(self, base_url: str, name: str) -> None:
        try:
            resp = self._client.post(f"{base_url}/v1/unload_lora_adapter", json={"lora_name": name})
        except httpx.HTTPError as exc:
            raise AdapterFailure(f"the instance did not answer: {exc}") from exc
        if resp.status_code in (200, 404):
            return
        raise AdapterFailure(
            f"vLLM refused to unload the adapter ({resp.status_code}): {_error_message(resp)}"
        )

    def metrics(self, base_url: str) -> str | None:
        try:
            resp = self._client.get(f"{base_url}/metrics")
        except httpx.HTTPError:
            return None
        return resp.text if resp.status_code == 200 else None


def _error_message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:500]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
        if body.get("message"):
            return str(body["message"])[:500]
    return resp.text[:500]
