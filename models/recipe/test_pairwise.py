"""Tests of the STIR recipe code (pairwise.py, export.py --kind pairwise, retrieval.py,
train_stir.py helpers): /usr/bin/python3 -m unittest discover -s models/recipe"""

import contextlib
import io
import json
import math
import os
import sys
import tempfile
import unittest

import numpy as np
import onnx
import torch

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export  # noqa: E402
import pairwise  # noqa: E402
import retrieval  # noqa: E402
import train_stir  # noqa: E402
import vit  # noqa: E402

TINY = vit.CONFIGS["tiny"]


def random_pair(seed=0, hidden=None):
    return pairwise.random_model(TINY, seed, export.RANDOM_INIT_STD, hidden)


def images(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 224, 224, generator=g), torch.randn(n, 3, 224, 224, generator=g)


class ConcatSiameseTest(unittest.TestCase):
    def test_oml_key_layout(self):
        keys = set(random_pair().state_dict())
        backbone = {"extractor.model." + k for k in vit.ViT(TINY).state_dict()}
        self.assertEqual(keys - backbone, {"head.0.weight", "head.0.bias", "head.3.weight"})
        self.assertTrue(backbone <= keys)
        self.assertEqual(random_pair().hidden, [TINY.dim // 2])

    def test_forward_is_stacked_vit_and_head(self):
        m = random_pair()
        q, c = images(2, 1)
        with torch.no_grad():
            got = m(q, c)
            feats = m.vit.features(torch.cat([q, c], dim=2))  # not L2-normalised
            want = m.head[3](torch.sigmoid(m.head[0](feats)))
        self.assertEqual(tuple(got.shape), (2, 1))
        torch.testing.assert_close(got, want)
        with torch.no_grad():
            self.assertFalse(torch.allclose(m(c, q), got))  # the order matters: query on top

    def test_graph_with_fixed_pos_embed_matches(self):
        m = random_pair(2)
        graph = pairwise.PairwiseGraph(m)
        self.assertEqual(tuple(graph.pos_embed.shape), (1, 1 + 28 * 14, TINY.dim))
        q, c = images(3, 2)
        with torch.no_grad():
            torch.testing.assert_close(graph(q, c), m(q, c), rtol=1e-5, atol=1e-6)

    def test_load_embedder(self):
        emb = vit.ViT(TINY)
        vit.init_weights(emb, seed=4, std=0.1)
        m = pairwise.ConcatSiamese(TINY)
        m.load_embedder(emb)
        for k, v in emb.state_dict().items():
            self.assertTrue(torch.equal(m.state_dict()["extractor.model." + k], v), k)

    def test_grow_from_embedder(self):
        emb = vit.ViT(TINY)
        vit.init_weights(emb, seed=4, std=0.1)
        deep = vit.CONFIGS["tiny-d4"]
        m = pairwise.ConcatSiamese(deep)
        vit.init_weights(m.vit, seed=5, std=0.1)
        m.load_embedder(emb)
        x = images(2, 3)[0]
        with torch.no_grad():  # the extra blocks start as the identity
            torch.testing.assert_close(m.vit.features(x), emb.features(x), rtol=0, atol=1e-6)
        extra = m.vit.blocks[TINY.depth]
        self.assertEqual(float(extra.mlp.fc2.weight.abs().sum()), 0.0)
        self.assertGreater(float(extra.mlp.fc1.weight.abs().sum()), 0.0)  # still trainable
        for other in (vit.CONFIGS["small"], TINY):  # another shape, or shallower than deep
            with self.assertRaises(ValueError):
                src = vit.ViT(deep) if other is TINY else emb
                pairwise.ConcatSiamese(other).load_embedder(src)


class CheckpointTest(unittest.TestCase):
    def save_and_load(self, obj):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "p.ckpt")
            torch.save(obj, path)
            return pairwise.load_checkpoint(path, TINY)

    def test_layouts(self):
        for hidden in ([32], [48, 24]):
            src = random_pair(5, hidden)
            sd = src.state_dict()
            cases = {
                "bare": dict(sd),
                "PairwiseModule (Lightning)": {
                    "state_dict": {**{"model." + k: v for k, v in sd.items()}, "criterion.pos_weight": torch.ones(1)},
                    "epoch": 3,
                },
            }
            for name, obj in cases.items():
                with self.subTest(name=name, hidden=hidden):
                    got = self.save_and_load(obj)
                    self.assertEqual(got.hidden, hidden)
                    q, c = images(2, 6)
                    with torch.no_grad():
                        torch.testing.assert_close(got(q, c), src.eval()(q, c), rtol=0, atol=0)

    def test_strict(self):
        sd = dict(random_pair().state_dict())
        bad = {
            "stray key": {**sd, "optimizer.x": torch.ones(1)},
            "missing backbone key": {k: v for k, v in sd.items() if k != "extractor.model.blocks.1.attn.qkv.weight"},
            "last layer with bias": {**sd, "head.3.bias": torch.zeros(1)},
            "no head": {k: v for k, v in sd.items() if not k.startswith("head.")},
            "embedder only": {k[len("extractor.model."):]: v for k, v in sd.items() if k.startswith("extractor.")},
        }
        for name, state in bad.items():
            with self.subTest(name), self.assertRaises((ValueError, RuntimeError)):
                self.save_and_load(state)


class ExportTest(unittest.TestCase):
    def test_pairwise_export(self):
        with tempfile.TemporaryDirectory() as d:
            export.main(["--kind", "pairwise", "--config", "tiny", "--out", d, "--seed", "3"])
            with open(os.path.join(d, export.PAIRWISE_MANIFEST_NAME)) as f:
                man = json.load(f)
            ref = export.manifest("x", TINY.dim, True, TINY.img_size)
            self.assertEqual(sorted(man), sorted(ref))
            self.assertEqual(man["kind"], "pairwise")
            self.assertEqual(man["model"], "pairwise.onnx")
            self.assertEqual(man["inputs"], ["query", "candidate"])
            self.assertEqual((man["output"], man["dim"], man["normalized"]), ("logits", 1, False))
            self.assertEqual(man["distance"], "sigmoid_logit")
            self.assertEqual(man["preprocess"], ref["preprocess"])
            path = os.path.join(d, export.PAIRWISE_ONNX_NAME)
            self.assertLess(os.path.getsize(path), 1 << 20)
            m = onnx.load(path)
            meta = {p.key: p.value for p in m.metadata_props}
            self.assertEqual(json.loads(meta["stir.pairwise"])["input"], [3, 448, 224])
            # Deterministic: a second export is byte-identical, and leaves the model in eval
            # mode (no dropout in later torch calls).
            again = os.path.join(d, "again.onnx")
            model = export.build_pairwise("tiny", 3, None)
            export.export_pairwise(model, again, export.metadata("tiny", 3, None, True, export.PAIRWISE, [32]))
            self.assertEqual(export.sha256_file(again), export.sha256_file(path))
            self.assertFalse(any(m.training for m in model.modules()))

    def test_prior(self):
        # WithPrior adds scale·‖E(x1) − E(x2)‖ + offset to the pairwise logit, and the export
        # records the prior in the graph's metadata.
        gen = torch.Generator().manual_seed(1)
        x1, x2 = (torch.randn(vit.input_shape(TINY, batch=3), generator=gen) for _ in range(2))
        pair = pairwise.random_model(TINY, 2, 0.02)
        emb = vit.ViT(TINY).eval()
        vit.init_weights(emb, seed=4, std=0.02)
        fused = pairwise.WithPrior(pair, emb, 8.0, -2.5).eval()
        with torch.no_grad():
            want = pair(x1, x2) + 8.0 * (emb(x1) - emb(x2)).norm(dim=1, keepdim=True) - 2.5
            self.assertTrue(torch.allclose(fused(x1, x2), want, atol=1e-6))
            # Identical images: the embedder's distance is 0, only the offset is added.
            self.assertTrue(torch.allclose(fused(x1, x1), pair(x1, x1) - 2.5, atol=1e-6))
        with tempfile.TemporaryDirectory() as d:
            ckpt = os.path.join(d, "emb.pt")
            torch.save(emb.state_dict(), ckpt)
            export.main(["--kind", "pairwise", "--config", "tiny", "--out", d, "--prior", f"{ckpt},8,-2.5"])
            m = onnx.load(os.path.join(d, export.PAIRWISE_ONNX_NAME))
            prior = json.loads({p.key: p.value for p in m.metadata_props}["stir.prior"])
            self.assertEqual((prior["scale"], prior["offset"]), (8.0, -2.5))
            self.assertEqual(prior["embedder"], f"checkpoint sha256 {export.sha256_file(ckpt)}")
            for bad in (f"{ckpt},0,1", f"{ckpt},8", os.path.join(d, "missing.pt") + ",8,1", f"{ckpt},x,1", f"{ckpt},8,nan"):
                with self.subTest(prior=bad), self.assertRaises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
                    export.main(["--kind", "pairwise", "--config", "tiny", "--out", d, "--prior", bad])
            for argv in (["--prior", f"{ckpt},8,-2.5"], ["--kind", "pairwise", "--prior-config", "tiny"]):
                with self.subTest(argv=argv), self.assertRaises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
                    export.main(["--config", "tiny", "--out", d] + argv)

    def test_flag_errors(self):
        with tempfile.TemporaryDirectory() as d:
            for argv in (
                ["--kind", "pairwise", "--config", "tiny", "--out", d, "--no-normalize"],
                ["--config", "tiny", "--out", d, "--head-hidden", "8"],
            ):
                with self.subTest(argv=argv), self.assertRaises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
                    export.main(argv)


class RetrievalTest(unittest.TestCase):
    def test_rerank_worked_example(self):
        # method.md §4.
        ids, d = retrieval.rerank(np.array([3, 2, 1, 0, 4]), np.array([0.1, 0.2, 0.5, 0.6, 0.7]), np.array([0.4, 0.2, 0.3]), 3)
        self.assertEqual(ids.tolist(), [2, 1, 3, 0, 4])
        np.testing.assert_allclose(d, [0.2, 0.3, 0.4, 0.6, 0.7])

    def test_rerank_rescale_and_ties(self):
        ids, d = retrieval.rerank(np.array([7, 8, 9]), np.array([0.1, 0.2, 0.3]), np.array([0.9, 0.9]), 2)
        self.assertEqual(ids.tolist(), [7, 8, 9])  # stable: a tie keeps the embedder's order
        want = 0.9 * (0.3 / 0.9) - retrieval.RERANK_EPS
        np.testing.assert_allclose(d, [want, want, 0.3])
        self.assertTrue(np.all(np.diff(d) >= 0))
        ids, d = retrieval.rerank(np.array([1, 2]), np.array([0.5, 0.6]), np.array([0.7, 0.1]), 5)
        self.assertEqual((ids.tolist(), d.tolist()), ([2, 1], [0.1, 0.7]))  # no tail: the scores

    def test_metrics(self):
        m = retrieval.query_metrics(np.array([0, 1, 0, 1, 0], bool), 2, (1, 5))
        self.assertEqual((m["cmc@1"], m["cmc@5"], m["map@5"], m["precision@5"]), (0.0, 1.0, 0.5, 1.0))
        self.assertEqual(retrieval.query_metrics(np.array([], bool), 0, (1,))["cmc@1"], 1.0)
        self.assertEqual(retrieval.query_metrics(np.array([], bool), 3, (1,))["map@1"], 0.0)
        self.assertTrue(np.isnan(retrieval.query_metrics(np.array([0, 0], bool), 0, (2,))["precision@2"]))
        self.assertEqual(retrieval.query_metrics(np.array([1, 0], bool), 4, (5,))["precision@5"], 0.5)  # k' = 2

    def test_exclusions(self):
        # Rows 0..3; rows 1 and 2 share a sequence; row 3 has none.
        ex = retrieval.excluded([0, 1, 2, 3], [0, 1, 2, 3], ["a", "s", "s", ""])
        self.assertEqual(ex.nonzero().tolist(), [[0, 0], [1, 1], [1, 2], [2, 1], [2, 2], [3, 3]])
        emb = torch.tensor([[0.0], [0.1], [0.2], [5.0]])
        labels = np.array([0, 0, 0, 1])
        ret = retrieval.retrieve(emb, emb, labels, labels, ex, 10)
        self.assertEqual(ret.ids[1].tolist(), [0, 3])  # itself and its sequence are gone
        self.assertEqual(ret.n_relevant.tolist(), [2, 1, 1, 0])
        m = retrieval.evaluate(ret, labels, labels, ["x", "x", "y", "y"], ks=(1,))
        self.assertEqual(m["OVERALL"]["cmc@1"], 0.75)  # query 3 has no relevant item: cmc 0
        self.assertEqual((m["x"]["cmc@1"], m["y"]["queries"]), (1.0, 2))


class TrainHelpersTest(unittest.TestCase):
    def test_hardest(self):
        emb = torch.tensor([[0.0], [1.0], [3.0], [0.5], [10.0]])
        labels = torch.tensor([0, 0, 0, 1, 1])
        pos, neg = train_stir.hardest(torch.cdist(emb, emb), labels)
        self.assertEqual(pos.tolist(), [2, 2, 0, 4, 3])
        self.assertEqual(neg.tolist(), [3, 3, 3, 0, 2])
        pairs = train_stir.hard_pairs(emb, labels)
        self.assertEqual(len(pairs), len(set(pairs)))
        self.assertIn((0, 2, 0), pairs)
        self.assertIn((0, 3, 1), pairs)

    def test_triplet_loss(self):
        emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        labels = torch.tensor([0, 0, 1, 1])
        self.assertEqual(float(train_stir.triplet_hard_loss(emb, labels, 0.15)), 0.0)
        self.assertAlmostEqual(float(train_stir.triplet_hard_loss(torch.ones(4, 2), labels, 0.15)), 0.15, places=6)

    def test_balanced_batches(self):
        import random

        labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
        batches = list(train_stir.balanced_batches(labels, list(range(10)), 2, 3, random.Random(0)))
        self.assertEqual(len(batches), 2)
        for b in batches:
            self.assertEqual(len(b), 6)
            self.assertEqual(len({int(labels[i]) for i in b}), 2)

    def test_augment(self):
        rng = np.random.default_rng(0)
        sizes = np.array([[100, 150], [300, 120], [50, 50]])
        for box, (w, h) in zip(train_stir.rrc_boxes(sizes, 0.2, rng), sizes):
            x, y, bw, bh = box
            self.assertTrue(0 <= x and 0 <= y and x + bw <= w and y + bh <= h and bw > 0 and bh > 0)
        cat = train_stir.Catalog.__new__(train_stir.Catalog)
        ramp = torch.arange(train_stir.BASE).view(1, 1, -1).expand(3, train_stir.BASE, -1)
        cat.base_u8 = ramp.to(torch.uint8).unsqueeze(0).repeat(2, 1, 1, 1)
        cat.sizes = np.array([[200, 200], [200, 200]])
        x = train_stir.augment(cat, [0, 1], 1.0, False, rng)  # the whole image, no flip
        self.assertEqual(tuple(x.shape), (2, 3, 224, 224))
        row = x[0, 0, 100]
        self.assertTrue(bool((row[1:] >= row[:-1]).all()))  # left-to-right ramp kept
        full = train_stir.normalise_u8(ramp[:, :1, :].unsqueeze(0).float().round().to(torch.uint8))
        self.assertLess(abs(float(row[0]) - float(full[0, 0, 0, 0])), 0.1)

    def test_fit_logistic(self):
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(20000, generator=gen) * 2
        y = (torch.rand(20000, generator=gen) < torch.sigmoid(8 * x - 5)).float()
        a, b = train_stir.fit_logistic(x, y)
        self.assertAlmostEqual(a, 8, delta=0.5)
        self.assertAlmostEqual(b, -5, delta=0.3)
        # Perfectly separated labels: the ridge keeps the fit finite, the slope steep.
        a, b = train_stir.fit_logistic(torch.tensor([0.0, 0.1, 0.9, 1.0]), torch.tensor([0.0, 0.0, 1.0, 1.0]))
        self.assertTrue(math.isfinite(a) and math.isfinite(b) and a > 10)

    def test_query_lists(self):
        pairs = [(1, 2, 0), (1, 3, 1), (4, 1, 1), (4, 2, 0), (4, 3, 1), (1, 4, 1)]
        self.assertEqual(
            train_stir.query_lists(pairs), [[(1, 2, 0), (1, 3, 1)], [(4, 1, 1), (4, 2, 0), (4, 3, 1)], [(1, 4, 1)]]
        )

    def test_list_loss(self):
        # Two useful lists: by hand, −log of the softmax mass of −logit on the positives.
        logits = torch.tensor([0.5, -1.0, 2.0, 1.0, 0.0, 3.0, 1.0], requires_grad=True)
        negative = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0])
        group = torch.tensor([0, 0, 0, 1, 1, 1, 2])  # list 2 has no positive: left out
        sim = -logits.detach()
        want0 = math.log(sim[:3].exp().sum()) - float(sim[1])
        want1 = math.log(sim[3:6].exp().sum()) - math.log(sim[3:5].exp().sum())
        loss = train_stir.list_loss(logits, negative, group)
        self.assertAlmostEqual(float(loss), (want0 + want1) / 2, places=5)
        loss.backward()
        self.assertEqual(float(logits.grad[6]), 0.0)
        self.assertGreater(float(logits.grad[1]), 0)  # the descent step lowers the positive's logit
        # Large logits stay finite; no useful list gives a zero that still backpropagates.
        self.assertTrue(math.isfinite(float(train_stir.list_loss(logits.detach() * 1e3, negative, group))))
        none = train_stir.list_loss(logits, torch.ones(7), group)
        self.assertEqual(float(none), 0.0)
        none.backward()

    def test_list_loss_needs_neighbour_lists(self):
        base = ["pairwise", "--catalog", "C/catalog.csv", "--root", "C", "--out", "RUN", "--list-loss", "1"]
        for extra in ([], ["--miner", "none", "--knn", "0"]):
            with self.subTest(extra=extra), self.assertRaises(SystemExit), contextlib.redirect_stderr(io.StringIO()) as err:
                train_stir.main(base + extra)
            self.assertIn("--list-loss", err.getvalue())


if __name__ == "__main__":
    unittest.main()
