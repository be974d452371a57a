"""The deployment files parse and say what matters (no Docker engine or cluster is needed)."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from convoflow.adapters.host import cli
from convoflow.adapters.host.loader import load_bot

from tests.support.convoflow_process import ConvoflowProcess
from tests.support.fake_slack import FakeSlack
from tests.support.fake_telegram import TOKEN, FakeTelegram
from tests.support.slack_payloads import SIGNING_SECRET

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def instructions(name: str) -> list[tuple[str, str]]:
    parser = DockerfileParser(path=str(DEPLOY / "Dockerfile"))
    return [(i["instruction"], i["value"]) for i in parser.structure if i["instruction"] == name]


def default_arg(name: str) -> str:
    [default] = [value.partition("=")[2] for _, value in instructions("ARG") if value.partition("=")[0] == name]
    return default


def copied_sources() -> list[str]:
    """What the Dockerfile copies from the build context (the repository), its ARGs at their defaults."""
    sources = []
    for _, value in instructions("COPY"):
        if "--from=" not in value:
            words = [word for word in value.split() if not word.startswith("--")]
            sources += [word.replace("${REQUIREMENTS}", default_arg("REQUIREMENTS")) for word in words[:-1]]
    return sources


def ignored(path: str, pattern: str) -> bool:
    """Whether a .dockerignore pattern excludes `path` (or a folder holding it)."""
    parts = Path(path).parts
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    glob = pattern.removeprefix("**/")
    return any(fnmatch.fnmatch(candidate, pattern) or fnmatch.fnmatch(Path(candidate).name, glob)
               for candidate in candidates)


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
    assert services["prometheus"]["profiles"] == ["monitoring"]


def test_compose_takes_the_bot_its_channel_and_its_requirements_from_the_env_file() -> None:
    bot = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["bot"]
    assert bot["command"][0].startswith("${BOT:-") and bot["command"][1] == "--channel"
    assert bot["command"][2].startswith("${CONVOFLOW_CHANNEL:?")  # no silent default: say which
    assert bot["build"]["args"]["REQUIREMENTS"].startswith("${BOT_REQUIREMENTS:-")
    example = env_example()
    assert example["CONVOFLOW_CHANNEL"] in ("telegram", "slack", "all") and example["BOT"] == "guessbot"
    assert "BOT_REQUIREMENTS=" in (DEPLOY / ".env.example").read_text()
    assert load_bot(interpolated(bot["command"][0], example)).app == "guessbot"
    with pytest.raises(ValueError, match="set CONVOFLOW_CHANNEL in deploy/.env"):
        interpolated(bot["command"][2], {})


def test_dockerignore_keeps_the_venv_git_stores_and_secrets_out_but_not_what_the_image_copies() -> None:
    patterns = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    for excluded in (".venv", ".git", "bot.db", "data/bot.db-wal", "engine/__pycache__", ".mypy_cache",
                     ".pytest_cache", ".hypothesis", "deploy/.env"):
        assert any(ignored(excluded, pattern) for pattern in patterns), excluded
    for source in copied_sources():
        assert not any(ignored(source, pattern) for pattern in patterns), source


def test_dockerfile_copies_what_the_repository_holds_and_installs_the_bots_requirements() -> None:
    for source in copied_sources():
        assert (ROOT / source).exists(), source
    [_, install] = [value for _, value in instructions("RUN")]
    assert "-r /tmp/bot-requirements.txt" in install and "--no-index" in install
    assert "-r bot-requirements.txt" in instructions("RUN")[0][1]  # built into wheels with the rest
    [(_, cmd)] = instructions("CMD")
    bot, *args = json.loads(cmd)
    assert load_bot(bot).app == "guessbot"  # a bundled example: it needs no file in the image
    assert cli.parser().parse_args(["run", bot, *args]).channel == "telegram"


def test_deploy_readme_shows_building_pushing_and_where_the_certificate_comes_from() -> None:
    guide = (DEPLOY / "README.md").read_text()
    assert "docker build -f deploy/Dockerfile -t " in guide and "docker push " in guide
    assert "kubectl create secret tls convoflow-tls" in guide and "cert-manager" in guide
    assert "deploy/requirements.txt" in guide and "--build-arg REQUIREMENTS=" in guide


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
    assert container["envFrom"] == [{"secretRef": {"name": found["Secret"]["metadata"]["name"]}},
                                    {"configMapRef": {"name": found["ConfigMap"]["metadata"]["name"]}}]
    labels = spec["template"]["metadata"]["labels"]
    assert found["Service"]["spec"]["selector"] == labels == spec["selector"]["matchLabels"]
    paths = {p["path"] for rule in found["Ingress"]["spec"]["rules"] for p in rule["http"]["paths"]}
    assert paths == {"/telegram/webhook", "/slack", "/web"}


def test_kubernetes_takes_the_bot_and_its_channel_from_the_config_map() -> None:
    found = manifests()
    [container] = found["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["$(BOT)", "--channel", "$(CONVOFLOW_CHANNEL)"]  # expanded from the env
    config = found["ConfigMap"]["data"]
    args = [re.sub(r"\$\((\w+)\)", lambda m: config[m[1]], arg) for arg in container["args"]]
    assert load_bot(args[0]).app == "guessbot"
    assert cli.parser().parse_args(["run", *args]).channel == config["CONVOFLOW_CHANNEL"]


def test_the_ingress_names_its_class_and_where_its_certificate_comes_from() -> None:
    ingress = manifests()["Ingress"]
    assert ingress["spec"]["ingressClassName"]
    [tls] = ingress["spec"]["tls"]
    text = (DEPLOY / "k8s" / "ingress.yaml").read_text()
    assert f"kubectl create secret tls {tls['secretName']}" in text and "cert-manager.io/cluster-issuer" in text


def env_example() -> dict[str, str]:
    """The settings deploy/.env.example sets (its commented-out lines left out)."""
    settings = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            settings[name] = value
    return settings


def interpolated(text: str, env: dict[str, str]) -> str:
    """`${NAME}`, `${NAME:-default}` and `${NAME:?error}` filled in as compose fills them."""

    def value(match: re.Match[str]) -> str:
        name, kind, rest = match[1], match[2], match[3]
        if env.get(name):
            return env[name]
        if kind == ":?":
            raise ValueError(rest)
        return rest if kind == ":-" else ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", value, text)


@pytest.mark.parametrize("channel", ["telegram", "all"])
async def test_the_compose_bot_command_starts_with_the_env_example_filled_in(
    mongo_uri: str, tmp_path: Path, channel: str
) -> None:
    """What `docker compose up` runs, without Docker: the bot service's command and environment,
    with .env.example filled in as its comments ask, for a Telegram bot (the Slack settings left
    empty) and for every channel (the platforms are the test fakes, MongoDB the test server)."""
    telegram, slack = await FakeTelegram().start(), await FakeSlack().start()
    bot_service = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["bot"]
    env_file = {**env_example(), "CONVOFLOW_CHANNEL": channel}
    command = [interpolated(part, env_file) for part in bot_service["command"]]
    settings = {**env_file, **{name: str(value) for name, value in bot_service["environment"].items()}}
    settings.update(
        TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_WEBHOOK_SECRET="compose-Secret", TELEGRAM_API_URL=telegram.url,
        TELEGRAM_WEBHOOK_URL="https://bot.example.org/telegram/webhook", MONGODB_URI=mongo_uri,
    )
    if channel == "all":
        settings.update(SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_BOT_TOKEN=slack.teams[0].bot_token,
                        SLACK_API_URL=slack.api_url, CONVOFLOW_WEB_SECRET="compose-web-secret-0123456")
    bot = ConvoflowProcess(tmp_path / "bot.log", *command, settings=settings)
    try:
        assert command == ["guessbot", "--channel", channel]
        await bot.launch()
        assert (await bot.wait_ready())["channels"] == (["telegram"] if channel == "telegram" else ["telegram", "slack", "web"])
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
