"""Settings: the only module that reads the environment.

Every setting is an env var with the ``COMFY_GEN_`` prefix (optionally from a
``.env`` file in the working directory); ``.env.example`` lists them all.
Everything else in comfy-gen takes a ``Settings`` (or values from it) as
arguments and never reads ``os.environ`` itself.

Usage::

    settings = get_settings()                 # cached, from env/.env
    settings = Settings(comfyui_url="http://127.0.0.1:8190")   # explicit, for tests
    settings.backend_url("default")
"""

from __future__ import annotations

import functools
import json
import os
import shlex
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from comfy_gen.errors import ConfigError, ProblemListError
from comfy_gen.urls import install_log_redaction, redact_text, url_problem

# Settings carry the URLs and keys that must never reach a log: every record
# created in a process that reads settings has URL credentials masked.
install_log_redaction()

#: The repository root when running from a checkout (workflows/, recipes/ live there).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = Path(__file__).resolve().parent

PolicyTier = Literal["general", "mature", "explicit"]


def _default_dir(name: str) -> Path:
    candidate = PROJECT_ROOT / name
    return candidate if candidate.is_dir() else Path.cwd() / name


class Settings(BaseSettings):
    """All comfy-gen settings. Field ``foo`` is env var ``COMFY_GEN_FOO``."""

    model_config = SettingsConfigDict(
        env_prefix="COMFY_GEN_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- ComfyUI backends ---
    comfyui_url: str = Field("http://127.0.0.1:8188", description="Default ComfyUI base URL")
    # NoDecode: pydantic-settings would JSON-decode these before our validators run
    # and fail with a message that names neither the variable nor the format.
    backends: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description='Named backends as JSON, e.g. {"gpu1": "http://127.0.0.1:8188"}; '
        '"default" is comfyui_url unless given here',
    )
    http_timeout: float = Field(30.0, gt=0, description="Per-request timeout (s)")
    connect_timeout: float = Field(5.0, gt=0, description="TCP connect timeout (s)")
    http_retries: int = Field(3, ge=1, description="Attempts for 5xx/connection errors/timeouts")
    retry_delay: float = Field(2.0, ge=0, description="First retry delay (s); doubles each retry")
    job_timeout: float = Field(900.0, gt=0, description="Overall wait for one job (s)")
    poll_interval: float = Field(1.0, gt=0, description="History poll interval when the socket is down (s)")
    gpu_limit: int = Field(2, ge=1, description="Max jobs outstanding on one backend")

    # --- local folders ---
    output_dir: Path = Field(Path("output"), description="Where images, sidecars and run records go")
    workflows_dir: Path = Field(default_factory=lambda: _default_dir("workflows"))
    recipes_dir: Path = Field(default_factory=lambda: _default_dir("recipes"))
    input_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Extra folders user/agent input images may come from (output_dir and cwd are always allowed for the CLI)",
    )
    recipe_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Extra folders the flow accepts recipe files from (besides recipes_dir and cwd)",
    )
    presets_file: Path | None = Field(None, description="Optional presets.yaml overriding the shipped presets")

    # --- categories and policy ---
    categories_paths: Annotated[list[Path], NoDecode] = Field(default_factory=list, description="Extra category folders (user overrides)")
    categories_strict: bool = Field(False, description="Refuse to start when a category file is invalid")
    policy_tier: PolicyTier = Field("general", description="Highest content tier this server allows")

    # --- validation ---
    clip_model: str = Field("openai/clip-vit-base-patch32", description="Hub id or local folder of the CLIP model")
    clip_device: str | None = Field(None, description="cuda / cpu; default: cuda when available")
    clip_batch_size: int = Field(16, ge=1)

    # --- object storage ---
    minio_endpoint: str | None = Field(None, description="host:port of the S3/MinIO server; unset = local only")
    minio_access_key: SecretStr | None = None
    minio_secret_key: SecretStr | None = None
    minio_secret_block: str | None = Field(
        None, description="Prefect Secret block holding the secret key, or JSON {access_key, secret_key}")
    minio_bucket: str = "comfy-gen"
    minio_secure: bool = False
    minio_public_url: str | None = Field(None, description="Base URL for public links (default: endpoint/bucket)")
    minio_region: str | None = None
    upload_workers: int = Field(8, ge=1)

    # --- local ComfyUI server management (comfy-gen server ...) ---
    comfyui_path: Path | None = Field(None, description="Folder of a local ComfyUI install (main.py)")
    comfyui_python: str = Field("python3", description="Python used to start ComfyUI")
    comfyui_args: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["--listen", "127.0.0.1", "--port", "8188"])
    state_dir: Path = Field(Path(".comfy-gen"), description="pid files, logs, emulator data")

    # --- Prefect ---
    prefect_concurrency_name: str = Field("comfyui", description="GCL name prefix: <prefix>:<backend>")
    gpu_gate: Literal["local", "prefect", "none"] = Field(
        "local",
        description="Cross-process GPU bound: local = flock slots shared by every flow on this host "
        "(released by the OS if a holder dies); prefect = a Prefect global concurrency limit "
        "(flows on several hosts); none = in-process only",
    )
    flow_workers: int = Field(8, ge=1, description="Threads per flow run (items in progress at once)")
    stage_tasks: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Show compose/queue/await/validate/refine/upload as task runs nested under each item: "
        "on, off, or auto = on when a run renders at most stage_tasks_max_items items (a recipe's "
        "stage_tasks other than auto wins)",
    )
    stage_tasks_max_items: int = Field(
        150, ge=0, description="auto stage tasks: the most items a run may render with nested stage task runs "
        "(bench/README.md: what the Prefect server records without falling behind)")

    @field_validator("backends", mode="before")
    @classmethod
    def _parse_backends(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return {}
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f'must be a JSON object like {{"gpu1": "http://127.0.0.1:8188"}} ({exc})') from exc
        return value

    @field_validator("comfyui_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        problem = url_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("backends")
    @classmethod
    def _check_backend_urls(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [f"{name}: {problem}" for name, url in value.items() if (problem := url_problem(url))]
        if bad:
            raise ValueError("; ".join(bad))
        return value

    @field_validator("input_dirs", "categories_paths", "recipe_dirs", mode="before")
    @classmethod
    def _parse_path_list(cls, value: Any) -> Any:
        """A JSON list, or folders separated by the OS path separator (like PATH)."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"must be a JSON list of folders ({exc})") from exc
            return [part for part in text.split(os.pathsep) if part.strip()]
        return value

    @field_validator("comfyui_args", mode="before")
    @classmethod
    def _parse_args(cls, value: Any) -> Any:
        """A JSON list, or a shell-style command line (``--listen 127.0.0.1 --port 8188``)."""
        if isinstance(value, str):
            text = value.strip()
            try:
                return json.loads(text) if text.startswith("[") else shlex.split(text)
            except (json.JSONDecodeError, ValueError) as exc:
                raise ValueError(f"must be a JSON list or a shell-style argument line ({exc})") from exc
        return value

    # --- derived values ---

    @property
    def comfyui_url_configured(self) -> bool:
        """True when the user set a ComfyUI URL (env, .env or explicitly)."""
        return "comfyui_url" in self.model_fields_set or bool(self.backends)

    def backend_urls(self) -> dict[str, str]:
        urls = {"default": self.comfyui_url.rstrip("/")}
        urls.update({k: v.rstrip("/") for k, v in self.backends.items()})
        return urls

    def backend_url(self, name: str = "default") -> str:
        urls = self.backend_urls()
        if name not in urls:
            raise ConfigError(
                f"Unknown backend {name!r}; known backends: {', '.join(sorted(urls))}",
                hint="Define it in COMFY_GEN_BACKENDS as JSON, e.g. {\"gpu1\": \"http://127.0.0.1:8188\"}",
            )
        return urls[name]

    @property
    def storage_configured(self) -> bool:
        return bool(self.minio_endpoint)

    def secret(self, name: str) -> str | None:
        """The plain value of a secret setting (never log it)."""
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else value


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment (and .env)."""
    try:
        return Settings()
    except ValidationError as exc:  # translate once, here
        raise settings_error(exc) from exc


#: Settings whose values must never be echoed back in an error message. A
#: malformed COMFY_GEN_BACKENDS may hold credentials in a form no URL parser
#: recognises (a broken JSON string), so it is never echoed either.
_SECRET_FIELDS = frozenset({"minio_access_key", "minio_secret_key", "backends"})


def settings_error(exc: ValidationError) -> ConfigError:
    """One problem per line, named by its env var, without pydantic's URLs."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = [str(part) for part in err.get("loc", ())]
        field = loc[0] if loc else "?"
        name = f"COMFY_GEN_{field.upper()}" + "".join(f"[{part}]" for part in loc[1:])
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        # Values may be URLs with credentials (COMFY_GEN_COMFYUI_URL, a malformed
        # COMFY_GEN_BACKENDS): what is echoed is redacted.
        message = redact_text(message)
        if field in _SECRET_FIELDS or "input" not in err or isinstance(err["input"], (dict, list)):
            problems.append(f"{name}: {message}")
        else:
            problems.append(f"{name}={redact_text(repr(err['input']))}: {message}")
    return ProblemListError(
        f"Invalid comfy-gen settings ({len(problems)} problem(s))", problems,
        hint="Fix the environment variable or the .env file in the working directory; "
             ".env.example lists every setting.")


def reset_settings_cache() -> None:
    """Forget cached settings (tests, or after changing the environment)."""
    get_settings.cache_clear()


def prefect_defaults(settings: Settings) -> dict[str, str]:
    """Prefect env vars comfy-gen sets for in-process runs when the user has not.

    Without a configured server (PREFECT_API_URL), ``comfy-gen run``/``demo`` start
    their own local ``prefect server start`` (and a direct in-process flow call
    uses Prefect's temporary server); either way history goes to
    ``<state_dir>/prefect`` (not ~/.prefect), so ``PREFECT_HOME=<that> prefect
    server start`` shows every past run.
    """
    import os

    env: dict[str, str] = {}
    if not os.environ.get("PREFECT_API_URL") and not os.environ.get("PREFECT_HOME"):
        env["PREFECT_HOME"] = str((Path(settings.state_dir) / "prefect").resolve())
    # The default 20 s start-up timeout is too tight on a small, busy machine.
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
                   os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"))
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED", "false"))
    # For the temporary server this process starts: record task runs in batches
    # (~5x less server CPU per run; large recipes keep every item in the UI).
    env.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE",
                   os.environ.get("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE", "100"))
    return env


def prefect_home(settings: Settings) -> Path:
    """The Prefect home in use: PREFECT_HOME, else comfy-gen's ``<state_dir>/prefect``."""
    import os

    return Path(os.environ.get("PREFECT_HOME") or (Path(settings.state_dir) / "prefect")).resolve()


def prefect_api_configured() -> bool:
    """Whether runs should talk to an existing Prefect server (PREFECT_API_URL)."""
    import os

    return bool(os.environ.get("PREFECT_API_URL"))


def hub_offline_set() -> bool:
    """Whether the user already decided about Hugging Face hub access (HF_HUB_OFFLINE)."""
    import os

    return "HF_HUB_OFFLINE" in os.environ


def hub_offline() -> bool:
    """Whether Hugging Face hub access is switched off (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    import os

    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
