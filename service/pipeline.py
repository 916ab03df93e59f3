"""The generation pipeline: mark, label, sign and record every picture as it leaves the model.

Order matters. The watermark goes first, on the generator's own device, while the picture is
still a tensor; the labels (GB 45438-2025 implicit label, IPTC digital source type, in XMP)
come next; C2PA signing is last among the file edits, because anything written after it
would break its hash; the ledger entry comes after that, with the hash of the file as written,
the manifest read back from it and the picture's content fingerprint (``binding``: what tells
the picture from another one its mark was copied onto; :mod:`aigcguard.service.binding`).
A batch is recorded in one ledger transaction.

Files are written under temporary names, the records committed, then the files renamed, so
a kill leaves each picture with its record or neither; opening a pipeline finishes or removes
what a killed run left (:func:`recover_output`; "Crash safety" in docs/provenance.md).

    pipe = ProvenancePipeline(generator, ledger="ledger.sqlite", out_dir="out", key=KEY,
                              generator_name="my-service", signing=Signing("chain.pem", "key.pem"))
    for item in pipe.run(["a red fox", "a lighthouse"], batch_size=2):
        print(item.to_json())

``generator`` is any callable that returns pictures: a diffusers pipeline (called with
``output_type="pt"`` so the pictures stay on its device), or a function returning a B x 3 x H x
W tensor (uint8, or float in [0, 1]), a list of such tensors, PIL images, numpy arrays, or an
object with an ``images`` attribute holding any of those.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aigcguard.fileio import file_sha256, fsync_path, read_config
from aigcguard.imageio import save_image
from aigcguard.provenance.credentials.ledger import (
    Ledger,
    LedgerRecord,
    key_fingerprint,
    sha256_text,
)
from aigcguard.results import JsonResult
from aigcguard.service.binding import fingerprint


@dataclass(frozen=True)
class Signing:
    """The C2PA signer: a certificate chain (leaf first) and the leaf's private key (PEM)."""

    cert_chain: str | Path
    key: str | Path


@dataclass(frozen=True)
class Generated(JsonResult):
    """One picture out of the pipeline: where it was written and what it carries."""

    path: str
    payload: str
    method: str
    key_id: str
    labelled: bool
    signed: bool
    image_sha256: str
    manifest_label: str | None = None


def as_image_tensors(output: Any) -> list[torch.Tensor]:
    """A generator's output as uint8 3 x H x W tensors, left on their device."""
    if hasattr(output, "images"):
        output = output.images
    elif isinstance(output, tuple) and len(output) == 1:  # diffusers with return_dict=False
        output = output[0]
    if isinstance(output, torch.Tensor):
        if output.ndim == 3:
            output = output[None]
        items = list(output.unbind(0)) if output.ndim == 4 else None
    elif isinstance(output, np.ndarray):
        arr = output[None] if output.ndim == 3 else output
        items = [torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1) for a in arr]
    elif isinstance(output, (list, tuple)):
        items = [_one(x) for x in output]
    else:
        items = None
    if not items:
        raise ValueError(
            f"the generator returned {type(output).__name__}, not pictures (expected tensors, "
            "PIL images or arrays)"
        )
    return [_to_uint8(t) for t in items]


def _one(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)
    if hasattr(x, "convert"):  # a PIL image
        return torch.from_numpy(np.array(x.convert("RGB"), np.uint8)).permute(2, 0, 1)
    raise ValueError(f"the generator returned a {type(x).__name__} among its pictures")


def _to_uint8(t: torch.Tensor) -> torch.Tensor:
    if t.ndim != 3 or t.shape[0] not in (1, 3):
        raise ValueError(f"expected a 3 x H x W picture from the generator, got {tuple(t.shape)}")
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    if t.dtype == torch.uint8:
        return t
    if not t.is_floating_point():
        raise ValueError(f"the generator returned pixels of type {t.dtype}")
    return (t.float().clamp(0, 1) * 255).round().to(torch.uint8)


def _is_diffusers(generator: Any) -> bool:
    # a diffusers pipeline means diffusers is imported already; importing it only to ask
    # cost a plain callable 9 to 18 s per `aigc generate` (2-core development machine, busy)
    diffusers = sys.modules.get("diffusers")
    return diffusers is not None and isinstance(generator, diffusers.DiffusionPipeline)


def _takes(generator: Callable, name: str) -> bool:
    try:
        params = inspect.signature(generator).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class ProvenancePipeline:
    """Wraps ``generator``; each call makes a batch and returns one :class:`Generated` each.

    ``ledger``: a :class:`Ledger` or its path. ``key``: the watermark key (keep it secret:
    whoever has it can find, and forge, the marks). ``producer``: the GB 45438 label's content
    producer (by default ``generator_name``). ``signing``: None to skip C2PA. ``fmt``: png
    (lossless) or jpeg/webp at ``quality``.
    """

    def __init__(
        self,
        generator: Callable[..., Any],
        *,
        ledger: Ledger | str | Path,
        out_dir: str | Path,
        key: str | bytes,
        generator_name: str,
        generator_version: str | None = None,
        model: str | None = None,
        method: str | None = None,
        producer: str | None = None,
        signing: Signing | None = None,
        label: bool = True,
        fmt: str = "png",
        quality: int = 95,
        prefix: str = "gen",
    ):
        from aigcguard.watermark import DEFAULT_METHOD, get_method

        self.generator = generator
        self.ledger = ledger if isinstance(ledger, Ledger) else Ledger(ledger)
        self.out_dir = Path(out_dir)
        self.key = key
        self.key_id = key_fingerprint(key)
        self.method = get_method(method or DEFAULT_METHOD).name
        self.generator_name = generator_name
        self.generator_version = generator_version
        self.model = model
        self.producer = producer or generator_name
        self.signing = signing
        self.label = label
        if fmt not in ("png", "jpeg", "webp"):
            raise ValueError(f"fmt must be png, jpeg or webp, not {fmt!r}")
        self.fmt, self.quality, self.prefix = fmt, quality, prefix
        self._diffusers = _is_diffusers(generator)
        #: what opening found in ``out_dir`` after an earlier run was killed (see docs)
        self.recovery = self.recover()

    def recover(self) -> Recovery:
        """Finish or undo what a killed run left in ``out_dir`` (:func:`recover_output`)."""
        return recover_output(self.out_dir, self.ledger)

    # ---- one batch

    def __call__(self, prompt: str | Sequence[str] | None = None, **kwargs) -> list[Generated]:
        prompts = [prompt] if isinstance(prompt, str) else (list(prompt) if prompt else [])
        call = dict(kwargs)
        if prompts:
            call["prompt"] = prompts
        if self._diffusers and _takes(self.generator.__call__, "output_type"):
            call.setdefault("output_type", "pt")  # keep the pictures on the model's device
        images = as_image_tensors(self.generator(**call))
        if prompts and len(prompts) != len(images):
            if len(prompts) == 1:
                prompts = prompts * len(images)
            else:
                raise ValueError(f"{len(prompts)} prompts gave {len(images)} pictures")
        return self._finish(images, prompts or [None] * len(images), call)

    def run(self, prompts: Iterable[str], *, batch_size: int = 4, **kwargs) -> Iterator[Generated]:
        """Generate for every prompt, ``batch_size`` at a time; yields as batches finish."""
        batch: list[str] = []
        for p in prompts:
            batch.append(p)
            if len(batch) == batch_size:
                yield from self(batch, **kwargs)
                batch = []
        if batch:
            yield from self(batch, **kwargs)

    def _finish(
        self, images: list[torch.Tensor], prompts: list[str | None], call: dict
    ) -> list[Generated]:
        from aigcguard.watermark import embed

        payloads = self.ledger.new_payloads(len(images), key_id=self.key_id)
        # on the generator's device: a GPU marks its own output without a round trip
        marked = embed(
            images, [bytes.fromhex(p) for p in payloads], key=self.key, method=self.method
        )
        self.out_dir.mkdir(parents=True, exist_ok=True)
        extra = {k: v for k, v in call.items() if isinstance(v, (int, float, str, bool))}
        suffix = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}[self.fmt]
        done: list[Generated] = []
        records: list[LedgerRecord] = []
        staged: list[tuple[Path, Path]] = []  # (temporary, final name)
        # held shared while this batch has temporaries, so that no other pipeline's recovery
        # takes them for a dead run's
        with _folder_lock(self.out_dir, exclusive=False):
            try:
                for img, payload, prompt in zip(marked, payloads, prompts, strict=True):
                    path = self.out_dir / f"{self.prefix}-{payload}{suffix}"
                    tmp = _temporary(path)
                    staged.append((tmp, path))
                    pixels = img.cpu()
                    labels, manifest, label_name = self._write(pixels, tmp, payload)
                    fsync_path(tmp)  # on disk before the ledger commits to it
                    digest = file_sha256(tmp)  # of the final bytes: renaming keeps them
                    # of the marked pixels the file holds (labels and signing leave them be)
                    binding = fingerprint(pixels)
                    records.append(
                        self._record(
                            payload, prompt, digest, path, manifest, labels, extra, binding
                        )
                    )
                    done.append(
                        Generated(
                            path=str(path),
                            payload=payload,
                            method=self.method,
                            key_id=self.key_id,
                            labelled=labels is not None,
                            signed=manifest is not None,
                            image_sha256=digest,
                            manifest_label=label_name,
                        )
                    )
                fsync_path(self.out_dir)  # the temporaries' names on disk before the commit
                self.ledger.record(records)  # the commit point: the batch is made from here
            except BaseException:
                self._settle(staged, records)
                raise
            # a kill from here on leaves committed records whose pictures are still under
            # their temporary names: the next opening renames them (recover_output)
            for tmp, path in staged:
                os.replace(tmp, path)
            fsync_path(self.out_dir)
        return done

    def _settle(self, staged: list[tuple[Path, Path]], records: list[LedgerRecord]) -> None:
        """After a failure: remove the batch's temporaries, unless its records made it (an
        interrupt can land just after the commit): then they become the pictures."""
        try:
            found = self.ledger.get(records[0].payload, key_id=self.key_id) if records else None
        except Exception:  # the ledger is unusable: leave the temporaries to recovery
            return
        committed = len(records) == len(staged) and (
            found is not None and found.image_sha256 == records[0].image_sha256
        )
        for tmp, path in staged:
            if committed:
                os.replace(tmp, path)
            else:
                tmp.unlink(missing_ok=True)

    def _record(
        self,
        payload: str,
        prompt: str | None,
        digest: str,
        path: Path,
        manifest: dict | None,
        labels: dict | None,
        extra: dict,
        binding: dict,
    ) -> LedgerRecord:
        return LedgerRecord(
            payload=payload,
            key_id=self.key_id,
            method=self.method,
            generator=self.generator_name,
            model=self.model,
            prompt_sha256=None if prompt is None else sha256_text(prompt),
            image_sha256=digest,
            path=str(path),
            manifest=manifest,
            labels=labels,
            extra=extra,
            binding=binding,
        )

    def _write(
        self, pixels: torch.Tensor, tmp: Path, payload: str
    ) -> tuple[dict | None, dict | None, str | None]:
        """Pixels -> file -> labels -> signature, all in the temporary file ``tmp`` (each
        step replaces it atomically); :meth:`_finish` renames it once the batch is recorded."""
        from aigcguard.provenance.credentials import c2pa as credentials
        from aigcguard.provenance.credentials import labels

        save_image(pixels, tmp, format=self.fmt, quality=self.quality)
        label_info = None
        if self.label:
            written = labels.write_label(tmp, tmp, producer=self.producer, produce_id=payload)
            # what the file carries, as the labeller reports it
            label_info = {
                "gb45438": written.gb45438,
                "digital_source_type": written.digital_source_type,
            }
        manifest, label_name = None, None
        if self.signing is not None:
            signed = credentials.sign(
                tmp,
                tmp,
                cert_chain=self.signing.cert_chain,
                key=self.signing.key,
                generator=self.generator_name,
                generator_version=self.generator_version,
                soft_binding=(self.method, payload),
            )
            label_name = signed.manifest_label
            manifest = credentials.verify(tmp).to_dict()
            manifest.pop("path", None)
        return label_info, manifest, label_name


# --------------------------------------------------------------------------- crash recovery

#: a picture's temporary name while its batch is written: ``.NAME.TOKEN.tmp`` beside it (the
#: aigcguard.fileio convention); the writers inside (save, label, sign) nest theirs the same
#: way, so ``..NAME.T1.tmp.T2.tmp`` is a writer's leftover from a kill inside a step
_TEMP = re.compile(
    r"^(?P<dots>\.+)(?P<name>[^.].*-[0-9a-f]{16}\.(?:png|jpg|webp))(?P<tail>(\.[0-9a-f]{12}\.tmp)+)$"
)


def _temporary(path: Path) -> Path:
    return path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"


@contextlib.contextmanager
def _folder_lock(folder: Path, *, exclusive: bool) -> Iterator[bool]:
    """An flock on the folder itself (no lock file to litter it): writers hold it shared
    while they have temporaries there, recovery exclusive, without waiting. Yields whether
    it is held; where there is no flock (Windows) always True: one writer per folder there.
    A killed holder's lock goes with its process."""
    try:
        import fcntl
    except ImportError:
        yield True
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB if exclusive else fcntl.LOCK_SH)
            held = True
        except BlockingIOError:
            held = False
        yield held
    finally:
        os.close(fd)  # releases the lock


@dataclass(frozen=True)
class Recovery(JsonResult):
    """What :func:`recover_output` found in an output folder and did. ``completed``: pictures
    whose records were committed before a kill, renamed from their temporary names;
    ``removed``: temporaries of batches never recorded (and writers' leftovers); ``missing``:
    paths of recorded pictures that are gone from the folder (the records are kept: they still
    answer for marked copies already out); ``skipped``: why nothing was done."""

    folder: str
    completed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    skipped: str | None = None

    def summary(self) -> str | None:
        """One line for a log, or None when there was nothing to do."""
        parts = []
        if self.completed:
            parts.append(f"{len(self.completed)} recorded pictures finished from temporaries")
        if self.removed:
            parts.append(f"{len(self.removed)} unrecorded temporaries removed")
        if self.missing:
            shown = ", ".join(self.missing[:3]) + (", ..." if len(self.missing) > 3 else "")
            parts.append(
                f"{len(self.missing)} ledger records name pictures missing from the folder "
                f"(kept in the ledger): {shown}"
            )
        if self.skipped:
            parts.append(f"recovery skipped: {self.skipped}")
        return f"{self.folder}: " + "; ".join(parts) if parts else None


def recover_output(out_dir: str | Path, ledger: Ledger) -> Recovery:
    """Bring ``out_dir`` back to "each picture with its record" after a killed run: a
    temporary whose record is committed (same file name, same SHA-256) becomes the picture;
    every other temporary is removed; a record of this folder whose picture is gone is
    reported in ``missing``. Skipped while another pipeline is writing to the folder."""
    folder = Path(out_dir)
    if not folder.is_dir():
        return Recovery(str(folder))
    with _folder_lock(folder, exclusive=True) as held:
        if not held:
            return Recovery(str(folder), skipped="another pipeline is writing to this folder")
        return _reconcile(folder, ledger)


def _reconcile(folder: Path, ledger: Ledger) -> Recovery:
    temps: dict[str, list[Path]] = {}  # final name -> its temporaries
    stray: list[Path] = []
    present: set[str] = set()
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.name.startswith("."):
                present.add(entry.name)
            elif not (m := _TEMP.match(entry.name)) or not entry.is_file(follow_symlinks=False):
                continue  # not ours
            elif len(m["dots"]) == 1 and len(m["tail"]) == 17:  # the pipeline's own
                temps.setdefault(m["name"], []).append(folder / entry.name)
            else:
                stray.append(folder / entry.name)
    completed, missing = [], []
    here, mine = os.path.realpath(folder), {}  # record folders, resolved once each
    for _key_id, _payload, path, digest in ledger.iter_files():
        name = os.path.basename(path)
        if name in present:
            continue
        # a record and a temporary of the same file name (its payload is random 64 bits)
        # with the recorded bytes: a committed batch killed before its renames
        good = next((t for t in temps.get(name, ()) if file_sha256(t) == digest), None)
        if good is not None:
            os.replace(good, folder / name)
            temps[name].remove(good)
            present.add(name)
            completed.append(str(folder / name))
            continue
        parent = os.path.dirname(path)
        if parent not in mine:
            mine[parent] = os.path.realpath(parent) == here
        if mine[parent]:
            missing.append(path)
    removed = [t for ts in temps.values() for t in ts] + stray
    for t in removed:
        t.unlink(missing_ok=True)
    if completed or removed:
        fsync_path(folder)
    return Recovery(str(folder), tuple(completed), tuple(str(t) for t in removed), tuple(missing))


# --------------------------------------------------------------------------- from a config file


@dataclass(frozen=True)
class GenerationJob:
    """What ``aigc generate`` runs: the pipeline, the prompts, and the generator's settings."""

    pipeline: ProvenancePipeline
    prompts: list[str]
    batch_size: int
    count: int  # pictures to make when there are no prompts (unconditional generators)
    kwargs: dict[str, Any]


def load_job(path: str | Path, *, key: str | bytes, device: str | None = "auto") -> GenerationJob:
    """Read a generation config (TOML or JSON; see docs/provenance.md): which pipeline to load
    (``[pipeline] diffusers = "DIR"``, a saved diffusers pipeline, loaded offline; or
    ``callable = "module:function"``), the prompts, the output and the provenance settings.
    Relative paths are taken from the config file's folder."""
    path = Path(path)
    cfg = read_config(path, "config")
    base = path.parent

    def rel(p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else base / q

    pipe_cfg = cfg.get("pipeline") or {}
    if "diffusers" in pipe_cfg:
        generator = _load_diffusers(rel(pipe_cfg["diffusers"]), device, path)
        name = pipe_cfg.get("model", Path(pipe_cfg["diffusers"]).name)
    elif "callable" in pipe_cfg:
        generator = _load_callable(pipe_cfg["callable"], path)
        name = pipe_cfg.get("model", pipe_cfg["callable"])
    else:
        raise ValueError(f"{path}: [pipeline] needs `diffusers = DIR` or `callable = MOD:FUNC`")
    gen = cfg.get("generate") or {}
    prompts = [str(p) for p in gen.get("prompts", [])]
    if "prompts_file" in gen:
        text = rel(gen["prompts_file"]).read_text(encoding="utf-8")
        prompts += [line.strip() for line in text.splitlines() if line.strip()]
    out = cfg.get("output") or {}
    prov = cfg.get("provenance") or {}
    sign_cfg = prov.get("sign")
    signing = None
    if sign_cfg:
        signing = Signing(rel(sign_cfg["cert_chain"]), rel(sign_cfg["key"]))
    if "ledger" not in prov:
        raise ValueError(f"{path}: [provenance] needs `ledger = FILE`")
    pipeline = ProvenancePipeline(
        generator,
        ledger=rel(prov["ledger"]),
        out_dir=rel(out.get("dir", "generated")),
        key=key,
        generator_name=str(prov.get("generator", "aigc-guard pipeline")),
        generator_version=prov.get("generator_version"),
        model=str(name),
        method=prov.get("method"),
        producer=prov.get("producer"),
        signing=signing,
        label=bool(prov.get("label", True)),
        fmt=str(out.get("format", "png")),
        quality=int(out.get("quality", 95)),
    )
    return GenerationJob(
        pipeline=pipeline,
        prompts=prompts,
        batch_size=int(gen.get("batch_size", 4)),
        count=int(gen.get("count", len(prompts) or 1)),
        kwargs=dict(gen.get("kwargs", {})),
    )


def run_job(job: GenerationJob) -> Iterator[Generated]:
    """Every picture of ``job``, batch by batch."""
    if job.prompts:
        yield from job.pipeline.run(job.prompts, batch_size=job.batch_size, **job.kwargs)
        return
    left = job.count
    while left > 0:
        n = min(job.batch_size, left)
        yield from job.pipeline(batch_size=n, **job.kwargs)
        left -= n


def _load_diffusers(folder: Path, device: str | None, config: Path):
    try:
        from diffusers import DiffusionPipeline
    except ImportError:
        raise ValueError(
            f"{config}: a diffusers pipeline needs the extra: pip install 'aigc-guard[diffusers]'"
        ) from None
    from aigcguard.device import pick_device

    if not folder.is_dir():
        raise ValueError(f"{config}: no saved diffusers pipeline at {folder}")
    try:
        pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # diffusers raises many kinds for a broken folder
        raise ValueError(f"{config}: cannot load the pipeline at {folder} ({exc})") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(pick_device(device or "auto"))


def _load_callable(spec: str, config: Path):
    import importlib

    module, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"{config}: cannot import {spec!r} ({exc})") from None
    if not callable(fn):
        raise ValueError(f"{config}: {spec!r} is not callable")
    return fn
