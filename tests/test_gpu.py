"""What has a CUDA meaning: the shot-encoder runner in each precision, ``--compile`` on CUDA, a
one-process NCCL training step with SyncBatchNorm, ``segment`` with a full-size BaSSL model, and
the GPU memory a run leaves behind. Marked ``gpu``; without CUDA every test here skips
(``bench/device.sh`` runs them on a lent GPU machine: ``pytest -m gpu``).

Tolerances are relative L2 errors of each output row against fp32 on the CPU. Rounding errors of
about ``u`` per layer add up like a random walk over the ~50 layers of these networks, about
``7u``: bf16 keeps 8 significant bits (u = 2**-8, 7u = 2.7e-2), fp16 11 (7u = 3.4e-3), and CUDA's
"fp32" convolutions run in TF32 by PyTorch's default (10 bits, 7u = 6.8e-3). Each bound is about
twice that, so a wrong kernel or a dtype mix-up (errors of order 1) still fails.
"""

from __future__ import annotations

import copy
import gc
import json
import subprocess

import pytest
import torch
from tiny_models import TINY

from scenecut.models import bassl, checkpoints
from scenecut.models.bassl import ShotEncoder
from scenecut.models.config import ModelConfig
from scenecut.models.effnet import load_lite0
from scenecut.models.runner import Runner
from scenecut.segment import segment

CUDA = torch.cuda.is_available()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (torch.cuda.is_available() is False)"),
]

# Bound on the relative L2 error per row against fp32 on the CPU (see the module docstring).
TOLERANCE = {"fp32": 1.5e-2, "fp16": 1e-2, "bf16": 6e-2}
# cuBLAS and cuDNN keep a workspace per handle after their first call (the caching allocator
# counts it); a leaked full-size BaSSL (150 MiB of fp32 weights) is far above this.
WORKSPACE_BYTES = 64 << 20


def relative_error(x: torch.Tensor, reference: torch.Tensor) -> float:
    """The largest relative L2 error of a row of ``x`` against the same row of ``reference``."""
    x, reference = x.float().cpu(), reference.float().cpu()
    return ((x - reference).norm(dim=1) / reference.norm(dim=1)).max().item()


@pytest.fixture(scope="module")
def encoders() -> dict[str, torch.nn.Module]:
    """ResNet-50 (BaSSL's encoder, seeded random weights) and EfficientNet-Lite0 with its
    shipped ImageNet weights (realistic activations)."""
    torch.manual_seed(0)
    return {"resnet50": ShotEncoder().eval(), "effnet-lite0": load_lite0().eval()}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(8, 3, 224, 224, generator=generator)


@pytest.mark.parametrize("encoder", ["resnet50", "effnet-lite0"])
def test_runner_precisions_close_to_fp32_cpu(encoders, images, encoder):
    net = encoders[encoder]
    reference = Runner(copy.deepcopy(net), device="cpu", precision="fp32", batch_images=4)(images)
    outputs = {}
    for precision in ("fp32", "fp16", "bf16"):
        runner = Runner(copy.deepcopy(net), device="cuda", precision=precision, batch_images=4)
        out = runner(images.cuda())
        assert out.device.type == "cuda" and out.dtype == torch.float32
        assert out.shape == reference.shape
        error = relative_error(out, reference)
        assert error < TOLERANCE[precision], (precision, error)
        outputs[precision] = out
    # autocast was on: the half-precision outputs are not the fp32 ones
    assert not torch.equal(outputs["fp16"], outputs["fp32"])
    assert not torch.equal(outputs["bf16"], outputs["fp32"])


def test_compile_on_cuda(encoders, images):
    net = encoders["effnet-lite0"]
    plain = Runner(copy.deepcopy(net), device="cuda", precision="fp16", batch_images=8)
    compiled = Runner(
        copy.deepcopy(net), device="cuda", precision="fp16", batch_images=8, compile=True
    )
    x = images.cuda()
    first = compiled(x[:5])  # a short batch: padded to 8, one compilation
    # a failed compile sets ``compiled`` back to None and runs the plain network
    assert compiled.compiled is not None, "torch.compile failed on CUDA (see the warning)"
    again = compiled(x)
    assert compiled.compiled is not None
    assert relative_error(first, plain(x[:5])) < TOLERANCE["fp16"]
    assert relative_error(again, plain(x)) < TOLERANCE["fp16"]


@pytest.mark.skipif(
    not (CUDA and torch.distributed.is_nccl_available()),
    reason="needs CUDA and a torch built with NCCL",
)
def test_nccl_step_with_sync_batchnorm(tmp_path):
    """One optimizer step as ``scenecut.train.loop`` takes it with several GPUs (SyncBatchNorm,
    DDP over NCCL), here in a process group of one, against the same step without either. With
    one process SyncBatchNorm normalises with the local batch (PyTorch skips the all-reduce),
    so both steps must agree; DDP's gradient all-reduce and broadcast do go through NCCL."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.manual_seed(2)
    plain = ShotEncoder().cuda().train()
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(plain)).cuda()
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    x = torch.randn(4, 3, 64, 64, device="cuda")
    init = f"file://{tmp_path / 'rendezvous'}"
    dist.init_process_group("nccl", init_method=init, world_size=1, rank=0)
    try:
        assert dist.get_backend() == "nccl"
        wrapped = DDP(model, device_ids=[torch.cuda.current_device()])
        for net in (wrapped, plain):
            optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = net(x).float().pow(2).mean()
            loss.backward()
            optimizer.step()
        torch.cuda.synchronize()
    finally:
        dist.destroy_process_group()
    torch.manual_seed(2)
    before = ShotEncoder().cuda()  # the same seeded start as ``plain``
    for (name, a), b, start in zip(
        model.named_parameters(), plain.parameters(), before.parameters(), strict=True
    ):
        step_a, step_b = a.detach() - start, b.detach() - start
        if step_b.norm() > 0:
            assert (step_a - step_b).norm() <= 5e-2 * step_b.norm() + 1e-6, name
    stats = [m.running_mean for m in model.modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    reference = [m.running_mean for m in plain.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(stats) == len(reference) > 0
    assert stats[0].abs().sum() > 0  # the statistics moved
    for a, b in zip(stats, reference, strict=True):
        assert torch.allclose(a, b, rtol=5e-2, atol=1e-3)


@pytest.fixture(scope="module")
def full_bassl(tmp_path_factory):
    """A full-size BaSSL checkpoint (the default ``ModelConfig``: ResNet-50 + CRN), random."""
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("bassl") / "bassl-random.safetensors"
    checkpoints.save(bassl.build(ModelConfig()), ModelConfig(), path)
    return path


def test_segment_full_size_bassl_on_cuda(film, full_bassl, scenecut_exe, tmp_path):
    on_cpu = segment(film.path, model=str(full_bassl), device="cpu", precision="fp32")
    on_gpu = segment(film.path, model=str(full_bassl), device="cuda")  # auto: bf16 or fp16
    assert on_gpu.shots == on_cpu.shots
    assert len(on_gpu.boundary_scores) == len(on_cpu.shots) - 1 > 0
    diffs = [
        abs(a - b) for a, b in zip(on_gpu.boundary_scores, on_cpu.boundary_scores, strict=True)
    ]
    assert max(diffs) < 0.05, diffs  # probabilities from bf16 features (error ~3e-2, above)
    command = [scenecut_exe, "segment", str(film.path), "--model", str(full_bassl)]
    proc = subprocess.run(
        [*command, "--device", "cuda", "--stdout", "--quiet"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert len(doc["shots"]) == len(on_cpu.shots)
    assert doc["settings"]["model"] == on_cpu.settings.model


def test_gpu_memory_back_to_baseline(film, tmp_path):
    """A run frees what it put on the GPU: the model, its activations, the keyframe batches."""
    torch.manual_seed(4)
    gc.collect()
    baseline = torch.cuda.memory_allocated()
    path = tmp_path / "tiny-bassl.safetensors"
    checkpoints.save(bassl.build(TINY), TINY, path)
    full = tmp_path / "full-bassl.safetensors"
    checkpoints.save(bassl.build(ModelConfig()), ModelConfig(), full)
    after = []
    for model in (full, full, path):
        result = segment(film.path, model=str(model), device="cuda")
        assert result.shots
        del result
        gc.collect()
        after.append(torch.cuda.memory_allocated())
    assert after[0] - baseline <= WORKSPACE_BYTES, (baseline, after)
    # a second run leaves nothing more behind (at most one more cuBLAS workspace, 32 MiB on
    # Hopper, should the embedding thread of the new run get a handle of its own)
    assert after[1] - after[0] <= WORKSPACE_BYTES // 2, after
    assert after[2] <= after[0], after


def test_nvdec_decodes_every_frame(film, caplog):
    """``--hwaccel cuda`` on a CUDA machine: NVDEC starts (no fallback warning) and decodes
    every frame; its shots are printed beside software decoding's (colour conversion from NV12
    may move a cut: that is measured, not assumed)."""
    import logging

    from scenecut import video

    if "cuda" not in video.hwaccel_names():
        pytest.skip("this PyAV's ffmpeg has no cuda hwaccel")
    software = segment(film.path, model="classic")
    with caplog.at_level(logging.WARNING, logger="scenecut.video"):
        hardware = segment(film.path, model="classic", hwaccel="cuda")
    assert "cannot start" not in caplog.text
    assert hardware.decoded_frames == software.decoded_frames == hardware.video.frame_count
    print("nvdec shots", [s.start for s in hardware.shots])
    print("software shots", [s.start for s in software.shots])
