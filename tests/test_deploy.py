"""deploy/: every config parses, validates against Dagster's own schemas, and names only files that exist."""
import re

import pytest
import yaml

from tests.conftest import REPO

DEPLOY = REPO / "deploy"


def test_dagster_yaml_validates_against_the_instance_schema(tmp_path):
    from dagster._config import validate_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster._serdes.config_class import class_from_code_pointer
    (tmp_path / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    config, _ = dagster_instance_config(str(tmp_path))  # raises DagsterInvalidConfigError on any schema error
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]
    # Each pluggable class's own config schema (storage, launcher) accepts its section.
    for module, cls, section in [("dagster_postgres", "DagsterPostgresStorage", config["storage"]["postgres"]),
                                 (config["run_launcher"]["module"], config["run_launcher"]["class"],
                                  config["run_launcher"]["config"])]:
        klass = class_from_code_pointer(module, cls)
        result = validate_config(klass.config_type(), section)
        assert result.success, f"{module}.{cls}: {[e.message for e in result.errors]}"


def test_env_vars_the_instance_reads_are_set_by_compose_and_passed_to_runs():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    instance_env = set(re.findall(r"\{env: (\w+)\}", (DEPLOY / "dagster.yaml").read_text()))
    anchor = compose["x-dagster-env"]
    assert instance_env <= set(anchor), instance_env - set(anchor)
    launcher_env = set(yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["run_launcher"]["config"]["env_vars"])
    assert launcher_env <= set(anchor), launcher_env - set(anchor)


def test_every_file_the_deploy_configs_name_exists():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    names = []
    for name, svc in compose["services"].items():
        if "build" in svc:
            context = (DEPLOY / svc["build"]["context"]).resolve()
            dockerfile = context / svc["build"]["dockerfile"]
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
            names.append(dockerfile)
        for volume in svc.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith("./"):
                assert (DEPLOY / host).is_file(), f"{name}: volume {host} missing"
    # Every COPY source in the Dockerfiles exists in the build context (the repo root).
    for dockerfile in names:
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY "):
                for src in line.split()[1:-1]:
                    assert (REPO / src).exists(), f"{dockerfile.name}: COPY {src} missing"
    images = {svc["image"] for svc in compose["services"].values() if "build" in svc}
    assert {svc["image"] for svc in compose["services"].values() if svc["image"].startswith("octavia")} <= images
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    assert {loc["grpc_server"]["host"] for loc in workspace["load_from"]} <= set(compose["services"])


def test_image_entrypoints_import():
    # The code server's CMD loads this module; the GPU variant loads the same one.
    for dockerfile in ("Dockerfile.code", "Dockerfile.gpu"):
        cmd = next(line for line in (DEPLOY / dockerfile).read_text().splitlines() if line.startswith("CMD"))
        module = cmd.split('"-m", "')[1].split('"')[0]
        assert module == "octavia_assets.definitions"
    import dagster as dg

    from octavia_assets.definitions import defs
    assert dg.Definitions.validate_loadable(defs) is None


def test_helm_values_and_gpu_step_pods(monkeypatch):
    dagster_k8s = pytest.importorskip("dagster_k8s", reason="needs dagster-k8s (the deploy extra)")
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    run_cfg = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    snake = {"containerConfig": "container_config", "podSpecConfig": "pod_spec_config"}
    dagster_k8s.job.UserDefinedDagsterK8sConfig.from_dict({snake[k]: v for k, v in run_cfg.items()})
    env = {e["name"]: e["value"] for e in values["dagster-user-deployments"]["deployments"][0]["env"]}
    assert env["OCTAVIA_EXECUTOR"] == "k8s" and env["OCTAVIA_STORAGE"] == "s3"

    # With OCTAVIA_EXECUTOR=k8s the code location runs each step in a pod; GPU stages get GPUs.
    from octavia_assets.definitions import stage_assets
    from octavia_assets.platform import GPU_STEP_K8S_CONFIG, executor_for_env, gpu_stages
    monkeypatch.setenv("OCTAVIA_EXECUTOR", "k8s")
    executor = executor_for_env(stage_assets)
    assert executor.name == "k8s"
    assert {"stems", "transcript"} <= set(gpu_stages(stage_assets))
    from dagster._config import validate_config
    per_step = {"per_step_k8s_config": {name: GPU_STEP_K8S_CONFIG for name in gpu_stages(stage_assets)}}
    result = validate_config(dagster_k8s.k8s_job_executor.config_schema.config_type, per_step)
    assert result.success, [e.message for e in result.errors]
    dagster_k8s.job.UserDefinedDagsterK8sConfig.from_dict(GPU_STEP_K8S_CONFIG)
