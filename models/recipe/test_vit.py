"""Tests of the recipe's model code: /usr/bin/python3 -m unittest discover -s models/recipe"""

import json
import os
import sys
import tempfile
import unittest

import torch

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export  # noqa: E402
import vit  # noqa: E402

TINY = vit.CONFIGS["tiny"]


def random_tiny(seed=0):
    m = vit.ViT(TINY)
    vit.init_weights(m, seed=seed, std=export.RANDOM_INIT_STD)
    return m.eval()


class ConfigTest(unittest.TestCase):
    def test_vits16_matches_dino(self):
        # DINO's ViT-S/16 has 21,665,664 parameters (no head).
        self.assertEqual(vit.param_count(vit.ViT(vit.CONFIGS["vits16"])), 21_665_664)

    def test_invalid(self):
        for kw in ({"img_size": 100}, {"dim": 65}, {"depth": 0}):
            with self.subTest(kw=kw), self.assertRaises(ValueError):
                vit.ViTConfig(**kw)


class ForwardTest(unittest.TestCase):
    def test_unit_norm_and_batch_independence(self):
        m = random_tiny()
        x = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            y = m(x)
            y1 = m(x[2:3])
        self.assertEqual(tuple(y.shape), (4, TINY.dim))
        torch.testing.assert_close(y.norm(dim=1), torch.ones(4))
        torch.testing.assert_close(y[2:3], y1, rtol=1e-5, atol=1e-6)

    def test_raw_features(self):
        m = random_tiny()
        m.normalize = False
        x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            f = m(x)
        self.assertGreater(float((f.norm(dim=1) - 1).abs().max()), 0.1)

    def test_seed_determinism(self):
        a, b, c = random_tiny(0), random_tiny(0), random_tiny(1)
        for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
            self.assertTrue(torch.equal(pa, pb), name)
            if pa.numel() > 1 and not name.endswith(("bias", "norm1.weight", "norm2.weight", "norm.weight")):
                self.assertFalse(torch.equal(pa, pc), name)

    def test_tall_input(self):
        # The STIR pairwise input: two 224×224 images stacked along the height.
        m = random_tiny()
        x = torch.randn(2, 3, 448, 224, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            y = m(x)
        self.assertEqual(tuple(y.shape), (2, TINY.dim))


class PosEmbedTest(unittest.TestCase):
    def test_same_grid_is_identity(self):
        pos = torch.randn(1, 1 + 14 * 14, 8)
        self.assertIs(vit.interpolate_pos_embed(pos, 14, 14), pos)

    def test_tall_grid(self):
        g = torch.Generator().manual_seed(3)
        pos = torch.randn(1, 1 + 14 * 14, 8, generator=g)
        out = vit.interpolate_pos_embed(pos, 28, 14)
        self.assertEqual(tuple(out.shape), (1, 1 + 28 * 14, 8))
        torch.testing.assert_close(out[:, 0], pos[:, 0], rtol=0, atol=0)

    def test_constant_stays_constant(self):
        # Bicubic weights sum to one, so a constant grid stays constant.
        pos = torch.full((1, 1 + 14 * 14, 4), 0.5)
        out = vit.interpolate_pos_embed(pos, 28, 14)
        torch.testing.assert_close(out, torch.full_like(out, 0.5))

    def test_dino_scale_factor(self):
        # DINO passes (n + 0.1)/14 to the kernel, so the 14-wide axis is resampled slightly,
        # not copied. A column that is linear along the width shows it.
        ramp = torch.arange(14.0).repeat(14)  # value = column index
        pos = torch.cat([torch.zeros(1), ramp]).reshape(1, 1 + 14 * 14, 1)
        out = vit.interpolate_pos_embed(pos, 28, 14)[0, 1:, 0].reshape(28, 14)
        self.assertFalse(torch.allclose(out[0], torch.arange(14.0)))
        # Column x samples source column (x + 0.5)·14/14.1 − 0.5: up to ≈ 0.12 to the left.
        self.assertLess(float((out[0] - torch.arange(14.0)).abs().max()), 0.2)
        ref = torch.nn.functional.interpolate(
            pos[:, 1:].reshape(1, 14, 14, 1).permute(0, 3, 1, 2),
            size=(28, 14),
            mode="bicubic",
            align_corners=False,
        )
        self.assertFalse(torch.allclose(out, ref[0, 0]))

    def test_fixed_matches_forward(self):
        m = random_tiny()
        fixed = m.fixed_pos_embed(448, 224)
        self.assertFalse(fixed.requires_grad)
        torch.testing.assert_close(fixed, vit.interpolate_pos_embed(m.pos_embed, 28, 14).detach())

    def test_errors(self):
        with self.assertRaises(ValueError):
            vit.interpolate_pos_embed(torch.zeros(1, 1 + 15, 4), 4, 4)
        with self.assertRaises(ValueError):
            random_tiny().fixed_pos_embed(230, 224)


class CheckpointTest(unittest.TestCase):
    def roundtrip(self, ckpt_of_state, extra=None):
        src = random_tiny(5)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "w.ckpt")
            torch.save(ckpt_of_state(src.state_dict()), path)
            got = vit.load_checkpoint(path, TINY)
        x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            torch.testing.assert_close(got(x), src(x), rtol=0, atol=0)

    def test_layouts(self):
        def pre(p, extra=None):
            return lambda sd: {**{p + k: v for k, v in sd.items()}, **(extra or {})}

        cases = {
            "bare (DINO release)": lambda sd: dict(sd),
            "ViTExtractor": pre("model."),
            "OML Lightning": lambda sd: {"state_dict": pre("model.model.", {"criterion.weight": torch.ones(3)})(sd)},
            "DINO training": lambda sd: {"teacher": pre("backbone.")(sd), "epoch": 100},
            "ConcatSiamese": lambda sd: {"state_dict": pre("extractor.model.", {"head.0.weight": torch.ones(2, 2)})(sd)},
        }
        for name, layout in cases.items():
            with self.subTest(name):
                self.roundtrip(layout)

    def test_strict(self):
        sd = dict(random_tiny().state_dict())
        bad = {
            "stray key": {**{"model." + k: v for k, v in sd.items()}, "optimizer.x": torch.ones(1)},
            "missing key": {k: v for k, v in sd.items() if k != "blocks.0.mlp.fc1.weight"},
            "wrong shape": {**sd, "pos_embed": torch.zeros(1, 50, TINY.dim)},
            "no final norm": {k: v for k, v in sd.items() if not k.startswith("norm.")},
        }
        for name, state in bad.items():
            with self.subTest(name), tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "w.ckpt")
                torch.save(state, path)
                with self.assertRaises((ValueError, RuntimeError)):
                    vit.load_checkpoint(path, TINY)


class ExportTest(unittest.TestCase):
    def test_tiny_export(self):
        with tempfile.TemporaryDirectory() as d:
            export.main(["--config", "tiny", "--out", d, "--seed", "3"])
            with open(os.path.join(d, export.MANIFEST_NAME)) as f:
                man = json.load(f)
            self.assertEqual(
                sorted(man),
                sorted(["name", "kind", "model", "inputs", "output", "dim", "normalized", "distance", "preprocess"]),
            )
            self.assertEqual(man["dim"], TINY.dim)
            self.assertEqual(man["inputs"], ["images"])
            self.assertLess(os.path.getsize(os.path.join(d, export.ONNX_NAME)), 1 << 20)


if __name__ == "__main__":
    unittest.main()
