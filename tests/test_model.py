"Tests for hnvl.model: offline builds, checkpoint round trips, the QuickGELU guard, encoders and array conversion."
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import open_clip
from open_clip.transformer import QuickGELU
from PIL import Image

from hnvl.model import (TINY, ClipBundle, create_model, load_state_dict, save_model, checkpoint_meta, encode_images,
                        encode_texts, encode_text_trimmed, get_logit_scale, arrays_to_tensor, resolve_quick_gelu,
                        uses_quick_gelu)

CAPS = ["a red square left of a blue circle", "a small green triangle", "two yellow cubes", ""]


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tiny(seed=0, **kw):
    torch.manual_seed(seed)
    b = create_model("tiny", **kw); b.model.eval()
    return b


def _outputs(b, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 3, 32, 32, generator=g)
    with torch.no_grad():
        return b.model.encode_image(x), b.model.encode_text(b.tokenizer(CAPS))


def _same(a, b): return all(torch.equal(x, y) for x, y in zip(_outputs(a), _outputs(b)))


def test_tiny_builds_offline_with_spec_shapes():
    b = _tiny()
    assert isinstance(b, ClipBundle) and b.name == TINY == "hnvl-tiny"
    assert (b.quick_gelu, b.image_size, b.context_length) == (False, 32, 16)
    m = b.model
    # shapes derived from the spec (32x32 images, patch 8, width 64, embed 64, context 16, vocab 49408)
    assert m.visual.conv1.weight.shape == (64, 3, 8, 8)
    assert m.visual.positional_embedding.shape == (1 + (32 // 8) ** 2, 64)
    assert m.token_embedding.weight.shape == (49408, 64)
    assert m.positional_embedding.shape == (16, 64)
    assert len(m.visual.transformer.resblocks) == 2 and len(m.transformer.resblocks) == 2
    assert m.text_projection.shape == (64, 64) and m.visual.proj.shape == (64, 64)
    assert not any(isinstance(x, QuickGELU) for x in m.modules())
    assert any(isinstance(x, torch.nn.GELU) for x in m.modules())
    assert b.mean == open_clip.OPENAI_DATASET_MEAN and b.std == open_clip.OPENAI_DATASET_STD
    assert 3_000_000 < b.n_params < 4_000_000


def test_tiny_registered_with_open_clip_and_tokenizer_context():
    assert TINY in open_clip.list_models()
    tok = open_clip.get_tokenizer(TINY)
    t = tok(["word " * 40, "a cat"])
    assert t.shape == (2, 16) and t.dtype == torch.long
    eot = tok.eot_token_id
    assert t[0, -1].item() == eot  # truncated caption still ends with end-of-text
    assert (t[1] == eot).sum() == 1 and t[1, -1] == 0  # short caption is padded
    b = _tiny()
    assert torch.equal(b.tokenizer(["a cat"]), t[1:])
    # open_clip's own factory builds the same architecture from the registered config
    m = open_clip.create_model(TINY, pretrained=None)
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in b.model.state_dict().items()}


def test_forward_backward_reaches_every_parameter():
    b = _tiny(); b.model.train()
    img = torch.randn(4, 3, 32, 32)
    fi, ft = encode_images(b, img), encode_texts(b, b.tokenizer(CAPS))
    assert fi.shape == ft.shape == (4, 64)
    assert torch.allclose(fi.norm(dim=-1), torch.ones(4), atol=1e-5) and torch.allclose(ft.norm(dim=-1), torch.ones(4), atol=1e-5)
    s = get_logit_scale(b)
    logits = s * fi @ ft.T
    loss = (F.cross_entropy(logits, torch.arange(4)) + F.cross_entropy(logits.T, torch.arange(4))) / 2
    loss.backward()
    assert torch.isfinite(loss)
    no_grad = [n for n, p in b.model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
    assert all(torch.isfinite(p.grad).all() for p in b.model.parameters())
    assert b.model.logit_scale.grad.abs() > 0


def test_encoders_match_open_clip_and_accept_strings():
    b = _tiny()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref_i = F.normalize(b.model.encode_image(x), dim=-1)
        ref_t = F.normalize(b.model.encode_text(b.tokenizer(CAPS[:2])), dim=-1)
        assert torch.allclose(encode_images(b.model, x), ref_i, atol=1e-6)
        assert torch.allclose(encode_texts(b, CAPS[:2]), ref_t, atol=1e-6)


def test_logit_scale_exp_and_clamp():
    b = _tiny()
    assert abs(get_logit_scale(b).item() - 1 / 0.07) < 1e-3
    with torch.no_grad(): b.model.logit_scale.fill_(np.log(50.0))
    assert abs(get_logit_scale(b.model).item() - 50.0) < 1e-3
    with torch.no_grad(): b.model.logit_scale.fill_(7.0)  # exp(7) ~ 1097
    s = get_logit_scale(b)
    assert s.shape == () and s.item() == 100.0


@pytest.mark.parametrize("ext", ["pt", "pth", "bin", "safetensors"])
def test_save_load_roundtrip_identical(tmp_path, ext):
    a, fresh = _tiny(seed=0), _tiny(seed=123)
    assert not _same(a, fresh)  # the check below can fail
    p = save_model(a, tmp_path / f"m.{ext}", epoch=2, note="x")
    meta = checkpoint_meta(p)
    assert meta["model"] == TINY and meta["quick_gelu"] is False and meta["epoch"] == 2 and "hnvl_version" in meta
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a recorded activation needs no warning
        back = create_model("tiny", checkpoint=p); back.model.eval()
    assert back.checkpoint == str(p) and back.quick_gelu is False
    assert _same(a, back)
    sd = load_state_dict(p)
    assert sd.keys() == a.model.state_dict().keys()


def test_load_wrapped_module_prefixed_checkpoint(tmp_path):
    a = _tiny(seed=0)
    p = tmp_path / "ddp.pt"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in a.model.state_dict().items()}}, p)
    assert all(not k.startswith("module.") for k in load_state_dict(p))
    back = create_model("tiny", checkpoint=p, quick_gelu=False); back.model.eval()
    assert _same(a, back)


def test_vit_b32_quickgelu_builds_offline():
    b = create_model("ViT-B-32-quickgelu")
    assert (b.quick_gelu, b.image_size, b.context_length) == (True, 224, 77)
    assert any(isinstance(x, QuickGELU) for x in b.model.modules())
    assert 140e6 < b.n_params < 160e6
    b.model.eval()
    with torch.no_grad():  # one forward pass each at 224 px on CPU: well under a second
        fi = encode_images(b, torch.randn(1, 3, 224, 224))
        ft = encode_texts(b, ["a photo of a dog"])
    assert fi.shape == ft.shape == (1, 512)
    assert create_model("ViT-B-32").quick_gelu is False


def test_quickgelu_guard_recorded_activation(tmp_path):
    q = _tiny(seed=0, quick_gelu=True)
    assert uses_quick_gelu(q.model) is True
    p = save_model(q, tmp_path / "q.pt")
    # (an explicit contradiction is refused, and no choice warns: nbs/04_model.ipynb)
    # explicit agreement: passes silently and reproduces the model
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok = create_model("tiny", checkpoint=p, quick_gelu=True); ok.model.eval()
    assert ok.quick_gelu and _same(q, ok)
    # no choice: the record wins over the GELU config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto = create_model("tiny", checkpoint=p)
    auto.model.eval()
    assert auto.quick_gelu is True and uses_quick_gelu(auto.model) is True and _same(q, auto)
    # insisting: allowed, warned, and visibly a different function (the trap itself)
    with pytest.warns(UserWarning, match="allow_activation_mismatch"):
        gelu = create_model("tiny", checkpoint=p, quick_gelu=False, allow_activation_mismatch=True)
    gelu.model.eval()
    assert gelu.quick_gelu is False and not _same(q, gelu)


def test_quickgelu_guard_safetensors_record(tmp_path):
    p = save_model(_tiny(quick_gelu=True), tmp_path / "q.safetensors")
    assert checkpoint_meta(p)["quick_gelu"] is True
    with pytest.raises(ValueError, match="contradicts the checkpoint"):
        create_model("tiny", checkpoint=p, quick_gelu=False)
    assert resolve_quick_gelu("tiny", p, quick_gelu=True) is True


def test_quickgelu_guard_without_record(tmp_path):
    sd = _tiny().model.state_dict()
    torch.save(sd, tmp_path / "foreign.pt"); torch.save(sd, tmp_path / "OpenAI-finetune.pt")
    with pytest.warns(UserWarning, match="file name says 'openai'"):
        b = create_model("tiny", checkpoint=tmp_path / "OpenAI-finetune.pt")
    assert b.quick_gelu is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # explicit choices (argument or -quickgelu name) are silent
        assert create_model("tiny", checkpoint=tmp_path / "foreign.pt", quick_gelu=True).quick_gelu is True
        assert resolve_quick_gelu("tiny", tmp_path / "foreign.pt", quick_gelu=False) is False
        assert resolve_quick_gelu("ViT-B-32-quickgelu", tmp_path / "foreign.pt") is True
        assert resolve_quick_gelu("ViT-B-32") is False and resolve_quick_gelu("ViT-B-32-quickgelu") is True


def test_torchscript_archive_counts_as_quickgelu(tmp_path):
    q = _tiny(seed=0, quick_gelu=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(q.model).save(str(tmp_path / "clip.pt"))
    with pytest.raises(ValueError, match="TorchScript"):
        create_model("tiny", checkpoint=tmp_path / "clip.pt", quick_gelu=False)
    with pytest.warns(UserWarning, match="QuickGELU"):
        b = create_model("tiny", checkpoint=tmp_path / "clip.pt")
    b.model.eval()
    assert b.quick_gelu is True and _same(q, b)


def test_bad_paths_and_mismatched_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint file not found: .*nope.pt"):
        create_model("tiny", checkpoint=tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="could not read checkpoint .*junk.pt"):
        create_model("tiny", checkpoint=tmp_path / "junk.pt", quick_gelu=False)
    with pytest.raises(TypeError, match="checkpoint must be a path"):
        load_state_dict(123)
    sd = _tiny().model.state_dict()
    broken = {k: v for k, v in sd.items() if k != "ln_final.weight"}
    broken["extra.weight"] = torch.zeros(1)
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match=r"1 missing keys \['ln_final.weight'\]; 1 unexpected keys \['extra.weight'\]"):
        create_model("tiny", checkpoint=tmp_path / "broken.pt", quick_gelu=False)
    p = save_model(_tiny(), tmp_path / "tiny.pt")
    with pytest.raises(ValueError, match="does not fit this architecture \\(the checkpoint records model 'hnvl-tiny'\\).*shape mismatches"):
        create_model("ViT-B-32", checkpoint=p, quick_gelu=False)
    with pytest.raises(ValueError, match="unknown model name 'ViT-B-99'"):
        create_model("ViT-B-99")


def test_arrays_to_tensor_matches_numpy_and_transform():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    mean, std = np.array([0.1, 0.5, 0.9]), np.array([0.2, 0.3, 0.4])
    ref = ((arr / 255.0 - mean) / std).transpose(0, 3, 1, 2)
    x = arrays_to_tensor(arr, tuple(mean), tuple(std))
    assert x.dtype == torch.float32 and x.shape == (5, 3, 32, 32) and x.is_contiguous()
    np.testing.assert_allclose(x.numpy(), ref, atol=1e-5)
    b = _tiny()
    pil = torch.stack([b.preprocess(Image.fromarray(a)) for a in arr])
    assert torch.allclose(arrays_to_tensor(arr, b.mean, b.std), pil, atol=1e-5)


def test_precision_bf16_encodes():
    b = _tiny(precision="bf16")
    assert b.model.visual.conv1.weight.dtype == torch.bfloat16
    with torch.no_grad():
        f = encode_images(b, torch.randn(2, 3, 32, 32))
    assert f.shape == (2, 64) and torch.isfinite(f.float()).all()


# ------------------------------------------------------------------ text encoded at the batch's real length
def _coco_captions(n):
    "The first `n` COCO Karpathy test captions (the test is skipped without the annotation file)."
    import json
    from hnvl.core import benchmarks_root
    p = benchmarks_root() / "coco" / "coco_karpathy_test.json"
    if not p.exists(): pytest.skip(f"COCO Karpathy test captions not found at {p} (set HNVL_BENCHMARKS)")
    return [c.strip() for it in json.loads(p.read_text()) for c in it["caption"]][:n]


def _ran(b, f):
    "(f(), the sequence lengths `b`'s text tower ran at), under no_grad."
    seen = []
    h = b.model.transformer.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[1]))
    try:
        with torch.no_grad(): return f(), seen
    finally: h.remove()


@pytest.fixture(scope="module")
def b32():
    torch.manual_seed(0)
    b = create_model("ViT-B-32-quickgelu"); b.model.eval()
    return b


def test_trimmed_text_equals_full_tiny_coco():
    b = _tiny()
    caps, lengths = _coco_captions(64), []
    for i in range(0, 64, 8):  # context 16 cuts many COCO captions: some batches trim, some have nothing to trim
        t = b.tokenizer(caps[i:i + 8])
        short, seen = _ran(b, lambda: encode_text_trimmed(b, t))
        with torch.no_grad(): full = b.model.encode_text(t)
        assert (short - full).abs().max() < 1e-5
        L = int(t.argmax(-1).max()) + 1
        assert seen == [L]; lengths.append(L)
    assert min(lengths) < 16 and max(lengths) == 16


def test_trimmed_text_equals_full_vit_b32_coco(b32):
    t = b32.tokenizer(_coco_captions(32))  # 150M parameters at random init: a small batch keeps the CPU test short
    short, seen = _ran(b32, lambda: encode_text_trimmed(b32, t))
    full, seen_full = _ran(b32, lambda: b32.model.encode_text(t))
    assert seen_full == [77] and seen == [int(t.argmax(-1).max()) + 1] and seen[0] < 40
    assert (short - full).abs().max() < 1e-5
    normed = encode_texts(b32, t)  # the default path trims too
    assert torch.allclose(normed, F.normalize(full, dim=-1), atol=1e-5)


def test_trimmed_text_with_a_host_length_reads_nothing_vit_b32(b32):
    "The length computed on the host tokens gives the very features of the device-read one, with no read at all."
    from hnvl.core import value_checks
    from hnvl.model import text_length
    from hnvl.train import HostReads
    t = b32.tokenizer(_coco_captions(16))
    L = text_length(b32, t)
    assert L == int(t.argmax(-1).max()) + 1 < 77
    with torch.no_grad(): own, own_normed = encode_text_trimmed(b32, t), encode_texts(b32, t)
    with HostReads() as reads, value_checks(False), torch.no_grad():
        host, host_normed = encode_text_trimmed(b32, t, length=L), encode_texts(b32, t, length=L)
    assert reads.reads == [] and torch.equal(host, own) and torch.equal(host_normed, own_normed)
    with pytest.raises(ValueError, match=f"length={L - 1} is not these tokens' text length"):
        encode_text_trimmed(b32, t, length=L - 1)


def test_trimmed_text_gradients_match_tiny():
    b = _tiny(); b.model.train()
    t = b.tokenizer(CAPS)  # longest row ends at position 9 of 16
    w = torch.randn(len(CAPS), 64, generator=torch.Generator().manual_seed(0))
    grads = []
    for f in (lambda: b.model.encode_text(t, normalize=True), lambda: encode_texts(b, t)):
        b.model.zero_grad(); (f() * w).sum().backward()
        grads.append({n: p.grad.clone() for n, p in b.model.named_parameters() if p.grad is not None})
    full, short = grads
    assert full.keys() == short.keys() and "token_embedding.weight" in full and "text_projection" in full
    for n in full: assert (short[n] - full[n]).abs().max() <= 1e-5 * full[n].abs().max().clamp(min=1e-6), n
    assert full["positional_embedding"][10:].abs().sum() == short["positional_embedding"][10:].abs().sum() == 0


def test_trimmed_text_full_length_row_and_all_short(b32):
    for b in (_tiny(), b32):
        ctx = b.context_length
        long = b.tokenizer(["word " * 100, "a dog"])  # the first row is cut at the context length
        out, seen = _ran(b, lambda: encode_text_trimmed(b, long))
        with torch.no_grad(): assert seen == [ctx] and torch.equal(out, b.model.encode_text(long))
        short = b.tokenizer(["a dog", "", "two cats on a mat"])
        out, seen = _ran(b, lambda: encode_text_trimmed(b, short))
        with torch.no_grad(): assert seen == [7] and (out - b.model.encode_text(short)).abs().max() < 1e-5


def test_trimmed_text_falls_back_to_encode_text():
    t = _tiny().tokenizer(CAPS)
    nc = _tiny(); nc.model.attn_mask = None  # bidirectional tower: the padding matters, nothing may be cut
    out, seen = _ran(nc, lambda: encode_text_trimmed(nc, t))
    with torch.no_grad(): assert seen == [16] and torch.equal(out, nc.model.encode_text(t))
    for pool in ("last", "first", "none"):
        lp = _tiny(); lp.model.text_pool_type = pool
        assert _ran(lp, lambda: encode_text_trimmed(lp, t))[1] == [16]
    eos = _tiny(); eos.model.text_pool_type, eos.model.text_eos_id = "eos", eos.tokenizer.eot_token_id
    out, seen = _ran(eos, lambda: encode_text_trimmed(eos, t))
    with torch.no_grad(): assert seen == [10] and (out - eos.model.encode_text(t)).abs().max() < 1e-5
    pt = _tiny(); pt.model.encode_text = lambda x, normalize=False: torch.full((len(x), 2), 7.)  # patched instance
    assert torch.equal(encode_text_trimmed(pt, t), torch.full((4, 2), 7.))
    class Other(torch.nn.Module):  # not open_clip's CLIP: runs its own encode_text, any token format
        def encode_text(self, x): return x.float()[:, :2]
    assert torch.equal(encode_text_trimmed(Other(), t), t[:, :2].float())
    b = _tiny()
    assert _ran(b, lambda: encode_texts(b, t, trim=False))[1] == [16] and _ran(b, lambda: encode_texts(b, t))[1] == [10]


# ------------------------------------------------------------------ weights named the open_clip way, and the export
import json, os, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _python(code, *args, env=None, timeout=180):
    "Run `code` in a fresh interpreter (with `env` added to the environment); fail with its stderr if it fails."
    e = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    e.update(PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {}))
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=e, capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-4000:]
    return r.stdout


def _close(a, b, eps=1e-6): return a.shape == b.shape and (a - b).abs().max().item() <= eps


def _feats(b, x):
    with torch.no_grad(): return b.model.encode_image(x), b.model.encode_text(b.tokenizer(CAPS))


_OPEN_CLIP_ONLY = """
import json, sys, torch, open_clip
from PIL import Image
from open_clip.transformer import QuickGELU
torch.set_num_threads(1)
dirs, caps, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), {}
for k, d in dirs.items():
    m, _, pre = open_clip.create_model_and_transforms("local-dir:" + d); m.eval()
    tok = open_clip.get_tokenizer("local-dir:" + d)
    x = pre(Image.open(sys.argv[3]).convert("RGB"))[None]
    with torch.no_grad():
        out[k] = dict(x=x, img=m.encode_image(x), txt=m.encode_text(tok(caps)), tokens=tok(caps),
                      quick_gelu=any(isinstance(mod, QuickGELU) for mod in m.modules()))
assert not [n for n in sys.modules if n == "hnvl" or n.startswith("hnvl.")], "hnvl was imported"
torch.save(out, sys.argv[4])
"""


def test_export_loads_in_open_clip_without_hnvl(tmp_path):
    q, g = _tiny(seed=0, quick_gelu=True), _tiny(seed=1)
    dirs = {"q": save_model(q, tmp_path/"q", format="open_clip"), "g": save_model(g, tmp_path/"g", format="open_clip")}
    assert sorted(p.name for p in dirs["q"].iterdir()) == ["open_clip_config.json", "open_clip_model.safetensors"]
    cfg = json.loads((dirs["q"]/"open_clip_config.json").read_text())
    assert cfg["model_cfg"] == {**open_clip.get_model_config(TINY), "quick_gelu": True}
    assert cfg["preprocess_cfg"]["mean"] == list(q.mean) and cfg["preprocess_cfg"]["std"] == list(q.std)
    assert cfg["hnvl"]["model"] == TINY and cfg["hnvl"]["quick_gelu"] is True
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))  # not square: resize + centre crop
    img.save(tmp_path/"img.png")
    _python(_OPEN_CLIP_ONLY, json.dumps({k: str(v) for k, v in dirs.items()}), json.dumps(CAPS), tmp_path/"img.png",
            tmp_path/"out.pt")
    res = torch.load(tmp_path/"out.pt")
    for k, b in (("q", q), ("g", g)):
        r = res[k]
        assert r["quick_gelu"] is (k == "q") and uses_quick_gelu(b.model) is (k == "q")
        assert torch.equal(r["tokens"], b.tokenizer(CAPS))  # open_clip's tokenizer for the folder: context 16
        assert _close(r["x"], b.preprocess(img)[None])
        fi, ft = _feats(b, r["x"])
        assert _close(r["img"], fi) and _close(r["txt"], ft)
    assert not _close(res["q"]["txt"], res["g"]["txt"], 1e-3)  # different models: the comparison can fail


_HUB_OFFLINE = """
import json, sys, warnings, torch
from unittest import mock
import open_clip
from hnvl.model import create_model
torch.set_num_threads(1)
x, caps, out = torch.load(sys.argv[1]), json.loads(sys.argv[2]), {}
def record(b):
    b.model.eval()
    with torch.no_grad(): f = b.model.encode_image(x), b.model.encode_text(b.tokenizer(caps))
    return dict(feats=f, name=b.name, quick_gelu=b.quick_gelu, pretrained=b.pretrained, file=b.pretrained_file)
tags = {"hnvl-tiny": {"hnvl_test": dict(hf_hub="hnvl-test/tiny/", quick_gelu=True)}}
with warnings.catch_warnings(), mock.patch.dict(open_clip.pretrained._PRETRAINED, tags):
    warnings.simplefilter("error")  # open_clip's records decide the activation: nothing to warn about
    out["name"] = record(create_model("hf-hub:hnvl-test/tiny"))
    out["pretrained"] = record(create_model(pretrained="hf-hub:hnvl-test/tiny"))
    out["tag"] = record(create_model("tiny", pretrained="hnvl_test"))  # a GELU config, a QuickGELU tag
errors = {}
for k, f in [("tag", lambda: create_model("ViT-B-32", pretrained="openai")),
             ("hub", lambda: create_model("hf-hub:hnvl-test/absent"))]:
    try: f(); errors[k] = None
    except Exception as e: errors[k] = (type(e).__name__, str(e))
out["errors"] = errors
torch.save(out, sys.argv[3])
"""


def test_hf_hub_cache_offline(tmp_path):
    q = _tiny(seed=0, quick_gelu=True)
    home, commit = tmp_path/"hf", "3" * 40
    repo = home/"hub"/"models--hnvl-test--tiny"  # huggingface_hub's cache layout
    save_model(q, repo/"snapshots"/commit, format="open_clip")
    (repo/"refs").mkdir(); (repo/"refs"/"main").write_text(commit)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.save(x, tmp_path/"x.pt")
    _python(_HUB_OFFLINE, tmp_path/"x.pt", json.dumps(CAPS), tmp_path/"out.pt",
            env={"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    res = torch.load(tmp_path/"out.pt")
    fi, ft = _feats(q, x)
    for k, label in (("name", "hf-hub:hnvl-test/tiny"), ("pretrained", "hf-hub:hnvl-test/tiny"), ("tag", "hnvl_test")):
        r = res[k]
        assert (r["name"], r["quick_gelu"], r["pretrained"]) == (TINY, True, label)
        assert r["file"].startswith(str(home)) and r["file"].endswith("open_clip_model.safetensors")
        assert _close(r["feats"][0], fi) and _close(r["feats"][1], ft)
    kind, msg = res["errors"]["tag"]
    assert kind == "FileNotFoundError" and "\n" not in msg
    for part in ("pretrained 'openai' of 'ViT-B-32'", "HF_HUB_OFFLINE is set", str(home/"hub"), "checkpoint=PATH",
                 "quick_gelu=True"):
        assert part in msg, (part, msg)
    kind, msg = res["errors"]["hub"]
    assert kind == "FileNotFoundError" and "\n" not in msg
    assert "hf-hub:hnvl-test/absent" in msg and "HF_HUB_OFFLINE is set" in msg and "pretrained=DIR" in msg


def test_export_reloads_in_hnvl_and_writes_atomically(tmp_path, monkeypatch):
    q, g = _tiny(seed=0, quick_gelu=True), _tiny(seed=1)
    x = torch.randn(2, 3, 32, 32)
    d = save_model(q, tmp_path/"m", format="open_clip", epoch=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for b in (create_model(pretrained=d), create_model(pretrained=str(d)), create_model(f"local-dir:{d}"),
                  create_model("tiny", pretrained=f"local-dir:{d}")):
            b.model.eval()
            assert (b.name, b.quick_gelu, b.meta["epoch"], b.pretrained) == (TINY, True, 3, f"local-dir:{d.resolve()}")
            assert b.checkpoint is None and b.pretrained_file == str(d.resolve()/"open_clip_model.safetensors")
            assert all(torch.equal(u, v) for u, v in zip(_feats(b, x), _feats(q, x)))
    # overwriting an earlier export is allowed; a failed write leaves the old one whole and no temporary folder
    save_model(g, d, format="open_clip")
    assert create_model(pretrained=d).quick_gelu is False
    import safetensors.torch
    def boom(*a, **k): raise OSError("disk full")
    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError, match="disk full"): save_model(q, d, format="open_clip")
    monkeypatch.undo()
    b = create_model(pretrained=d); b.model.eval()
    assert b.quick_gelu is False and all(torch.equal(u, v) for u, v in zip(_feats(b, x), _feats(g, x)))
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    # a foreign folder is never replaced
    (tmp_path/"notes").mkdir(); (tmp_path/"notes"/"a.txt").write_text("mine")
    with pytest.raises(ValueError, match="refusing to overwrite .*notes.*not an hnvl export"):
        save_model(q, tmp_path/"notes", format="open_clip")
    assert [p.name for p in (tmp_path/"notes").iterdir()] == ["a.txt"]
    # a file given as pretrained is a checkpoint; both at once is an error naming both
    p = save_model(q, tmp_path/"q.pt")
    assert create_model("tiny", pretrained=p, quick_gelu=True).checkpoint == str(p)
    with pytest.raises(ValueError, match=r"checkpoint='.*q.pt' and pretrained='.*m' both name the weights"):
        create_model("tiny", checkpoint=p, pretrained=d)
    with pytest.raises(ValueError, match="contradicts local-dir:"):
        create_model(pretrained=d, quick_gelu=True)


def test_hnvl_eval_pretrained(tmp_path, monkeypatch, capsys):
    import hnvl.model as M
    from hnvl import benchmarks as B
    from hnvl.core import call_cli, console_entry
    rec = dict(image_path="1.jpg", bbox_x=0, bbox_y=0, bbox_w=8, bbox_h=8, relation_name="on", true_caption="a on b",
               false_caption="b on a")
    (tmp_path/"ann").mkdir(); (tmp_path/"ann"/"visual_genome_relation.json").write_text(json.dumps([rec]))
    (tmp_path/"imgs").mkdir(); Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path/"imgs"/"1.jpg")
    q = _tiny(seed=0, quick_gelu=True)
    d = save_model(q, tmp_path/"export", format="open_clip")
    built, create = [], M.create_model
    monkeypatch.setattr(M, "create_model", lambda *a, **k: built.append(create(*a, **k)) or built[-1])
    args = dict(benchmarks="vgr", data_root=str(tmp_path/"ann"), image_roots=f"vgr={tmp_path/'imgs'}", device="cpu")
    doc = B.hnvl_eval(pretrained=str(d), out=str(tmp_path/"out"), **args)
    assert doc["model"]["pretrained"] == str(d) and doc["model"]["activation"] == "quick_gelu"
    assert doc["model"]["name"] == TINY and doc["benchmarks"]["vg_relation"]["counts"]["scored"] == 1
    x = torch.randn(2, 3, 32, 32)
    built[0].model.eval()
    assert all(torch.equal(u, v) for u, v in zip(_feats(built[0], x), _feats(q, x)))
    argv = ["--benchmarks", "vgr", "--data-root", args["data_root"], "--image-roots", args["image_roots"], "--device",
            "cpu", "--out", str(tmp_path/"out2")]
    assert call_cli(B.evaluate_model, argv + ["--pretrained", str(d)])["model"]["pretrained"] == str(d)
    with pytest.raises(SystemExit) as e: console_entry(B.evaluate_model, argv + ["--pretrained", "opnai"], "hnvl_eval")
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "\n" not in err and "'opnai' is not a pretrained tag of 'hnvl-tiny'" in err
