"""Why a Latent Drifting target is missed: what the instruments and the autoencoder allow.

For a config's cached generator (fitted by ``shortcutlab counterfactual`` or
``benchmarks/latent_drift.py``) and one flip, on ``--n`` rows of ``inv``:

- the instrument's effectiveness on the phantom's *true* counterfactuals (the ceiling of the
  instrument itself) and on the true counterfactuals passed through the generator's autoencoder
  (the ceiling any latent edit of this model can reach);
- L1 floors: autoencoder reconstruction of the source, and source vs true counterfactual;
- effectiveness and true-counterfactual L1 of the generated counterfactuals per guidance scale
  and per sampling delta.

PYTHONPATH=src python benchmarks/latent_drift_diagnose.py configs/latent-drift-cxr.yaml site \\
    --cache runs/ld-bench/cache/generated --n 64 --guidance 2 4 7 --delta 0 0.05
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("flip")
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--guidance", type=float, nargs="+", default=[2.0])
    ap.add_argument("--delta", type=float, nargs="+", default=[0.0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--out", type=Path)
    ap.add_argument(
        "--ae-probe",
        default="",
        help="also fit a fresh autoencoder with these block widths (e.g. 16,32) and score it",
    )
    ap.add_argument("--ae-steps", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from shortcutlab.data.counterfactual import true_counterfactual
    from shortcutlab.evaluation import generation_metrics as gm
    from shortcutlab.experiment.config import MethodSpec, load_config
    from shortcutlab.experiment.context import tensors_of
    from shortcutlab.experiment.hparams import method_hparams
    from shortcutlab.experiment.runner import load_dataset, task_info
    from shortcutlab.generative.counterfactuals import counterfactuals, flipped_values
    from shortcutlab.methods.counterfactual_aug import drift_params, generator_for

    cfg = load_config(args.config)
    hp = method_hparams(MethodSpec(name="counterfactual-aug"), cfg)
    params = drift_params(hp)
    table = load_dataset(cfg.dataset)
    info = task_info(table, cfg, 1)
    train = tensors_of(table.split("train"))
    model, _ = generator_for(train, info, params, cfg.seeds[0], args.cache)
    fields = ["y", *info.attributes]
    cards = {"y": info.num_classes, **dict(zip(info.attributes, info.attribute_cardinalities))}
    bal = table.split("bal")
    bt = bal.tensors()
    net = gm.train_factor_net(
        torch.from_numpy(bal.images),
        {"y": bt["y"].numpy(), **{a: bt["z"][:, j].numpy() for j, a in enumerate(info.attributes)}},
        cards,
        epochs=args.epochs,
    )
    src = table.split("inv").select(np.arange(min(args.n, len(table.split("inv")))))
    st = src.tensors()
    cond = {"y": st["y"], **{a: st["z"][:, j] for j, a in enumerate(info.attributes)}}
    x = torch.from_numpy(src.images)
    old = cond[args.flip].numpy()
    new = flipped_values(old, args.flip, cards[args.flip])
    true = torch.from_numpy(true_counterfactual(src, args.flip, new))
    out = {
        "instrument_accuracy_on_sources": {
            f: float(np.mean(p == cond[f].numpy())) for f, p in net.predict(x).items()
        },
        "effectiveness_true_cf": gm.effectiveness(net, true, args.flip, new),
        "effectiveness_autoencoded_true_cf": gm.effectiveness(
            net, model.reconstruct(true), args.flip, new
        ),
        "effectiveness_autoencoded_true_cf_by_new_value": {
            int(v): gm.effectiveness(
                net, model.reconstruct(true[new == v]), args.flip, new[new == v]
            )
            for v in np.unique(new)
        },
        "effectiveness_autoencoded_source_by_value": {
            int(v): gm.effectiveness(net, model.reconstruct(x[old == v]), args.flip, old[old == v])
            for v in np.unique(old)
        },
        "autoencoder_l1": gm.l1(model.reconstruct(x), x),
        "true_vs_source_l1": gm.l1(true, x),
        "autoencoded_true_vs_true_l1": gm.l1(model.reconstruct(true), true),
        "runs": [],
    }
    assert set(fields) == set(cards)
    if args.ae_probe:
        from shortcutlab.generative import ConditionalDiffusion, train_autoencoder

        widths = tuple(int(c) for c in args.ae_probe.split(","))
        torch.manual_seed(0)
        probe = ConditionalDiffusion.create(
            x.shape[-1], x.shape[1], cards, latent=True, vae_channels=widths
        )
        train_autoencoder(probe, train["x"], args.ae_steps, params.batch_size)
        out["ae_probe"] = {
            "vae_channels": widths,
            "latent_shape": probe.sample_shape,
            "steps": args.ae_steps,
            "autoencoder_l1": gm.l1(probe.reconstruct(x), x),
            "effectiveness_autoencoded_true_cf": gm.effectiveness(
                net, probe.reconstruct(true), args.flip, new
            ),
        }
        print(json.dumps(out["ae_probe"]), flush=True)
    for g in args.guidance:
        for d in args.delta:
            cf = counterfactuals(model, x, cond, args.flip, new, params.sample_steps, g, d)
            out["runs"].append(
                {
                    "guidance": g,
                    "delta": d,
                    "effectiveness": gm.effectiveness(net, cf, args.flip, new),
                    "effectiveness_by_new_value": {
                        int(v): gm.effectiveness(net, cf[new == v], args.flip, new[new == v])
                        for v in np.unique(new)
                    },
                    "preservation": gm.preservation(net, x, cf, args.flip)["mean"],
                    "true_cf_l1": gm.l1(cf, true),
                    "source_l1": gm.l1(cf, x),
                }
            )
            print(json.dumps(out["runs"][-1]), flush=True)
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
