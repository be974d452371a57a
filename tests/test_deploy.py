"""The deployment files parse and say what matters (no Docker engine or cluster is needed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from dockerfile_parse import DockerfileParser

from tests.support.convoflow_process import ConvoflowProcess
from tests.support.fake_slack import FakeSlack
from tests.support.fake_telegram import TOKEN, FakeTelegram
from tests.support.slack_payloads import SIGNING_SECRET

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def instructions(name: str) -> list[tuple[str, str]]:
    parser = DockerfileParser(path=str(DEPLOY / "Dockerfile"))
    return [(i["instruction"], i["value"]) for i in parser.structure if i["instruction"] == name]


def manifests() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            found[document["kind"]] = document
    return found


def test_dockerfile_is_multi_stage_non_root_with_healthcheck_and_entrypoint() -> None:
    stages = instructions("FROM")
    assert len(stages) >= 2 and " AS " in stages[0][1].upper()
    assert any("--from=build" in value for _, value in instructions("COPY"))
    [(_, user)] = instructions("USER")
    assert user not in ("root", "0")
    [(_, check)] = instructions("HEALTHCHECK")
    assert "/healthz" in check
    [(_, entrypoint)] = instructions("ENTRYPOINT")
    assert entrypoint == '["convoflow", "run"]'
    final_stage = (DEPLOY / "Dockerfile").read_text().split("\nFROM ")[-1]
    assert not re.search(r"\b(gcc|build-essential|apt-get install)\b", final_stage)


def test_compose_runs_bot_and_mongo_replica_set() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    mongo, bot = services["mongo"], services["bot"]
    assert mongo["image"].startswith("mongo:")
    assert "--replSet" in mongo["command"]
    assert any(v.endswith(":/data/db") for v in mongo["volumes"])
    assert "rs.initiate" in " ".join(mongo["healthcheck"]["test"])
    assert bot["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert "replicaSet=" in bot["environment"]["MONGODB_URI"]
    assert bot["build"]["dockerfile"] == "deploy/Dockerfile"
    assert "all" in bot["command"]
    assert services["prometheus"]["profiles"] == ["monitoring"]


def test_env_example_lists_every_setting_the_cli_reads() -> None:
    example = (DEPLOY / ".env.example").read_text()
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    cli = (DEPLOY.parent / "adapters" / "host" / "cli.py").read_text()
    read = set(re.findall(r"""env(?:\.get\(|\[)["']([A-Z][A-Z0-9_]+)["']""", cli))
    assert read, "the CLI reads no environment variables?"
    assert read <= listed, f"not in .env.example: {sorted(read - listed)}"


def test_kubernetes_deployment_probes_resources_secrets_and_grace() -> None:
    found = manifests()
    deployment = found["Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 20
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"].startswith("/healthz")
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert container["envFrom"] == [{"secretRef": {"name": found["Secret"]["metadata"]["name"]}}]
    labels = spec["template"]["metadata"]["labels"]
    assert found["Service"]["spec"]["selector"] == labels == spec["selector"]["matchLabels"]
    paths = {p["path"] for rule in found["Ingress"]["spec"]["rules"] for p in rule["http"]["paths"]}
    assert paths == {"/telegram/webhook", "/slack"}


def env_example() -> dict[str, str]:
    """The settings deploy/.env.example sets (its commented-out lines left out)."""
    settings = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            settings[name] = value
    return settings


async def test_the_compose_bot_command_starts_with_the_env_example_filled_in(mongo_uri: str, tmp_path: Path) -> None:
    """What `docker compose up` runs, without Docker: the bot service's command and environment,
    with .env.example filled in as its comments ask (the platforms are the test fakes, MongoDB the
    test server)."""
    telegram, slack = await FakeTelegram().start(), await FakeSlack().start()
    bot_service = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["bot"]
    command = [re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", part) for part in bot_service["command"]]
    settings = {**env_example(), **{name: str(value) for name, value in bot_service["environment"].items()}}
    settings.update(
        TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_WEBHOOK_SECRET="compose-Secret", SLACK_SIGNING_SECRET=SIGNING_SECRET,
        TELEGRAM_WEBHOOK_URL="https://bot.example.org/telegram/webhook", SLACK_BOT_TOKEN=slack.teams[0].bot_token,
        TELEGRAM_API_URL=telegram.url, SLACK_API_URL=slack.api_url, MONGODB_URI=mongo_uri,
    )
    bot = ConvoflowProcess(tmp_path / "bot.log", *command, settings=settings)
    try:
        assert command == ["bots/guessbot.py", "--channel", "all"]
        await bot.launch()
        assert (await bot.wait_ready())["channels"] == ["telegram", "slack"]
        [(_, check)] = instructions("HEALTHCHECK")
        path = re.search(r"%s(/\w+)", check)
        assert path is not None
        async with aiohttp.ClientSession() as http:
            async with http.get(bot.url + path[1]) as response:
                assert response.status == 200
        assert [c.params["url"] for c in telegram.of("setWebhook")] == ["https://bot.example.org/telegram/webhook"]
        assert await bot.stop() == 0
    finally:
        await bot.kill()
        await telegram.close()
        await slack.close()
