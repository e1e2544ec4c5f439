"""Settings: the only module that reads the environment.

Every setting is an env var with the ``COMFY_GEN_`` prefix (optionally from a
``.env`` file in the working directory); ``.env.example`` lists them all.
Everything else in comfy-gen takes a ``Settings`` (or values from it) as
arguments and never reads ``os.environ`` itself.

The original ComfyGen's variables (``COMFYUI_HOST``, ``MINIO_*``, its API's
``COMFYGEN_*``) are read as fallbacks, below every ``COMFY_GEN_*`` value, each
with a one-line warning naming the new variable (``LEGACY_ENV``).

Usage::

    settings = get_settings()                 # cached, from env/.env
    settings = Settings(comfyui_url="http://127.0.0.1:8190")   # explicit, for tests
    settings.backend_url("default")
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shlex
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from comfy_gen.errors import ConfigError, ProblemListError
from comfy_gen.urls import install_log_redaction, redact_text, url_problem

# Settings carry the URLs and keys that must never reach a log: every record
# created in a process that reads settings has URL credentials masked.
install_log_redaction()

#: The repository root when running from a checkout (workflows/, recipes/ live there).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = Path(__file__).resolve().parent

PolicyTier = Literal["general", "mature", "explicit"]


#: Backend names and tags: what a recipe may name (never a URL).
BACKEND_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class BackendSpec(BaseModel):
    """One named ComfyUI backend: its URL, how many jobs it may have outstanding
    (``capacity``; None = ``gpu_limit``) and free-form ``tags`` (models, GPU class)
    that a recipe can ask for instead of names. ``repr`` hides URL credentials."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    capacity: int | None = Field(None, ge=1, description="Max jobs outstanding on this backend")
    tags: tuple[Annotated[str, Field(pattern=BACKEND_NAME_PATTERN)], ...] = ()

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        problem = url_problem(value)
        if problem:
            raise ValueError(problem)
        return value.rstrip("/")

    def __repr__(self) -> str:
        from comfy_gen.urls import redact_url

        return f"BackendSpec(url={redact_url(self.url)!r}, capacity={self.capacity!r}, tags={self.tags!r})"

    __str__ = __repr__


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
    backends: Annotated[dict[str, BackendSpec], NoDecode] = Field(
        default_factory=dict,
        description='Named backends as JSON, e.g. {"gpu1": "http://127.0.0.1:8188"}, or with a capacity '
        'and tags: {"gpu1": {"url": "http://...", "capacity": 3, "tags": ["sdxl"]}}; '
        '"default" is comfyui_url unless given here',
    )
    http_timeout: float = Field(30.0, allow_inf_nan=False, gt=0, description="Per-request timeout (s)")
    connect_timeout: float = Field(5.0, allow_inf_nan=False, gt=0, description="TCP connect timeout (s)")
    http_retries: int = Field(3, ge=1, description="Attempts for 5xx/connection errors/timeouts")
    retry_delay: float = Field(2.0, allow_inf_nan=False, ge=0, description="First retry delay (s); doubles each retry")
    job_timeout: float = Field(900.0, allow_inf_nan=False, gt=0, description="Overall wait for one job (s)")
    poll_interval: float = Field(1.0, allow_inf_nan=False, gt=0, description="History poll interval when the socket is down (s)")
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
    prompt_catalog_file: Path | None = Field(
        None, description="Prompt catalog (--prompt-preset) used instead of the shipped sample")
    lora_catalog_file: Path | None = Field(
        None, description="LoRA catalog (--lora-preset, suggestions) used instead of the shipped sample")

    # --- categories and policy ---
    categories_paths: Annotated[list[Path], NoDecode] = Field(default_factory=list, description="Extra category folders (user overrides)")
    categories_strict: bool = Field(False, description="Refuse to start when a category file is invalid")
    policy_tier: PolicyTier = Field("general", description="Highest content tier this server allows")

    # --- validation ---
    clip_model: str = Field("openai/clip-vit-base-patch32", description="Hub id or local folder of the CLIP model")
    clip_device: str | None = Field(None, description="cuda / cpu; default: cuda when available")
    clip_batch_size: int = Field(16, ge=1)
    # The quality score (comfy_gen.validation.quality, docs/validation.md#quality-score).
    quality_metrics: str = Field("brisque,niqe,laion_aes,topiq_nr",
                                 description="No-reference metrics the quality score tries (comma-separated)")
    quality_weights_dir: str | None = Field(
        None, description="Folder holding pyiqa's weight files under pyiqa's names; unset = pyiqa downloads them")
    quality_aesthetic_clip: str = Field("openai/clip-vit-large-patch14",
                                        description="Hub id or local folder of the CLIP under the LAION aesthetic head")
    quality_aesthetic_head: str = Field(
        "chaofengc/IQA-PyTorch-Weights:sac+logos+ava1-l14-linearMSE.pth",
        description="LAION aesthetic head weights: a local file, or REPO:FILE on the Hugging Face hub")

    # --- prompt enhancer (docs/validation.md#prompt-enhancer) ---
    enhance_backend: Literal["local", "http"] = Field(
        "local", description="Prompt enhancer: local = a transformers chat model on this CPU; "
                             "http = an OpenAI-compatible chat-completions endpoint (Ollama, vLLM, llama.cpp)")
    enhance_model: str = Field(
        "Qwen/Qwen2.5-0.5B-Instruct",
        description="Enhancer model: a hub id or local folder (local), or the endpoint's model name (http)")
    enhance_url: str | None = Field(
        None, description="http enhancer base URL, e.g. http://127.0.0.1:11434/v1 (POST <url>/chat/completions)")
    enhance_timeout: float = Field(60.0, allow_inf_nan=False, gt=0, description="Per-request timeout of the http enhancer (s)")
    enhance_api_key: SecretStr | None = Field(None, description="Bearer token for the http enhancer (never logged)")
    enhance_max_tokens: int = Field(96, ge=8, le=1024, description="Most tokens the enhancer may generate per prompt")

    @field_validator("enhance_url")
    @classmethod
    def _check_enhance_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        problem = url_problem(value.strip())
        if problem:
            raise ValueError(problem)
        return value.strip().rstrip("/")
    # People, pose and content checks (docs/validation.md#people-pose-and-content): hub ids or local folders.
    person_detector_model: str = Field(
        "facebook/detr-resnet-50", description="Object detector (COCO 'person' class) of the person and pose checks")
    person_detector_revision: str | None = Field(
        None, description="Hub branch of the detector; default: 'no_timm' for facebook/detr-resnet-50 "
                          "(transformers' own ResNet, no timm), else the main branch")
    pose_model: str = Field("usyd-community/vitpose-base-simple",
                            description="Keypoint model (ViTPose, 17 COCO keypoints) of the pose check")
    content_caption_model: str = Field("Salesforce/blip-image-captioning-base",
                                       description="Captioning model (BLIP) of the content check")
    content_vqa_model: str = Field("Salesforce/blip-vqa-base",
                                   description="Visual question answering model (BLIP) of the content check")
    validator_device: str | None = Field(
        None, description="cuda / cpu for the person, pose and content models; default: clip_device, else "
                          "cuda when available")

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

    # --- generation catalog (docs/catalog.md) ---
    # SecretStr: a PostgreSQL URL usually carries a password.
    database_url: SecretStr | None = Field(
        None, description="Catalog database, e.g. postgresql+psycopg://user:pw@host/db; unset = SQLite at catalog_path")
    catalog_path: Path | None = Field(None, description="SQLite catalog file (default <state_dir>/catalog.sqlite)")
    catalog_enabled: bool = Field(True, description="Index every kept output in the catalog")

    # --- Prefect ---
    prefect_concurrency_name: str = Field("comfyui", description="GCL name prefix: <prefix>:<backend>")
    gpu_gate: Literal["local", "postgres", "prefect", "none"] = Field(
        "local",
        description="Cross-process GPU bound: local = flock slots shared by every flow on this host "
        "(released by the OS if a holder dies); postgres = PostgreSQL advisory locks shared by every "
        "host using the gate's database (released when a holder's connection dies; docs/SCALING.md); "
        "prefect = a Prefect global concurrency limit; none = in-process only",
    )
    # SecretStr: it usually carries a password. Unset = the catalog's database_url, so one
    # PostgreSQL serves both; set it when the catalog stays on SQLite or lives elsewhere.
    gpu_gate_database_url: SecretStr | None = Field(
        None, description="PostgreSQL for gpu_gate=postgres, e.g. postgresql://user:pw@host/db; "
                          "unset = database_url")
    prefect_database_url: SecretStr | None = Field(
        None, description="PostgreSQL the Prefect server of `comfy-gen up` stores its state in "
                          "(what `up --database-url` sets; unset = Prefect's SQLite)")
    flow_workers: int = Field(8, ge=1, description="Threads per flow run (items in progress at once)")
    model_affinity: bool = Field(
        True, description="Send a run's items grouped by checkpoint and LoRAs, so consecutive jobs on a backend "
        "share their models (ComfyUI reloads weights on every switch); off = recipe order")
    flow_chunk_size: int = Field(
        1000, ge=1,
        description="A recipe of more items runs them as subflow runs of at most this many items each "
        "(one task run per item; docs/SCALING.md)")
    stage_tasks: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Show compose/queue/await/validate/refine/upload as task runs nested under each item: "
        "on, off, or auto = on when a run renders at most stage_tasks_max_items items (a recipe's "
        "stage_tasks other than auto wins)",
    )
    stage_tasks_max_items: int = Field(
        150, ge=0, description="auto stage tasks: the most items a run may render with nested stage task runs "
        "(bench/README.md: what the Prefect server records without falling behind)")

    # --- HTTP API and web page (comfy-gen serve) ---
    api_token: SecretStr | None = Field(
        None, description="Bearer token the HTTP API requires (needed to bind beyond loopback); "
                          "callers with it get policy_tier")
    api_tokens: Annotated[dict[str, PolicyTier], NoDecode] = Field(
        default_factory=dict,
        description='More API tokens, each with its own policy tier, as JSON {"TOKEN": "general"}')
    api_cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed to call the API from a browser (CORS off when empty)")
    api_workers: int = Field(2, ge=1, le=64, description="Generations the API runs at once (threads)")
    api_max_jobs: int = Field(64, ge=1, description="Queued plus running generations before the API answers 503")
    api_allow_url_fetch: bool = Field(
        False, description="Let API/MCP clients name http(s) input-image URLs the server then fetches")
    public_url: str | None = Field(
        None, description="Public base URL of the API server: run artifacts link to its /images and run pages")

    # --- MCP server (comfy-gen mcp) and the model hubs its tools search ---
    mcp_token: SecretStr | None = Field(
        None, description="Bearer token HTTP MCP clients must send; required to bind beyond loopback")
    civitai_enabled: bool = Field(False, description="Let MCP tools query CivitAI (search, model, hash lookup)")
    civitai_api_url: str = Field("https://civitai.com/api/v1", description="CivitAI REST API base URL")
    civitai_api_key: SecretStr | None = Field(None, description="CivitAI API key (sent as a bearer token)")
    hf_enabled: bool = Field(False, description="Let MCP tools query the Hugging Face Hub (search, info, files)")
    hf_api_url: str = Field("https://huggingface.co", description="Hugging Face Hub base URL")
    hf_token: SecretStr | None = Field(None, description="Hugging Face token (sent as a bearer token)")
    hub_timeout: float = Field(20.0, gt=0, description="Per-request timeout for model hub APIs (s)")

    @field_validator("*", mode="before")
    @classmethod
    def _plain_text(cls, value: Any) -> Any:
        """Environment values that were not UTF-8 (Python keeps the bytes as lone
        surrogates) or hold a NUL are refused, not carried into paths, URLs and
        JSON run records where they fail much later."""
        from comfy_gen.params import text_problem

        problem = text_problem(value, "the value")
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("backends", mode="before")
    @classmethod
    def _parse_backends(cls, value: Any) -> Any:
        value = _json_object(value, '{"gpu1": "http://127.0.0.1:8188"} or {"gpu1": {"url": "...", "capacity": 2}}')
        if isinstance(value, dict):
            # The short form (name -> URL) is the long form with only a URL.
            value = {name: {"url": spec} if isinstance(spec, str) else spec for name, spec in value.items()}
        return value

    @field_validator("comfyui_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        problem = url_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("minio_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        """``host:port`` or ``http(s)://host:port``: a bad port is a settings error
        here, not a ValueError from the S3 SDK at the first upload."""
        if value is None or not value.strip():
            return None
        text = value.strip()
        problem = url_problem(text if "://" in text else f"http://{text}")
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("minio_public_url")
    @classmethod
    def _check_minio_public_url(cls, value: str | None) -> str | None:
        problem = url_problem(value) if value else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("backends")
    @classmethod
    def _check_backend_names(cls, value: dict[str, BackendSpec]) -> dict[str, BackendSpec]:
        import re

        bad = [repr(name)[:70] for name in value if not re.fullmatch(BACKEND_NAME_PATTERN, name)]
        if bad:
            raise ValueError(f"backend names must be letters, digits, '.', '_', '-' (got {', '.join(bad)})")
        return value

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _parse_tokens(cls, value: Any) -> Any:
        return _json_object(value, '{"TOKEN": "general"}')

    @field_validator("api_cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> Any:
        """A JSON list, or origins separated by commas."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"must be a JSON list of origins ({exc})") from exc
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        problem = url_problem(value)
        if problem:
            raise ValueError(problem)
        return value.rstrip("/")

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

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Last = lowest priority: an explicit value, COMFY_GEN_* or .env always wins.
        legacy = _LegacyEnvSource(settings_cls, (init_settings, env_settings, dotenv_settings))
        return init_settings, env_settings, dotenv_settings, file_secret_settings, legacy

    # --- derived values ---

    @property
    def comfyui_url_configured(self) -> bool:
        """True when the user set a ComfyUI URL (env, .env or explicitly)."""
        return "comfyui_url" in self.model_fields_set or bool(self.backends)

    def backend_urls(self) -> dict[str, str]:
        urls = {"default": self.comfyui_url.rstrip("/")}
        urls.update({k: v.url for k, v in self.backends.items()})
        return urls

    def backend_spec(self, name: str = "default") -> BackendSpec:
        """The backend called ``name`` with its capacity resolved (ConfigError when unknown)."""
        spec = self.backends.get(name) or BackendSpec(url=self.backend_url(name))
        return spec if spec.capacity is not None else spec.model_copy(update={"capacity": self.gpu_limit})

    def backends_tagged(self, tags: tuple[str, ...] | list[str]) -> list[str]:
        """Names of the backends that carry every tag in ``tags``, sorted."""
        wanted = set(tags)
        return sorted(name for name, spec in self.backends.items() if wanted <= set(spec.tags))

    def backend_url(self, name: str = "default") -> str:
        urls = self.backend_urls()
        if name not in urls:
            raise ConfigError(
                f"Unknown backend {name!r}; known backends: {', '.join(sorted(urls))}",
                hint="Define it in COMFY_GEN_BACKENDS as JSON, e.g. {\"gpu1\": \"http://127.0.0.1:8188\"}",
            )
        return urls[name]

    def catalog_file(self) -> Path:
        """The SQLite catalog used when no database URL is set."""
        return Path(self.catalog_path or Path(self.state_dir) / "catalog.sqlite").expanduser()

    @property
    def storage_configured(self) -> bool:
        return bool(self.minio_endpoint)

    def gate_database_url(self) -> tuple[str, str]:
        """(URL, the env var it came from) of the gpu_gate=postgres database:
        gpu_gate_database_url, else database_url; ConfigError naming both when neither is set."""
        for name in ("gpu_gate_database_url", "database_url"):
            value = self.secret(name)
            if value:
                return value, f"COMFY_GEN_{name.upper()}"
        raise ConfigError("COMFY_GEN_GPU_GATE=postgres needs a PostgreSQL database, and neither "
                          "COMFY_GEN_GPU_GATE_DATABASE_URL nor COMFY_GEN_DATABASE_URL is set",
                          hint="Set COMFY_GEN_GPU_GATE_DATABASE_URL=postgresql://user:password@host:5432/dbname")

    def secret(self, name: str) -> str | None:
        """The plain value of a secret setting (never log it)."""
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else value


# --- the original ComfyGen's variables ------------------------------------------------

#: (original variable, comfy-gen setting), in the order they are tried: the
#: original API's COMFYGEN_* names before the bare names its scripts read.
LEGACY_ENV: tuple[tuple[str, str], ...] = (
    ("COMFYGEN_COMFYUI_HOST", "comfyui_url"),
    ("COMFYUI_HOST", "comfyui_url"),
    ("COMFYGEN_MINIO_ENDPOINT", "minio_endpoint"),
    ("MINIO_ENDPOINT", "minio_endpoint"),
    ("COMFYGEN_MINIO_BUCKET", "minio_bucket"),
    ("MINIO_BUCKET", "minio_bucket"),
    ("MINIO_ACCESS_KEY", "minio_access_key"),
    ("MINIO_SECRET_KEY", "minio_secret_key"),
)
#: The port the original API joined to COMFYGEN_COMFYUI_HOST (default 8188).
LEGACY_PORT_VAR = "COMFYGEN_COMFYUI_PORT"
#: Original variables comfy-gen has no setting for, and why (a one-line notice each).
LEGACY_UNUSED: dict[str, str] = {
    "COMFYGEN_API_URL": "the clients talk to ComfyUI (COMFY_GEN_COMFYUI_URL) or run the flow directly",
    "COMFYGEN_API_HOST": "the HTTP API takes its bind address on its command line",
    "COMFYGEN_API_PORT": "the HTTP API takes its port on its command line",
    "COMFYGEN_MLFLOW_TRACKING_URI": "runs are tracked by Prefect and the sidecar metadata, not MLflow",
    "COMFYGEN_MLFLOW_EXPERIMENT": "runs are tracked by Prefect and the sidecar metadata, not MLflow",
    "MLFLOW_TRACKING_URI": "runs are tracked by Prefect and the sidecar metadata, not MLflow",
    "COMFYGEN_LLM_ENDPOINT": "there is no LLM intent parser; the prompt enhancer's endpoint is COMFY_GEN_ENHANCE_URL",
    "COMFYGEN_LLM_MODEL": "there is no LLM intent parser; the prompt enhancer's model is COMFY_GEN_ENHANCE_MODEL",
    "COMFYGEN_LLM_TIMEOUT": "there is no LLM intent parser; the prompt enhancer's timeout is COMFY_GEN_ENHANCE_TIMEOUT",
    "COMFYGEN_DEBUG": "use the log level of the command or of Prefect instead",
}

legacy_log = logging.getLogger("comfy_gen.config.legacy")
_noticed: set[str] = set()


def _notice(var: str, message: str) -> None:
    """Warn once per process (per settings-cache reset) about an original variable."""
    if var not in _noticed:
        _noticed.add(var)
        legacy_log.warning("%s", message)


def _legacy_url(var: str, value: str) -> str:
    """``host``, ``host:port`` or a URL, as the original accepted it, as a ComfyUI URL."""
    text = value.strip()
    if "://" not in text:
        text = f"http://{text}"
    try:
        has_port = urlsplit(text).port is not None
    except ValueError:
        has_port = True  # url_problem below says what is wrong with the port
    if not has_port and var == "COMFYGEN_COMFYUI_HOST":
        text = f"{text.rstrip('/')}:{os.environ.get(LEGACY_PORT_VAR, '').strip() or '8188'}"
    elif not has_port:
        text = f"{text.rstrip('/')}:8188"
    problem = url_problem(text)
    if problem:
        raise ConfigError(f"{var}: {problem}", hint="Set COMFY_GEN_COMFYUI_URL=http://HOST:PORT instead.")
    return text


class _LegacyEnvSource(PydanticBaseSettingsSource):
    """The original's variables, for settings no higher-priority source gave."""

    def __init__(self, settings_cls: type[BaseSettings], higher: tuple[PydanticBaseSettingsSource, ...]) -> None:
        super().__init__(settings_cls)
        self._higher = higher

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ answers for every field at once

    def __call__(self) -> dict[str, Any]:
        present = {var for var, _ in LEGACY_ENV if os.environ.get(var, "").strip()}
        for var, why in LEGACY_UNUSED.items():
            if os.environ.get(var, "").strip():
                _notice(var, f"{var} (the original ComfyGen's) is not used: {why}.")
        if not present:
            return {}
        given: set[str] = set()
        for source in self._higher:
            given.update(key for key, value in source().items() if value is not None)
        values: dict[str, Any] = {}
        for var, field in LEGACY_ENV:
            if var not in present or field in values:
                continue
            new = f"COMFY_GEN_{field.upper()}"
            if field in given:
                continue  # the comfy-gen value wins, silently
            raw = os.environ[var]
            values[field] = _legacy_url(var, raw) if field == "comfyui_url" else raw.strip()
            _notice(var, f"{var} is read as {new} (the original ComfyGen's name); set {new} instead.")
        return values


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
def _json_object(value: Any, example: str) -> Any:
    """A JSON object from an env string ("" = empty). The parser's message is left
    out on purpose: it quotes the text, and these values hold URLs with passwords
    or tokens."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"must be a JSON object like {example}") from None


_SECRET_FIELDS = frozenset({"minio_access_key", "minio_secret_key", "backends", "minio_endpoint", "database_url",
                            "gpu_gate_database_url", "prefect_database_url",
                            "api_token", "api_tokens", "mcp_token", "civitai_api_key", "hf_token",
                            "enhance_url", "enhance_api_key"})


def settings_error(exc: ValidationError) -> ConfigError:
    """One problem per line, named by its env var, without pydantic's URLs."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = [str(part) for part in err.get("loc", ())]
        field = loc[0] if loc else "?"
        name = f"COMFY_GEN_{field.upper()}" + "".join(f"[{part}]" for part in loc[1:])
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if field == "backends" and err.get("type") == "model_type":
            message = 'must be a URL or an object like {"url": "http://...", "capacity": 2, "tags": ["sdxl"]}'
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
    _noticed.clear()  # a new read is a new "process": its notices are shown again


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


def prefect_api_url() -> str | None:
    """The configured Prefect API URL (PREFECT_API_URL), or None."""
    import os

    return os.environ.get("PREFECT_API_URL") or None


def hub_offline_set() -> bool:
    """Whether the user already decided about Hugging Face hub access (HF_HUB_OFFLINE)."""
    import os

    return "HF_HUB_OFFLINE" in os.environ


def hub_offline() -> bool:
    """Whether Hugging Face hub access is switched off (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    import os

    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
