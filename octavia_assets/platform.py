"""Deployment choices read from the environment: media store, webhook, executor for GPU stages.

The embedded default (nothing set) is the local folder store, no webhook and the in-process
executor, exactly as `octavia dub` and the README demo use them.
"""
from __future__ import annotations

import os

import dagster as dg

from .resources.storage import DEFAULT_URL_EXPIRY_S, LocalMediaStore, MediaStore, S3MediaStore

#: node selector, toleration and GPU request for the step pods of GPU stages (pool "gpu") under
#: the k8s_job_executor. Asset tags do not reach run pods (Dagster #22865), step config does.
GPU_STEP_K8S_CONFIG = {
    "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
    "pod_spec_config": {"node_selector": {"octavia/pool": "gpu"},
                        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
}


def _secret(name: str):
    # dg.EnvVar keeps the value out of the UI and run config; unset means boto3's default chain.
    return dg.EnvVar(name) if os.environ.get(name) else None


def media_store_for_env() -> MediaStore:
    kind = os.environ.get("OCTAVIA_STORAGE", "local").strip().lower()
    if kind == "local":
        return LocalMediaStore()
    if kind != "s3":
        raise ValueError(f"OCTAVIA_STORAGE={kind!r}: expected 'local' or 's3'")
    if not os.environ.get("OCTAVIA_S3_BUCKET"):
        raise ValueError("OCTAVIA_STORAGE=s3 needs OCTAVIA_S3_BUCKET (and OCTAVIA_S3_ENDPOINT_URL off AWS)")
    return S3MediaStore(
        bucket=dg.EnvVar("OCTAVIA_S3_BUCKET"),
        prefix=os.environ.get("OCTAVIA_S3_PREFIX", ""),
        endpoint_url=os.environ.get("OCTAVIA_S3_ENDPOINT_URL") or None,
        region_name=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or None,
        aws_access_key_id=_secret("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=_secret("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=_secret("AWS_SESSION_TOKEN"),
        url_expiry_s=int(os.environ.get("OCTAVIA_URL_EXPIRY_S", DEFAULT_URL_EXPIRY_S)),
        retry_attempts=int(os.environ.get("OCTAVIA_S3_RETRY_ATTEMPTS", "6")),
        retry_max_s=float(os.environ.get("OCTAVIA_S3_RETRY_MAX_S", "20")),
    )


def webhook_for_env():
    from sensors.notifications import WebhookNotifier
    return WebhookNotifier(url=os.environ.get("OCTAVIA_WEBHOOK_URL", ""),
                           secret=_secret("OCTAVIA_WEBHOOK_SECRET") or "")


def executor_for_env(assets) -> dg.ExecutorDefinition | None:
    """OCTAVIA_EXECUTOR=k8s: one pod per step, GPU pods for the stages in pool "gpu"; else Dagster's default."""
    kind = os.environ.get("OCTAVIA_EXECUTOR", "").strip().lower()
    if not kind:
        return None
    if kind != "k8s":
        raise ValueError(f"OCTAVIA_EXECUTOR={kind!r}: expected 'k8s' or unset")
    from dagster_k8s import k8s_job_executor
    return k8s_job_executor.configured({"per_step_k8s_config": {name: GPU_STEP_K8S_CONFIG for name in gpu_stages(assets)}})


def gpu_stages(assets) -> list[str]:
    """Op names of the stages declared in the "gpu" pool."""
    return sorted(a.op.name for a in assets if isinstance(a, dg.AssetsDefinition) and a.op.pool == "gpu")


def upload_key(file_name: str, tier: str = "free", now=None) -> str:
    """uploads/<UTC stamp>-<tier>-<random>/<name>: keys that increase over time, as the upload
    sensor's StartAfter cursor needs, and carry the tier it reads the run priority from."""
    import datetime as dt
    import secrets

    from .resources.storage import check_key
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return check_key(f"uploads/{stamp}-{tier}-{secrets.token_hex(4)}/{file_name}")


def cli_upload(path, tier: str, presign: bool, expires_s: int | None) -> int:
    """`octavia upload FILE`: store the file under a new upload key (or, --presign, print a PUT URL)."""
    from pathlib import Path
    path = Path(path)
    store = media_store_for_env()
    key = upload_key(path.name, tier)
    if presign:
        print(store.upload_url(key, expires_s))
        return 0
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    store.put_file(path, key)
    print(key)
    return 0


def cli_url(video: str, expires_s: int | None) -> int:
    """`octavia url VIDEO`: download URLs of a video's final outputs (presigned on S3)."""
    from .common import output_key
    store = media_store_for_env()
    keys = {"video": output_key(video, f"{video}.dubbed.mp4"), "quality_report": output_key(video, "quality_report.json")}
    missing = [k for k in keys.values() if not store.exists(k)]
    if missing:
        raise FileNotFoundError(f"video {video!r} has no outputs yet ({', '.join(missing)} missing)")
    for name, key in keys.items():
        print(f"{name}: {store.download_url(key, expires_s)}")
    return 0
