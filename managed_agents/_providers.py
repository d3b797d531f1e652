"""Where a worker reaches Claude: the Anthropic API (default), Amazon Bedrock or Google Vertex AI.

Chosen per worker by ``MANAGED_AGENTS_MODEL_PROVIDER`` (``anthropic`` | ``bedrock`` | ``vertex``).
Credentials and regions come from each SDK client's own environment variables, read here on the
worker, so they never enter workflow history:

- ``anthropic``: ``ANTHROPIC_API_KEY`` (or ``ANTHROPIC_AUTH_TOKEN``), ``ANTHROPIC_BASE_URL``.
- ``bedrock`` (extra ``temporal-managed-agents[bedrock]``): ``AWS_REGION`` / ``AWS_DEFAULT_REGION``
  (or the profile's region), the standard AWS credential chain (``AWS_ACCESS_KEY_ID`` and
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, an instance role...) or a Bedrock API key in
  ``AWS_BEARER_TOKEN_BEDROCK``; ``ANTHROPIC_BEDROCK_BASE_URL`` overrides the endpoint.
- ``vertex`` (extra ``temporal-managed-agents[vertex]``): ``CLOUD_ML_REGION``,
  ``ANTHROPIC_VERTEX_PROJECT_ID`` (else the project of the credentials), Google Application
  Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud, the metadata server) or a ready
  OAuth access token in ``ANTHROPIC_VERTEX_ACCESS_TOKEN`` (this module's own variable: the SDK
  takes the token only as an argument; a token is not refreshed, so it suits proxies and tests);
  ``ANTHROPIC_VERTEX_BASE_URL`` overrides the endpoint.

Agents keep naming models as the Anthropic API does (``claude-sonnet-4-6``); ``model_map``
(``MANAGED_AGENTS_MODEL_MAP``, JSON) gives the provider's id where it differs (a Bedrock inference
profile, a Vertex version). Prices and usage stay keyed by the agent's name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anthropic

from managed_agents._settings import ManagedAgentsSettings

#: An SDK client whose ``messages`` is the Messages API, whichever provider serves it.
ModelClient = anthropic.AsyncAnthropic | anthropic.AsyncAnthropicBedrock | anthropic.AsyncAnthropicVertex
#: Builds the client for a model name (what tests and embedders pass to ``build_workers``).
ModelClientFactory = Callable[[str], ModelClient]

#: A ready Google OAuth access token for Vertex, instead of Application Default Credentials.
VERTEX_ACCESS_TOKEN_ENV = "ANTHROPIC_VERTEX_ACCESS_TOKEN"
_GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


class ModelProviderError(RuntimeError):
    """The worker cannot reach its model provider as configured (raised at start, naming what to set)."""


@dataclass(frozen=True)
class ModelProvider:
    """The client model requests go through, and the model ids they name.

    Also a ``ModelClientFactory`` (calling it is ``client``), so it goes wherever one is taken;
    the model activities recognise it and map the ids.
    """

    name: str
    clients: ModelClientFactory
    model_map: Mapping[str, str] = field(default_factory=dict)

    def client(self, model: str) -> ModelClient:
        return self.clients(model)

    def model_id(self, model: str) -> str:
        """The provider's id for the model an agent names (unchanged unless ``model_map`` has it)."""
        return self.model_map.get(model, model)

    def __call__(self, model: str) -> ModelClient:
        return self.clients(model)


def model_provider(settings: ManagedAgentsSettings) -> ModelProvider:
    """The provider ``settings.model_provider`` names, its client built now (and shared by every
    request: one connection pool), so a missing region, project or credential stops the worker at
    start instead of failing its first request. ``max_retries=0``: Temporal owns retries."""
    build = {"anthropic": _anthropic, "bedrock": _bedrock, "vertex": _vertex}[settings.model_provider]
    client = build()
    return ModelProvider(settings.model_provider, lambda _model: client, dict(settings.model_map))


def as_provider(
    client_factory: ModelProvider | ModelClientFactory | None, settings: ManagedAgentsSettings | None = None
) -> ModelProvider:
    """A provider as given; a bare factory (ids unchanged); or, for neither, the one from settings."""
    if isinstance(client_factory, ModelProvider):
        return client_factory
    if client_factory is not None:
        return ModelProvider("custom", client_factory)
    return model_provider(settings or ManagedAgentsSettings())


def _anthropic() -> ModelClient:
    # A missing key is only warned about (worker.py): a base URL may point at a mock or a proxy.
    return anthropic.AsyncAnthropic(max_retries=0)


def _bedrock() -> ModelClient:
    try:
        import boto3
        import botocore.exceptions
    except ImportError as err:
        raise ModelProviderError(
            "MANAGED_AGENTS_MODEL_PROVIDER=bedrock needs boto3: install temporal-managed-agents[bedrock]"
        ) from err
    try:
        # No region anywhere: the SDK's ValueError names AWS_REGION; AWS_PROFILE naming no profile
        # is botocore's error.
        client = anthropic.AsyncAnthropicBedrock(max_retries=0)
        if client.api_key is not None:  # AWS_BEARER_TOKEN_BEDROCK: requests are not signed
            return client
        # The chain the SDK signs with (it resolves it again, per request, from the same places).
        credentials = boto3.Session(region_name=client.aws_region).get_credentials()
    except (ValueError, botocore.exceptions.BotoCoreError) as err:
        raise ModelProviderError(f"model provider bedrock: {err}") from err
    if credentials is None:
        raise ModelProviderError(
            "model provider bedrock: no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or AWS_BEARER_TOKEN_BEDROCK (or run with an instance or task role)"
        )
    return client


def _vertex() -> ModelClient:
    region = os.environ.get("CLOUD_ML_REGION")
    if not region:
        raise ModelProviderError(
            "model provider vertex: CLOUD_ML_REGION is not set (the Vertex AI region, e.g. us-east5, or global)"
        )
    project = os.environ.get("ANTHROPIC_VERTEX_PROJECT_ID") or None
    token = os.environ.get(VERTEX_ACCESS_TOKEN_ENV) or None
    credentials = None
    if token is None:
        credentials, found_project = _google_credentials()
        project = project or found_project
    if not project:
        raise ModelProviderError(
            "model provider vertex: ANTHROPIC_VERTEX_PROJECT_ID is not set and the credentials name no project"
        )
    # Found credentials are handed over: the client refreshes their token itself, off the event loop.
    return anthropic.AsyncAnthropicVertex(
        region=region, project_id=project, access_token=token, credentials=credentials, max_retries=0
    )


def _google_credentials() -> tuple[Any, str | None]:
    try:
        import google.auth
        import google.auth.exceptions
    except ImportError as err:
        raise ModelProviderError(
            "MANAGED_AGENTS_MODEL_PROVIDER=vertex needs google-auth: install temporal-managed-agents[vertex] "
            f"(or give a token in {VERTEX_ACCESS_TOKEN_ENV})"
        ) from err
    try:
        credentials, project = google.auth.default(scopes=[_GOOGLE_SCOPE])
    except google.auth.exceptions.DefaultCredentialsError as err:
        raise ModelProviderError(
            "model provider vertex: no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS (or run "
            f"`gcloud auth application-default login`), or give an access token in {VERTEX_ACCESS_TOKEN_ENV}: {err}"
        ) from err
    return credentials, project
