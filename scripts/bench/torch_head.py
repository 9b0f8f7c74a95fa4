#!/usr/bin/env python3
"""The PyTorch reference for head-trainer: the same head (Dense(128, ReLU) + Dense(M, sigmoid),
Glorot-uniform init, zero biases), loss (class-weighted BCE: positives of label j weighted
n / (M * count_j)), Adam (lr 1e-3, eps 1e-7), batch size, epochs and thread count, on the same
cache and hash split, evaluated the same way (test macro ROC AUC with scikit-learn). Like
head-trainer (and the seed's Keras fit with validation data) it validates after every epoch
(validation loss, macro PR and ROC AUC) and keeps the epoch with the best validation macro PR AUC;
`--no-epoch-validation` trains the bare loop and keeps the last epoch.

    torch_head.py CACHE_DIR LABELS.parquet --column topics [--epochs 15] [--batch-size 128] [--threads 2]
Prints one JSON line with load/train seconds (validation included) and test macro ROC AUC.
"""

import argparse
import hashlib
import json
import time
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from sklearn.metrics import average_precision_score, roc_auc_score


def split_of(salt: str, i: str, val=0.1, test=0.2) -> int:
    h = hashlib.sha256(salt.encode() + b"\0" + i.encode()).digest()
    u = (int.from_bytes(h[:8], "big") >> 11) / float(1 << 53)
    return 2 if u < test else (1 if u < test + val else 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cache")
    ap.add_argument("labels")
    ap.add_argument("--column", default="topics")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--no-epoch-validation", action="store_true", help="skip validation; keep the last epoch")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    torch.manual_seed(a.seed)

    t0 = time.perf_counter()
    t = pq.read_table(a.cache)
    ids = t.column("id").to_pylist()
    emb = t.column("embedding").combine_chunks().flatten().to_numpy().reshape(len(t), -1)  # float16
    lab = pq.read_table(a.labels)
    lab_ids = lab.column("id").to_pylist()
    lists = lab.column(a.column).to_pylist()
    by_id = dict(zip(lab_ids, lists))
    split = np.array([split_of("wit-split-v1", i) for i in ids])
    train_mask = split == 0
    names_count = {}
    for i, s in zip(ids, split):
        if s == 0:
            for l in by_id.get(i) or []:
                names_count[l] = names_count.get(l, 0) + 1
    names = sorted(names_count, key=lambda n: (-names_count[n], n))
    index = {n: j for j, n in enumerate(names)}
    y = np.zeros((len(ids), len(names)), np.float32)
    for r, i in enumerate(ids):
        for l in by_id.get(i) or []:
            y[r, index[l]] = 1
    keep = y.sum(axis=1) > 0  # the seed's (and head-trainer's default) drop of unlabelled images
    X = torch.from_numpy(emb)  # stays float16 (read-only: only read); batches are widened to float32
    Y = torch.from_numpy(y)
    tr = np.flatnonzero(keep & train_mask)
    te = np.flatnonzero(keep & (split == 2))
    va = np.flatnonzero(keep & (split == 1))
    m = len(names)
    pos_w = torch.tensor([len(tr) / (m * names_count[n]) for n in names])
    load_s = time.perf_counter() - t0

    model = torch.nn.Sequential(torch.nn.Linear(emb.shape[1], 128), torch.nn.ReLU(), torch.nn.Linear(128, m))
    for layer in (model[0], model[2]):
        torch.nn.init.xavier_uniform_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_w)

    def logits(rows):
        with torch.no_grad():
            return model(X[torch.from_numpy(rows)].float())

    yv = y[va]
    vcols = yv.sum(axis=0) > 0
    best, best_pr, best_epoch = None, -1.0, 0
    t1 = time.perf_counter()
    for _ in range(a.epochs):
        perm = torch.from_numpy(tr[np.random.default_rng(_).permutation(len(tr))])
        for b in range(0, len(perm), a.batch_size):
            idx = perm[b : b + a.batch_size]
            xb = X[idx].float()
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), Y[idx])
            loss.backward()
            opt.step()
        if not a.no_epoch_validation and len(va):
            zv = logits(va)
            val_loss = float(loss_fn(zv, Y[torch.from_numpy(va)]))  # noqa: F841 (what head-trainer logs too)
            pv = torch.sigmoid(zv).numpy()
            pr = average_precision_score(yv[:, vcols], pv[:, vcols], average="macro")
            roc = roc_auc_score(yv[:, vcols], pv[:, vcols], average="macro")  # noqa: F841
            if pr > best_pr:
                best_pr, best_epoch = pr, _ + 1
                best = {k: v.clone() for k, v in model.state_dict().items()}
    if best is not None:
        model.load_state_dict(best)
    train_s = time.perf_counter() - t1
    p = torch.sigmoid(logits(te)).numpy()
    yt = y[te]
    cols = yt.sum(axis=0) > 0
    auc = roc_auc_score(yt[:, cols], p[:, cols], average="macro")
    print(json.dumps({"load_s": round(load_s, 2), "train_s": round(train_s, 2), "test_macro_roc_auc": round(float(auc), 4),
                      "train_rows": int(len(tr)), "labels": m,
                      "epoch_validation": not a.no_epoch_validation, "best_epoch": best_epoch or a.epochs, "threads": a.threads, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
