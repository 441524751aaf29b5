"""Training the IPM-Net generator without a makeup dataset.

Each step mixes three kinds of example, all drawn from real aligned faces:

- exact pairs: a random look θ rendered by the procedural renderer onto a
  second face Y (the reference) and onto the source X (the target), L1 to
  R(X, θ), weighted up inside the makeup regions;
- real references (photos wearing makeup, frames of a made-up video):
  per-region colour-matching pseudo-targets (BeautyGAN/SSAT) plus a
  gradient-consistency term that keeps the source's own texture;
- self-reconstruction: the source with its own style gives itself back.

Sources and references are webcam-like: frames of the training clips as
often as photos and more (``p_video``), captured anew by ``augment.webcam_look``
(noise, JPEG, white balance, warm and low light, small faces), and sometimes
behind glasses or a hand (``augment.random_overlay``, laid on the target too).
Besides the pixel L1, ``losses`` scores what the evaluation scores: each
region's mean Lab colour against the target's (the skin's above all: a
person's tone is theirs) and the skin's fine texture.

A style-code reconstruction term asks the output to carry the style of its
target, and an LSGAN multi-scale adversarial loss joins once the rest has
converged (``--adv-from``). Checkpoints resume exactly (models, optimisers,
step, random state); sample grids are written as PNG along the way.

Run: ``python -m ipmcam.ipmnet.train --config lite --steps 6000 --out runs/lite``.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import queue
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ipmcam.face import align
from ipmcam.face.masks import EYE_SHADOW, LIPS, SKIN, lid_profile, region_masks
from ipmcam.ipmnet.augment import random_overlay, webcam_look
from ipmcam.ipmnet.config import get_config
from ipmcam.ipmnet.dataset import TRAINING_CLIPS, FaceSet, load_or_build, split
from ipmcam.ipmnet.export import export_model
from ipmcam.ipmnet.losses import gradient_loss, region_colour_loss, texture_loss
from ipmcam.ipmnet.networks import Generator, MultiScaleDiscriminator, build_generator
from ipmcam.ipmnet.pseudo import region_colour_target
from ipmcam.ipmnet.render import MakeupParams, render
from ipmcam.ipmnet.weights import TRAIN_STATE, save_train_state
from ipmcam.resources import CACHE_DIR, SHARED_DATA

log = logging.getLogger("ipmcam")

DEFAULT_DATA = SHARED_DATA
#: a run folder's checkpoint: resumed from when present, rewritten every ``checkpoint_every`` steps
CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainSettings:
    """Everything that decides a run; saved beside its checkpoints."""

    config: str = "lite"
    steps: int = 4300
    batch: int = 8
    size: int = 128  # training resolution; the network is fully convolutional
    #: from this step on, train at the crop size the model runs at (256): the cheap small-size steps learn
    #: colour, the last ones the scale the pipeline feeds; -1: never
    full_size_from: int = 3600
    lr: float = 2e-4
    warmup: int = 0  # steps over which the learning rate ramps up from 0 (a fine-tune's fresh optimiser)
    #: fine-tune: zero the decoder's last convolution, so the residual starts at nothing and the output at
    #: the preprocessed image (for a change of what the residual is added to, such as ``tint_base``)
    reset_output: bool = False
    seed: int = 0
    #: share of sources and references drawn from clip frames (the rest: photos); the model runs on webcam frames
    p_video: float = 0.6
    p_synthetic: float = 0.5
    p_real: float = 0.4  # the rest: self-reconstruction
    w_region: float = 4.0  # extra L1 weight inside the makeup regions
    w_lips: float = 12.0  # and more on the lips and lids: small areas, the colours people look at
    w_eyes: float = 10.0
    w_pseudo: float = 1.0
    w_gradient: float = 1.0
    #: mean Lab colour of each region against the target's (lips, eye shadow, skin): what the evaluation scores
    w_colour: float = 0.5
    colour_lips: float = 4.0
    colour_eyes: float = 2.0
    colour_skin: float = 2.0
    w_texture: float = 0.5  # the skin's Laplacian energy against the target's
    w_code: float = 0.1
    w_adv: float = 0.05
    clip: float = 5.0  # gradient norm clip of the generator, a guard against a single bad batch
    adv_from: int = -1  # step at which the adversarial loss starts; -1: never
    sample_every: int = 250
    checkpoint_every: int = 100


# ---------------------------------------------------------------- examples


def _jitter_pose(crop: np.ndarray, lm: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A small random similarity (rotation, scale, shift) of a crop and its landmarks."""
    size = crop.shape[0]
    angle = rng.uniform(-6, 6)
    scale = rng.uniform(0.94, 1.06)
    mat = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    mat[:, 2] += rng.uniform(-0.02, 0.02, 2) * size
    return align.warp_to_crop(crop, mat, size), align.transform_points(lm, mat)


def _lid_masks(masks: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Region masks with the eye-shadow channel narrowed to the upper lid, where a pseudo-target may move it."""
    shaped = masks.copy()
    shaped[EYE_SHADOW] *= lid_profile(masks.shape[-1], landmarks)
    return shaped


def _identity_weights(faces: FaceSet, pool: np.ndarray) -> np.ndarray:
    """Sampling probabilities over ``pool`` that give every identity the same share, whatever its frame count."""
    ids = faces.identity[pool]
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    return w / w.sum()


@dataclass
class Example:
    """One training example at 256: source, reference, target, masks and how to score it."""

    source: np.ndarray
    source_masks: np.ndarray
    reference: np.ndarray
    reference_masks: np.ndarray
    target: np.ndarray  # exact or pseudo target, float32 BGR
    kind: int  # 0 synthetic pair, 1 real reference (pseudo-target), 2 self-reconstruction


class ExampleMaker:
    """Draws training examples from a face set.

    Sources and references come from clip frames (``p_video``) or photos;
    within each, every identity gets the same share, so a long clip does not
    crowd out the others. Real references (faces wearing makeup) are drawn
    by identity too.
    """

    def __init__(self, faces: FaceSet, rng: np.random.Generator, settings: TrainSettings) -> None:
        self.faces = faces
        self.rng = rng
        self.settings = settings
        video = np.isin(faces.identity, list(TRAINING_CLIPS))
        self.pools = {(v, bare): pool for v in (True, False) for bare in (True, False)
                      if len(pool := np.flatnonzero((video == v) & (~faces.makeup | ~bare)))}
        self.made_up = np.flatnonzero(faces.makeup)

    def _pick(self, bare: bool) -> int:
        """A face (bare only if asked): from the clips with probability ``p_video``, uniform over identities."""
        want = self.rng.random() < self.settings.p_video
        pool = self.pools.get((want, bare), self.pools.get((not want, bare)))
        return int(self.rng.choice(pool, p=_identity_weights(self.faces, pool)))

    def _face(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        crop, lm = _jitter_pose(self.faces.crops[index], self.faces.landmarks[index], self.rng)
        return webcam_look(crop, self.rng), lm

    def _other(self, index: int, pool: np.ndarray | None = None) -> int:
        """A face of another identity from ``pool`` (identity-weighted), or from the clips/photos mix."""
        for _ in range(20):
            j = self._pick(False) if pool is None else int(self.rng.choice(pool, p=_identity_weights(self.faces, pool)))
            if self.faces.identity[j] != self.faces.identity[index]:
                return j
        return j

    def __call__(self) -> Example:
        example = self._draw()
        # Mirroring after rendering keeps landmarks out of it: the source side
        # (source, its masks, target) flips together, the reference on its own.
        if self.rng.random() < 0.5:
            example.source, example.target = _flip(example.source), _flip(example.target)
            example.source_masks = _flip(example.source_masks, axis=2)
        if self.rng.random() < 0.5:
            example.reference, example.reference_masks = _flip(example.reference), _flip(example.reference_masks, axis=2)
        return example

    def _draw(self) -> Example:
        example, landmarks = self._made_up()
        # Glasses or a hand in front of the face: laid over the source and the finished target alike, so
        # whatever covers the face comes out as it went in.
        scene = self.faces.crops[int(self.rng.integers(len(self.faces)))]
        overlay = random_overlay(example.source.shape[0], landmarks, self.rng, scene)
        if overlay is not None:
            example.source, example.target = overlay.over(example.source), overlay.over(example.target)
        return example

    def _made_up(self) -> tuple[Example, np.ndarray]:
        """An example and its source's landmarks."""
        r = self.rng.random()
        s = self.settings
        i = self._pick(bare=r < s.p_synthetic)
        x, x_lm = self._face(i)
        x_masks = region_masks(x_lm, x.shape[0])
        if r < s.p_synthetic:
            y, y_lm = self._face(self._other(i))
            look = MakeupParams.random(self.rng)
            y_masks = region_masks(y_lm, y.shape[0])
            ref = render(y, y_lm, look, y_masks)
            target = render(x, x_lm, look, x_masks).astype(np.float32)
            return Example(x, x_masks, ref, y_masks, target, 0), x_lm
        if r < s.p_synthetic + s.p_real and len(self.made_up):
            y, y_lm = self._face(self._other(i, self.made_up))
            y_masks = region_masks(y_lm, y.shape[0])
            target = region_colour_target(x, _lid_masks(x_masks, x_lm), y, _lid_masks(y_masks, y_lm))
            return Example(x, x_masks, y, y_masks, target, 1), x_lm
        return Example(x, x_masks, x, x_masks, x.astype(np.float32), 2), x_lm


def _flip(array: np.ndarray, axis: int = 1) -> np.ndarray:
    return np.ascontiguousarray(np.flip(array, axis=axis))


def _to_tensor(images: list[np.ndarray], size: int) -> torch.Tensor:
    """BGR images (S,S,3) → (N,3,size,size) in [-1, 1]."""
    arr = np.stack([cv2.resize(im.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous() / 127.5 - 1.0


def _masks_tensor(masks: list[np.ndarray], size: int) -> torch.Tensor:
    arr = np.stack([[cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in m] for m in masks])
    return torch.from_numpy(arr.astype(np.float32))


class Prefetcher:
    """Builds the next batches in a thread while the current one trains.

    Rendering and augmentation are OpenCV/numpy work that releases the GIL, so
    on a two-core machine they overlap the network's step almost for free.

    Batch k is drawn from its own random stream, seeded by (seed, k): a
    resumed run sees exactly the batches an uninterrupted one would have.
    """

    def __init__(self, faces: FaceSet, settings: TrainSettings, first_step: int, depth: int = 2) -> None:
        self._queue: queue.Queue[dict[str, torch.Tensor]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(faces, settings, first_step), daemon=True,
                                        name="ipmcam-batches")
        self._thread.start()

    def _fill(self, faces: FaceSet, settings: TrainSettings, step: int) -> None:
        while not self._stop.is_set():
            maker = ExampleMaker(faces, np.random.default_rng([settings.seed, step]), settings)
            batch = make_batch(maker, settings.batch, training_size(settings, step))
            step += 1
            while not self._stop.is_set():
                try:
                    self._queue.put(batch, timeout=0.1)
                    break
                except queue.Full:
                    continue

    def next(self) -> dict[str, torch.Tensor]:
        return self._queue.get()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


def training_size(settings: TrainSettings, step: int) -> int:
    """The resolution batch ``step`` is trained at (see ``TrainSettings.full_size_from``)."""
    if 0 <= settings.full_size_from <= step:
        return get_config(settings.config).crop_size
    return settings.size


def make_batch(maker: ExampleMaker, n: int, size: int) -> dict[str, torch.Tensor]:
    examples = [maker() for _ in range(n)]
    return {
        "x": _to_tensor([e.source for e in examples], size),
        "m": _masks_tensor([e.source_masks for e in examples], size),
        "y": _to_tensor([e.reference for e in examples], size),
        "my": _masks_tensor([e.reference_masks for e in examples], size),
        "t": _to_tensor([e.target for e in examples], size),
        "kind": torch.tensor([e.kind for e in examples]),
    }


# ------------------------------------------------------------------ losses


def generator_losses(gen: Generator, batch: dict[str, torch.Tensor], s: TrainSettings) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """Total loss, its named parts, and the generated images."""
    x, m, y, my, t, kind = batch["x"], batch["m"], batch["y"], batch["my"], batch["t"], batch["kind"]
    u = m.amax(dim=1, keepdim=True)
    ref_style = gen.encode_style(y, my)
    out = gen(x, m, ref_style, torch.ones(len(x), 1))
    weight = 1.0 + s.w_region * u + s.w_lips * m[:, LIPS:LIPS + 1] + s.w_eyes * m[:, EYE_SHADOW:EYE_SHADOW + 1]
    per_sample_l1 = ((out - t).abs() * weight).mean(dim=(1, 2, 3))
    exact = kind != 1
    scale = torch.where(exact, torch.ones_like(per_sample_l1), torch.full_like(per_sample_l1, s.w_pseudo))
    l_pix = (per_sample_l1 * scale).mean()
    l_grad = gradient_loss(out, x, u * (kind == 1).float().view(-1, 1, 1, 1))
    region_weights = torch.tensor([s.colour_lips, s.colour_eyes, s.colour_skin])
    l_colour = region_colour_loss(out, t, m, region_weights)
    l_texture = texture_loss(out, t, (m[:, SKIN:SKIN + 1] > 0.5).float())
    # Style-code reconstruction against the *target's* code: the reference's own code would ask for its
    # skin tone too, which the target (the source's skin with a tint) does not have. The style encoder is
    # a fixed judge here: trained through this term it could simply grow its codes (it reads both sides),
    # which was seen to blow up training. Gradients reach the output only.
    frozen = {name: p.detach() for name, p in gen.enc_style.named_parameters()}
    out_style, target_style = (torch.func.functional_call(gen.enc_style, frozen, (img, m)) for img in (out, t))
    l_code = F.l1_loss(out_style, target_style.detach())
    total = l_pix + s.w_gradient * l_grad + s.w_colour * l_colour + s.w_texture * l_texture + s.w_code * l_code
    parts = {"pix": l_pix.item(), "grad": l_grad.item(), "colour": l_colour.item(), "texture": l_texture.item(),
             "code": l_code.item()}
    return total, parts, out


# ---------------------------------------------------------------- the loop


def _grid(batch: dict[str, torch.Tensor], out: torch.Tensor, rows: int = 4) -> np.ndarray:
    """Rows of source | reference | output | target, BGR uint8."""
    def img(t: torch.Tensor) -> np.ndarray:
        return np.clip((t.detach().permute(1, 2, 0).numpy() + 1.0) * 127.5, 0, 255).astype(np.uint8)

    lines = [np.hstack([img(batch["x"][i]), img(batch["y"][i]), img(out[i]), img(batch["t"][i])])
             for i in range(min(rows, len(out)))]
    return np.vstack(lines)


def _save_checkpoint(path: Path, step: int, gen: Generator, disc: MultiScaleDiscriminator,
                     opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, settings: TrainSettings) -> None:
    tmp = path.with_suffix(".tmp")
    state = {"step": step, "gen": gen.state_dict(), "opt_g": opt_g.state_dict(), "torch_rng": torch.get_rng_state(),
             "settings": asdict(settings)}
    if settings.adv_from >= 0:  # the discriminator only exists for the adversarial loss
        state.update(disc=disc.state_dict(), opt_d=opt_d.state_dict())
    torch.save(state, tmp)
    tmp.replace(path)


def train(settings: TrainSettings, data: Path, out_dir: Path, faces_cache: Path,
          stop_at: int | None = None, resume_from: Path | None = None, init_from: Path | None = None) -> Generator:
    """Train (or resume) into ``out_dir``; returns the generator in eval mode.

    ``stop_at`` ends this session early (checkpointed) without changing the
    schedule, which always spans ``settings.steps``. ``resume_from`` is a
    checkpoint to start from when ``out_dir`` has none yet (e.g. the one
    shipped in weights/). ``init_from`` (when ``out_dir`` has no checkpoint)
    fine-tunes: the generator's weights of that checkpoint start a new
    schedule from step 0 with a fresh optimiser (use ``warmup``).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "settings.json").write_text(json.dumps(asdict(settings), indent=2))
    torch.manual_seed(settings.seed)
    faces, held_out = split(load_or_build(data, faces_cache))
    log.info("training on %d crops (%d identities); %d held out", len(faces), len(set(faces.identity)), len(held_out))
    cfg = get_config(settings.config)
    gen = build_generator(cfg, seed=settings.seed)
    disc = MultiScaleDiscriminator(n_scales=2, dim=32, n_layers=3)
    opt_g = torch.optim.Adam(gen.parameters(), lr=settings.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=settings.lr, betas=(0.5, 0.999))
    ckpt = out_dir / CHECKPOINT
    step = 0
    start = ckpt if ckpt.is_file() else resume_from
    if start is not None:
        state = torch.load(start, weights_only=False)
        gen.load_state_dict(state["gen"])
        opt_g.load_state_dict(state["opt_g"])
        if "disc" in state:
            disc.load_state_dict(state["disc"])
            opt_d.load_state_dict(state["opt_d"])
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]
        log.info("resumed at step %d", step)
    elif init_from is not None:
        gen.load_state_dict(torch.load(init_from, weights_only=False)["gen"])
        log.info("fine-tuning the generator of %s", init_from)
        if settings.reset_output:
            with torch.no_grad():
                gen.dec.output.weight.zero_()
                gen.dec.output.bias.zero_()
    batches = Prefetcher(faces, settings, step, depth=1)
    from tqdm import tqdm

    history = out_dir / "loss.jsonl"
    bar = tqdm(total=settings.steps, initial=step, desc="train", unit="step", disable=None)
    gen.train()
    end = min(settings.steps, stop_at if stop_at is not None else settings.steps)
    while step < end:
        lr = settings.lr * 0.5 * (1 + math.cos(math.pi * step / settings.steps))
        lr *= min(1.0, (step + 1) / (settings.warmup + 1))
        for group in opt_g.param_groups:
            group["lr"] = lr
        batch = batches.next()
        total, parts, out = generator_losses(gen, batch, settings)
        adversarial = 0 <= settings.adv_from <= step
        if adversarial:
            l_adv = disc.loss_g(out)
            total = total + settings.w_adv * l_adv
            parts["adv"] = l_adv.item()
        opt_g.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(gen.parameters(), settings.clip)
        opt_g.step()
        if adversarial:
            real = batch["t"][batch["kind"] == 0]
            if len(real):
                l_d = disc.loss_d(real, out.detach()[batch["kind"] == 0])
                opt_d.zero_grad(set_to_none=True)
                l_d.backward()
                opt_d.step()
                parts["disc"] = l_d.item()
        step += 1
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items()})
        with history.open("a") as fh:
            fh.write(json.dumps({"step": step, "lr": lr, **parts}) + "\n")
        if step % settings.sample_every == 0 or step == settings.steps:
            cv2.imwrite(str(out_dir / f"samples_{step:06d}.png"), _grid(batch, out))
        if step % settings.checkpoint_every == 0 or step == end:
            _save_checkpoint(ckpt, step, gen, disc, opt_g, opt_d, settings)
    bar.close()
    batches.close()
    return gen.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the IPM-Net generator; resumes from OUT/checkpoint.pt.")
    for name, value in asdict(TrainSettings()).items():
        flag = f"--{name.replace('_', '-')}"
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="development data (faces/, videos/)")
    parser.add_argument("--out", type=Path, default=Path("runs") / "lite")
    parser.add_argument("--faces-cache", type=Path, default=CACHE_DIR / "faces.npz")
    parser.add_argument("--export", type=Path, help="write the trained model's ONNX files and a compact copy of the "
                        "final checkpoint here (e.g. src/ipmcam/weights/lite)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--resume-from", type=Path, help="checkpoint to start from when OUT has none (e.g. "
                        "weights/lite/train_state.pt)")
    parser.add_argument("--init-from", type=Path, help="fine-tune: a checkpoint whose generator starts a new schedule "
                        "(step 0, fresh optimiser) when OUT has none")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = TrainSettings(**{k: getattr(args, k) for k in asdict(TrainSettings())})
    start = time.perf_counter()
    gen = train(settings, args.data, args.out, args.faces_cache, resume_from=args.resume_from,
                init_from=args.init_from)
    log.info("trained %d steps in %.0f s", settings.steps, time.perf_counter() - start)
    if args.export:
        export_model(gen, settings.config, args.export)
        save_train_state(args.out / CHECKPOINT, args.export / TRAIN_STATE)
        log.info("exported to %s", args.export)


if __name__ == "__main__":
    main()
