"""Next-item pretraining of HSTU or SASRec (behaviour cloning).

Main command (embedded simulator, no download):
  python -m experiments.pretrain --config=experiments/configs/pretrain.py --workdir=runs/pretrain

MovieLens 100K (files read from a folder you give; or add download=True to fetch the release):
  python -m experiments.pretrain \
      --config=experiments/configs/pretrain.py:dataset=ml-100k,data_dir=../shared/data/ml-100k \
      --workdir=runs/pretrain-ml100k

Smoke run (seconds): append ``:smoke=True`` (or ``,smoke=True``) to the config path.

Learning curve, early stopping and the best state (genrec_jax.train.validation): e.g.
``data.validation=True,eval.every_epochs=2,eval.patience=3,eval.keep_best=True`` evaluates on
each user's validation event every 2 epochs (WORKDIR/eval_curve.jsonl), stops after 3
evaluations without a better ``eval.metric`` (NDCG@10) and ends with the best state (in
WORKDIR/best, which post-training loads); ``eval.curve_split=test`` records a test curve instead
(no selection allowed on it).

Encoder: ``model.kind=hstu`` (default) or ``model.kind=sasrec`` (Kang & McAuley 2018; the shared
``model`` block's D = 50, 2 blocks, 1 head, dropout 0.2 are SASRec's usual setting too), e.g.
``--config=experiments/configs/pretrain.py:smoke=True,model.kind=sasrec``. Mixed precision:
``precision=bf16`` (default ``float32``) computes the encoder in bfloat16 with float32
parameters, optimizer state, logits and losses. ``config.json`` in the workdir records both.

Expected: ``python benchmarks/pretrain.py --dataset=ml-100k --data_dir=../shared/data/ml-100k``
(these defaults = the public ML-1M HSTU configuration, 60 epochs, seed 0) measured here: HR@10
0.205, NDCG@10 0.107, HR@50 0.496, MRR 0.095 (whole history excluded); with only the input window
excluded (the reference's rule) 0.204 / 0.106 / 0.493 / 0.093; most-popular HR@10 0.086;
2.18 s per epoch on the 2-core CPU, compile 21.6 s apart (4 packed-row shapes,
``data.pack_shapes``; README "Speed"). Over 5 seeds (``benchmarks/pretrain_seeds.py``) the
input-window HR@10 is 0.197 ± 0.007. The smoke run finishes in about 20 s.
"""

import ml_collections

from experiments.configs import common


def smoke(c: ml_collections.ConfigDict) -> None:
    common.smoke_base(c)
    c.epochs = 3
    c.batch_size = 16
    c.loss.num_negatives = 16


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = common.base_config()
    # negatives_share: consecutive positions sharing one draw of num_negatives (1 = per
    # position, the reference's estimator; larger is faster on a CPU but noisier, see README).
    # negatives_mode: how the draws are scored (genrec_jax.train.next_item: counts | dense |
    # gather, the same numbers; "auto" = counts while the catalogue has ≤ 16 rows per negative).
    c.loss = ml_collections.ConfigDict(dict(
        kind="sampled", num_negatives=128, negatives_mode="auto", negatives_share=1,
        impl="chunked", chunk_size=4096))
    c.optimizer = ml_collections.ConfigDict(dict(
        learning_rate=1e-3, b1=0.9, b2=0.98, eps=1e-8, weight_decay=0.0, warmup_steps=0,
        grad_clip_norm=0.0))
    c.batch_size = 128
    c.epochs = 60
    c.num_steps = -1
    return common.finalize(c, arg, smoke)
