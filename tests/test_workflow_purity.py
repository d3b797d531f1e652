"""Workflow code stays pure: the modules Temporal's workflow sandbox loads import no I/O module.

Loading ``managed_agents._workflows.session``, ``.dream`` and ``.webhook_event`` (what a worker
registers) must not pull in a database driver, an HTTP client, the Anthropic SDK, the sandbox's tool
runtime or the activities: workflow code runs in Temporal's sandbox, which re-imports every module
that is not passed through for each workflow run, and anything loaded there must be deterministic
and I/O-free. Pure definitions that both sides need (tool names and definitions, the networking
config, payload models) live in the pure type modules (``managed_agents._models``, ``*.models``)
and the runtime modules import them from there.

The package ``__init__`` counts too. Importing any ``managed_agents`` module first runs
``managed_agents/__init__.py``, on the worker and, for a workflow module the sandbox reloads, inside
the sandbox as well. So the package ``__init__`` must export its public names lazily (a PEP 562
module ``__getattr__``) or import only pure modules: an eager import of the plugin or the client
there drags ``sqlalchemy``, ``httpx`` and ``anthropic`` into every workflow run, and these tests fail.

The imports are made in a fresh interpreter (``sys.executable -c``), so what the rest of the test
session imported does not hide anything.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator

import pytest
from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from managed_agents._settings import ManagedAgentsSettings
from managed_agents.testing.mock_claude import MockClaude, Turn
from tests.conftest import Harness
from tests.helpers import ROOT, marker, session_input, types

WORKFLOW_MODULES = (
    "managed_agents._workflows.session",
    "managed_agents._workflows.dream",
    "managed_agents._workflows.webhook_event",
)

#: Modules that do I/O (network, database, files, subprocesses) and must never be loaded by
#: workflow code. A name also covers its submodules.
IO_MODULES = (
    # third-party clients
    "sqlalchemy",
    "httpx",
    "httpx2",
    "aiohttp",
    "anthropic",
    "psycopg",
    "standardwebhooks",
    "alembic",
    "botocore",
    "boto3",
    "google.auth",
    # the price table: imports httpx2 and can fetch price updates; _pricing imports it lazily,
    # inside cost_nanos, which only the model activity calls
    "genai_prices",
    # this project's I/O modules
    "managed_agents._store",
    "managed_agents._database",
    "managed_agents._sandbox",
    "managed_agents._activities",
    "managed_agents._memory.service",
    "managed_agents._webhooks.service",
    "managed_agents._webhooks.client",
    "managed_agents._dreams.records",
    "managed_agents._dreams.client",
    "managed_agents._client",
    "managed_agents._worker",
    "managed_agents._cli",
    "managed_agents._settings",
    "managed_agents._migrations",
)

#: Every ``managed_agents`` module the workflow modules may load (fnmatch patterns). These are the
#: pure kinds: workflow code, pydantic types, constants and pure functions. A module missing here
#: fails ``test_workflow_modules_load_only_pure_project_modules``: make sure it does no I/O at import
#: and needs none of the I/O modules, then add it (and to PURE_PASSTHROUGH below).
PURE_MODULES = (
    "managed_agents",  # the package __init__: must stay lazy (see the module docstring)
    "managed_agents._workflows",
    "managed_agents._workflows.*",
    "managed_agents._models",
    "managed_agents._models.*",
    "managed_agents._dreams",  # namespace package (no __init__.py)
    "managed_agents._dreams.models",
    "managed_agents._webhooks",  # empty __init__
    "managed_agents._webhooks.models",
    "managed_agents._contract",  # workflow type, signal, query and update names
    "managed_agents._errors",  # ApplicationError subclasses workflow code raises
    "managed_agents._pricing",  # genai_prices is imported lazily, by the activity only
    "managed_agents._prompt",
    "managed_agents._grader",
    "managed_agents._coordination",
    "managed_agents._content_hash",
)

#: What the narrow sandbox runner passes through from this project: the pure type and helper
#: modules only (each name covers its submodules), not the workflow modules (reloaded per run, as
#: by default) and not the package itself (``managed_agents`` would pass every submodule through).
PURE_PASSTHROUGH = (
    "managed_agents._models",
    "managed_agents._dreams.models",
    "managed_agents._webhooks.models",
    "managed_agents._contract",
    "managed_agents._errors",
    "managed_agents._pricing",
    "managed_agents._prompt",
    "managed_agents._grader",
    "managed_agents._coordination",
    "managed_agents._content_hash",
)

_IMPORT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import temporalio.workflow, pydantic
    baseline = set(sys.modules)
    import {modules}
    print(json.dumps(sorted(set(sys.modules) - baseline)))
    """
).format(modules=", ".join(WORKFLOW_MODULES))


def _run(script: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"the script failed:\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def loaded_by_workflows() -> list[str]:
    """Modules newly loaded by importing the workflow modules after temporalio.workflow and pydantic
    (asyncio, which those load, already brings subprocess and socket: they are the baseline)."""
    return json.loads(_run(_IMPORT_SCRIPT).splitlines()[-1])


def _covered(module: str, names: tuple[str, ...]) -> bool:
    return any(module == n or module.startswith(n + ".") for n in names)


def test_workflow_modules_import_no_io_module(loaded_by_workflows: list[str]) -> None:
    assert set(WORKFLOW_MODULES) <= set(loaded_by_workflows)
    offending = sorted(m for m in loaded_by_workflows if _covered(m, IO_MODULES))
    assert not offending, (
        "loading the workflow modules imports I/O modules (workflow code must stay pure: move the "
        "definitions it needs into a pure module such as managed_agents._models, and keep package "
        f"__init__ files lazy): {offending}"
    )


def test_workflow_modules_load_only_pure_project_modules(loaded_by_workflows: list[str]) -> None:
    ours = [m for m in loaded_by_workflows if m == "managed_agents" or m.startswith("managed_agents.")]
    unexpected = sorted(m for m in ours if not any(fnmatch.fnmatchcase(m, p) for p in PURE_MODULES))
    assert not unexpected, (
        "the workflow modules now load project modules that are not on the list of pure modules "
        f"(PURE_MODULES in {__name__}): {unexpected}. Workflow code may import only pure modules "
        "(no I/O at import, no I/O dependencies); if these are pure, add them to PURE_MODULES and "
        "PURE_PASSTHROUGH, otherwise import what the workflow needs from a pure module."
    )


def test_pure_modules_do_not_import_each_io_module_on_their_own() -> None:
    """Each pure module imported alone (not only through the workflows) stays pure too, so a pure
    module is safe to pass through to the sandbox whatever imports it first."""
    script = textwrap.dedent(
        """
        import importlib, json, pkgutil, sys
        import temporalio.workflow, pydantic
        import managed_agents._models
        names = [m.name for m in pkgutil.iter_modules(managed_agents._models.__path__, "managed_agents._models.")]
        names += {singles!r}
        for name in names:
            importlib.import_module(name)
        print(json.dumps(sorted(sys.modules)))
        """
    ).format(singles=[p for p in PURE_PASSTHROUGH if p != "managed_agents._models" and _module_exists(p)])
    loaded = json.loads(_run(script).splitlines()[-1])
    offending = sorted(m for m in loaded if _covered(m, IO_MODULES))
    assert not offending, f"the pure modules import I/O modules: {offending}"


def _module_exists(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# --------------------------------------------------------------------------------------------
# The workflow sandbox, passing through only third-party and pure modules
# --------------------------------------------------------------------------------------------

#: Workflow code is what the sandbox may load itself (re-imported for each run, as by default):
#: every other module the sandbox gets must be passed through, i.e. be one of the pure modules.
RELOADED_IN_SANDBOX = ("managed_agents._workflows",)

_UNINTENTIONAL = re.compile(r"Module (\S+) was not intentionally passed through to the sandbox")


def _narrow_runner() -> SandboxedWorkflowRunner:
    """Temporal's sandbox passing through its defaults (the standard library, temporalio,
    pydantic, ...) plus this project's pure modules only, and warning about every other module
    that gets imported into the sandbox (WARN_ON_UNINTENTIONAL_PASSTHROUGH)."""
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PURE_PASSTHROUGH)
    return SandboxedWorkflowRunner(
        restrictions=restrictions.with_import_notification_policy(
            workflow.SandboxImportNotificationPolicy.WARN_ON_UNINTENTIONAL_PASSTHROUGH
        )
    )


def _not_passed_through(messages: list[str]) -> list[str]:
    """Modules the sandbox loaded itself that are not workflow code, from its warnings."""
    names = {m.group(1) for msg in messages if (m := _UNINTENTIONAL.search(msg))}
    return sorted(n for n in names if not _covered(n, RELOADED_IN_SANDBOX))


def test_workflows_validate_in_a_sandbox_passing_through_only_pure_modules() -> None:
    """What ``Worker()`` does for each workflow class: load its module into a fresh sandbox and
    create an instance (``prepare_workflow``). The package ``__init__`` files run inside that
    sandbox too, so an eager import of an I/O module there shows up here."""
    script = textwrap.dedent(
        """
        import asyncio, json, warnings
        from temporalio import workflow
        from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
        from managed_agents._workflows.dream import DreamWorkflow, ScheduledDream
        from managed_agents._workflows.session import AgentSession
        from managed_agents._workflows.webhook_event import WebhookEvent

        async def main() -> list[str]:
            runner = SandboxedWorkflowRunner(
                restrictions=SandboxRestrictions.default.with_passthrough_modules(*{passthrough!r})
                .with_import_notification_policy(workflow.SandboxImportNotificationPolicy.WARN_ON_UNINTENTIONAL_PASSTHROUGH)
            )
            validated = []
            for cls in (AgentSession, WebhookEvent, DreamWorkflow, ScheduledDream):
                runner.prepare_workflow(workflow._Definition.must_from_class(cls))
                validated.append(cls.__name__)
            return validated

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            validated = asyncio.run(main())
        print(json.dumps({{"validated": validated, "warnings": [str(w.message) for w in caught]}}))
        """
    ).format(passthrough=PURE_PASSTHROUGH)
    out = json.loads(_run(script).splitlines()[-1])
    assert out["validated"] == ["AgentSession", "WebhookEvent", "DreamWorkflow", "ScheduledDream"]
    unexpected = _not_passed_through(out["warnings"])
    assert not unexpected, (
        "the workflow sandbox imported modules that are neither workflow code nor passed through "
        f"(PURE_PASSTHROUGH): {unexpected}; a package __init__ importing them eagerly is the usual cause"
    )


def test_plugin_passes_through_only_pure_modules() -> None:
    """The plugin's own passthrough list (what a real worker shares across workflow runs) holds
    third-party modules and pure project modules only."""
    plugin = pytest.importorskip("managed_agents._plugin")
    assert set(plugin.TYPE_PASSTHROUGH_MODULES) <= set(plugin.PASSTHROUGH_MODULES)
    passthrough = plugin.PASSTHROUGH_MODULES
    io = sorted(m for m in passthrough if _covered(m, IO_MODULES))
    assert not io, f"the plugin passes I/O modules through to the workflow sandbox: {io}"
    ours = [m for m in passthrough if m == "managed_agents" or m.startswith("managed_agents.")]
    impure = sorted(m for m in ours if not any(fnmatch.fnmatchcase(m, p) for p in PURE_MODULES))
    assert not impure, f"the plugin passes through project modules that are not pure (PURE_MODULES): {impure}"
    assert "managed_agents" not in passthrough, "passing 'managed_agents' through passes all of it (I/O too)"


@pytest.fixture
async def narrow_harness(
    temporal_env: WorkflowEnvironment,
    settings: ManagedAgentsSettings,
    mock_claude: MockClaude,
    recwarn: pytest.WarningsRecorder,
) -> AsyncIterator[Harness]:
    """A real worker (the plugin, both roles) whose workflow runner is :func:`_narrow_runner`."""
    from managed_agents._plugin import ManagedAgentsPlugin

    h = Harness(temporal_env.client, settings, mock_claude)
    strict = settings.model_copy(update={"strict_workflow_sandbox": True})
    plugin = ManagedAgentsPlugin(strict, model_client_factory=h.client_factory())
    worker = Worker(
        temporal_env.client, task_queue=settings.task_queue, plugins=[plugin], workflow_runner=_narrow_runner()
    )
    async with worker:
        yield h


async def test_session_runs_with_only_pure_modules_passed_through(
    narrow_harness: Harness, recwarn: pytest.WarningsRecorder
) -> None:
    """A session with a tool call runs end to end on a worker whose sandbox passes through only the
    pure modules (the workflow module is re-imported into the sandbox for the run)."""
    m = marker()
    narrow_harness.mock.script_for(
        m,
        Turn.tool_use("write", {"file_path": "pure.txt", "content": "pure\n"}),
        Turn.text("Written."),
    )
    handle = await narrow_harness.sessions.create(session_input(f"{m} write a file"))
    result = await asyncio.wait_for(handle.result(), timeout=60)
    assert result.status == "terminated"
    assert result.final_message == "Written."
    events = await handle.events()
    assert "agent.tool_result" in types(events)
    assert types(events)[-1] == "session.status_terminated"
    unexpected = _not_passed_through([str(w.message) for w in recwarn.list])
    assert not unexpected, f"the sandbox imported modules that are not passed through: {unexpected}"
